/*
 * The zygote's loop: forks children on the service's word and reports how
 * they ended, without running the interpreter.
 *
 * Every byte the zygote writes between two forks is a page the next fork
 * shares copy-on-write with a child, and then copies again on the zygote's
 * next write; a mapping the zygote has written to also has its whole page
 * table copied by every fork. An interpreter loop writes reference counts
 * all over its heap, so in Python the zygote copied about 240 pages per
 * fork and kept its memory files' mappings dirty. This loop touches its own
 * stack and a few buffers only: the mappings holding the interpreter's
 * objects stay as share_memory left them, clean private mappings of sealed
 * files that a fork does not copy.
 *
 * pyexec_fork_loop answers the control socket (a SOCK_SEQPACKET socket to
 * the service) until it ends:
 *   {"fork": "TAG"}  ->  {"forked": "TAG", "pid": N} with three descriptors
 *                        (the child's channel, the read ends of its stdout
 *                        and stderr), or {"forked": "TAG", "error": "..."}
 *   a reaped child   ->  {"exited": N, "signal": S, "code": C}
 * Before each fork it gives numpy's global generator (MT19937, whose state
 * is at mt_state when numpy is imported, else NULL) a fresh state from the
 * kernel's random source, so that no two children share a sequence: it is
 * what numpy's own state setter accepts (624 words, and the position that
 * makes the next draw regenerate them), and costs the zygote one page copy
 * where the interpreter's reseeding in each child cost it about 0.6 ms.
 * It returns 0 in each new child, with the child's ends of the three in
 * child_fds (every other descriptor is still open: the child closes them),
 * 1 in the zygote when the service closed the socket, or -errno when the
 * loop cannot go on (a message it does not understand is -EPROTO).
 *
 * The caller holds the GIL (PyDLL) and is the only thread, as for a fork.
 * It calls PyOS_AfterFork_Child in the child; the zygote itself runs no
 * Python between forks, so there is nothing for PyOS_BeforeFork to lock.
 * SIGCHLD's handler writes to the interpreter's wakeup descriptor, wake.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#define MAX_TAG 64
#define MT_WORDS 624

/* numpy's struct s_mt19937_state (numpy/random/src/mt19937/mt19937.h). */
struct mt19937_state {
	uint32_t key[MT_WORDS];
	int pos;
};

/* A fresh state for the generator: random words, not all zero (an MT19937
 * state of only zeros never leaves zero; init_by_array sets the top bit of
 * the first word for the same reason). */
static int refresh_generator(struct mt19937_state *mt)
{
	if (mt == NULL)
		return 0;
	uint32_t key[MT_WORDS];
	size_t got = 0;
	while (got < sizeof(key)) {
		ssize_t n = getrandom((char *)key + got, sizeof(key) - got, 0);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		got += (size_t)n;
	}
	key[0] |= 0x80000000U;
	memcpy(mt->key, key, sizeof(key));
	mt->pos = MT_WORDS;
	return 0;
}

static int send_message(int control, const char *text, int len, const int *fds, int nfds)
{
	struct iovec iov = {.iov_base = (void *)text, .iov_len = (size_t)len};
	union {
		char buf[CMSG_SPACE(3 * sizeof(int))];
		struct cmsghdr align;
	} anc;
	struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1};
	if (nfds > 0) {
		memset(&anc, 0, sizeof(anc));
		msg.msg_control = anc.buf;
		msg.msg_controllen = CMSG_SPACE((size_t)nfds * sizeof(int));
		struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN((size_t)nfds * sizeof(int));
		memcpy(CMSG_DATA(c), fds, (size_t)nfds * sizeof(int));
	}
	for (;;) {
		if (sendmsg(control, &msg, MSG_NOSIGNAL) == len)
			return 0;
		if (errno != EINTR)
			return -errno;
	}
}

/* The tag of a fork message, which must be {"fork": "TAG"} with a tag of
 * letters, digits, '-' and '_' (it is written back unescaped). */
