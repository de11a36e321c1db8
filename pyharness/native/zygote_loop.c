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
 * It returns 0 in each new child (the interpreter's after-fork steps done),
 * with the child's ends of the three in child_fds. With setup, the child
 * has then also closed every other descriptor, mounted its /tmp, /dev/shm
 * and /proc, dropped every capability and installed the worker's filter
 * (child_setup.c); without, every other descriptor is still open and the
 * caller does the rest.
 * 1 in the zygote when the service closed the socket (or reset it), or -errno when the
 * loop cannot go on (a message it does not understand is -EPROTO).
 *
 * The caller holds the GIL (PyDLL) and is the only thread, as for a fork.
 * The child runs PyOS_AfterFork_Child before it returns. With before_fork
 * set, each clone is also framed as os.fork frames it, PyOS_BeforeFork
 * before and PyOS_AfterFork_Parent after: Python 3.13 and later abort a
 * child whose interpreter did not take its locks before the fork. Earlier
 * ones do not need it in a single-threaded process (the locks it takes
 * are free, and the hooks it runs take logging's lock), and it costs the
 * zygote about 30 page copies per fork (those hooks are Python), so the
 * caller sets it only where it is needed. These are the interpreter's own
 * symbols, found in the process that loads this library.
 * SIGCHLD's handler writes to the interpreter's wakeup descriptor, wake.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "child_setup.h"

#define MAX_TAG 64
#define MT_WORDS 624

void PyOS_BeforeFork(void);
void PyOS_AfterFork_Parent(void);
void PyOS_AfterFork_Child(void);

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

/* Sends one message, formatted from fmt, with nfds descriptors. A message
 * that would not fit (none does: a tag is at most MAX_TAG characters) is
 * not sent cut: -EMSGSIZE. */
__attribute__((format(printf, 4, 5)))
static int send_message(int control, const int *fds, int nfds, const char *fmt, ...)
{
	char text[256];
	va_list ap;
	va_start(ap, fmt);
	int len = vsnprintf(text, sizeof(text), fmt, ap);
	va_end(ap);
	if (len < 0 || len >= (int)sizeof(text))
		return -EMSGSIZE;
	struct iovec iov = {.iov_base = text, .iov_len = (size_t)len};
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
		int err = send_message(control, NULL, 0, "{\"exited\": %d, \"signal\": %d, \"code\": %d}", (int)pid, sig, code);
		if (err < 0)
			return err;
	}
}

/* Makes one child. Returns 0 in the child, 1 in the zygote, -errno if
 * the service cannot be answered. A step that fails is the answer to this
 * fork, and the loop goes on. */
static int fork_one(int control, const char *tag, unsigned long flags, int *child_fds,
		    struct mt19937_state *mt_state, int before_fork, const struct pyexec_child_setup *setup)
{
	/* ours/theirs: the channel; then stdout's and stderr's read and
	 * write ends. All close on exec, as the interpreter makes them. */
	int fds[6] = {-1, -1, -1, -1, -1, -1}, pair[2], one = 1;
	const char *failed = NULL;
	int err = refresh_generator(mt_state);
	if (err < 0)
		errno = -err, failed = "getrandom";
	else if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair) != 0)
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
		if (before_fork)
			PyOS_BeforeFork();
		long pid = syscall(SYS_clone, flags | SIGCHLD, 0, 0, 0, 0);
		if (pid == 0) {
			PyOS_AfterFork_Child();
			if (setup != NULL) {
				int keep[4] = {fds[1], fds[3], fds[5], setup->devnull};
				pyexec_child_setup(setup, keep, 4);
			}
			child_fds[0] = fds[1], child_fds[1] = fds[3], child_fds[2] = fds[5];
			return 0;
		}
		int clone_err = errno;
		if (before_fork)
			PyOS_AfterFork_Parent();
		if (pid > 0) {
			int theirs[3] = {fds[1], fds[3], fds[5]}, ours[3] = {fds[0], fds[2], fds[4]};
			close_all(theirs, 3);
			err = send_message(control, ours, 3, "{\"forked\": \"%s\", \"pid\": %ld}", tag, pid);
			close_all(ours, 3);
			return err < 0 ? err : 1;
		}
		errno = clone_err, failed = "clone";
	}
	err = errno;
	close_all(fds, 6);
	/* strerror's messages hold no character JSON would escape. */
	err = send_message(control, NULL, 0, "{\"forked\": \"%s\", \"error\": \"%s: %s\"}", tag, failed, strerror(err));
	return err < 0 ? err : 1;
}

long pyexec_fork_loop(int control, int wake, unsigned long flags, int *child_fds, struct mt19937_state *mt_state,
		      int before_fork, const struct pyexec_child_setup *setup)
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
			if (err == -EPIPE || err == -ECONNRESET)
				return 1;
			if (err < 0)
				return err;
		}
		if (!pfd[0].revents)
			continue;
		ssize_t n = recv(control, buf, sizeof(buf), MSG_DONTWAIT);
		if (n < 0) {
			if (errno == EINTR || errno == EAGAIN)
				continue;
			return errno == ECONNRESET ? 1 : -errno;
		}
		if (n == 0)
			return 1; /* the service is gone */
		int err = parse_fork(buf, (int)n, tag);
		if (err == 0)
			err = fork_one(control, tag, flags, child_fds, mt_state, before_fork, setup);
		if (err == -EPIPE || err == -ECONNRESET)
			return 1; /* the service is gone */
		if (err <= 0)
			return err;
	}
}