static int parse_fork(const char *buf, int n, char *tag)
{
	static const char head[] = "{\"fork\": \"", tail[] = "\"}";
	int hl = (int)sizeof(head) - 1, tl = (int)sizeof(tail) - 1;
	int len = n - hl - tl;
	if (len < 1 || len > MAX_TAG || memcmp(buf, head, (size_t)hl) != 0 ||
	    memcmp(buf + n - tl, tail, (size_t)tl) != 0)
		return -EPROTO;
	for (int i = 0; i < len; i++) {
		char c = buf[hl + i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_'))
			return -EPROTO;
		tag[i] = c;
	}
	tag[len] = 0;
	return 0;
}

static void close_all(const int *fds, int n)
{
	for (int i = 0; i < n; i++)
		if (fds[i] >= 0)
			close(fds[i]);
}

/* Reports every child that has ended. */
static int reap(int control)
{
	for (;;) {
		int status;
		pid_t pid = waitpid(-1, &status, WNOHANG);
		if (pid < 0)
			return errno == ECHILD || errno == EINTR ? 0 : -errno;
		if (pid == 0)
			return 0;
		int sig = WIFSIGNALED(status) ? WTERMSIG(status) : 0;
		int code = WIFEXITED(status) ? WEXITSTATUS(status) : 0;
		char text[96];
		int len = snprintf(text, sizeof(text), "{\"exited\": %d, \"signal\": %d, \"code\": %d}", (int)pid, sig, code);
		int err = send_message(control, text, len, NULL, 0);
		if (err < 0)
			return err;
	}
}

/* Makes one child. Returns 0 in the child, 1 in the zygote, -errno if
 * the service cannot be answered. */
static int fork_one(int control, const char *tag, unsigned long flags, int *child_fds)
{
	/* ours/theirs: the channel; then stdout's and stderr's read and
	 * write ends. All close on exec, as the interpreter makes them. */
	int fds[6] = {-1, -1, -1, -1, -1, -1}, pair[2], one = 1;
	const char *failed = NULL;
	char text[160];
	int len;
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair) != 0)
		failed = "socketpair";
	else {
		fds[0] = pair[0], fds[1] = pair[1];
		/* The service reads the child's pid from the credentials the
		 * kernel attaches to its hello. */
		if (setsockopt(fds[0], SOL_SOCKET, SO_PASSCRED, &one, sizeof(one)) != 0)
			failed = "SO_PASSCRED";
		else if (pipe2(fds + 2, O_CLOEXEC) != 0 || pipe2(fds + 4, O_CLOEXEC) != 0)
			failed = "pipe";
	}
	if (!failed) {
		long pid = syscall(SYS_clone, flags | SIGCHLD, 0, 0, 0, 0);
		if (pid == 0) {
			child_fds[0] = fds[1], child_fds[1] = fds[3], child_fds[2] = fds[5];
			return 0;
		}
		if (pid > 0) {
			int theirs[3] = {fds[1], fds[3], fds[5]}, ours[3] = {fds[0], fds[2], fds[4]};
			close_all(theirs, 3);
			len = snprintf(text, sizeof(text), "{\"forked\": \"%s\", \"pid\": %ld}", tag, pid);
			int err = send_message(control, text, len, ours, 3);
			close_all(ours, 3);
			return err < 0 ? err : 1;
		}
		failed = "clone";
	}
	int err = errno;
	close_all(fds, 6);
	/* strerror's messages hold no character JSON would escape. */
	len = snprintf(text, sizeof(text), "{\"forked\": \"%s\", \"error\": \"%s: %s\"}", tag, failed, strerror(err));
	err = send_message(control, text, len, NULL, 0);
	return err < 0 ? err : 1;
}

long pyexec_fork_loop(int control, int wake, unsigned long flags, int *child_fds, struct mt19937_state *mt_state)
{
	struct pollfd pfd[2] = {{.fd = control, .events = POLLIN}, {.fd = wake, .events = POLLIN}};
	char buf[256], tag[MAX_TAG + 1];
	for (;;) {
		if (poll(pfd, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (pfd[1].revents) {
			while (read(wake, buf, sizeof(buf)) > 0)
				;
			int err = reap(control);
			if (err < 0)
				return err;
		}
		if (!pfd[0].revents)
			continue;
		ssize_t n = recv(control, buf, sizeof(buf), MSG_DONTWAIT);
		if (n < 0) {
			if (errno == EINTR || errno == EAGAIN)
				continue;
			return -errno;
		}
		if (n == 0)
			return 1; /* the service is gone */
		int err = parse_fork(buf, (int)n, tag);
		if (err == 0)
			err = refresh_generator(mt_state);
		if (err == 0)
			err = fork_one(control, tag, flags, child_fds);
		if (err <= 0)
			return err;
	}
}
