/*
 * A new child's set-up, run by the fork loop (zygote_loop.c) in the child
 * before the interpreter gets it back: the same steps as Child.run's
 * (harness.py: the descriptors closed, a session, Child.namespaces,
 * Kernel.drop_capabilities, SeccompProgram.install), without the
 * interpreter. In Python they cost a child about 1.5 ms of CPU, most of it
 * the page copies of the objects the interpreter touched on the way (about
 * 280, timed in children with thread_time and ru_minflt).
 *
 * On any failure the child writes why on its stderr (the zygote's, which
 * the service logs) and exits with setup->fail_code before anything of a
 * script could run.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/capability.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <net/if.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "child_setup.h"

#define MAX_BINDS 32 /* harness.py's CHILD_SETUP_MAX_BINDS: past it the child confines itself in Python */

#ifndef SYS_close_range
#define SYS_close_range 436 /* the same number on every architecture */
#endif

/* The child's stderr gets "pyexec harness: child set-up failed: STEP: ERR"
 * and the child ends. */
__attribute__((noreturn)) static void fail(const struct pyexec_child_setup *s, const char *step, int err)
{
	char text[512];
	int n = snprintf(text, sizeof(text), "pyexec harness: child set-up failed: %s: %s\n", step, strerror(err));
	if (n > 0)
		(void)!write(2, text, (size_t)n < sizeof(text) ? (size_t)n : sizeof(text) - 1);
	_exit(s->fail_code);
}

/* Closes the descriptors from low to high (inclusive): with close_range,
 * or one by one up to the descriptor limit on a kernel without it (before
 * Linux 5.9). */
static int close_span(unsigned int low, unsigned int high)
{
	if (syscall(SYS_close_range, low, high, 0) == 0)
		return 0;
	if (errno != ENOSYS)
		return -errno;
	struct rlimit lim;
	if (getrlimit(RLIMIT_NOFILE, &lim) != 0)
		return -errno;
	for (rlim_t fd = low; fd <= high && fd < lim.rlim_cur; fd++)
		close((int)fd);
	return 0;
}

/* Closes every descriptor but stdin, stdout, stderr and those in keep. */
static int close_others(const int *keep, int nkeep)
{
	int sorted[8], n = 0;
	for (int i = 0; i < nkeep && n < 8; i++) {
		if (keep[i] < 3)
			continue;
		int j = n++;
		while (j > 0 && sorted[j - 1] > keep[i]) {
			sorted[j] = sorted[j - 1];
			j--;
		}
		sorted[j] = keep[i];
	}
	unsigned int low = 3;
	for (int i = 0; i <= n; i++) {
		unsigned int high = i < n ? (unsigned int)sorted[i] : ~0U;
		int err = high > low ? close_span(low, high - 1) : 0;
		if (err < 0)
			return err;
		if (i < n)
			low = (unsigned int)sorted[i] + 1;
	}
	return 0;
}

/* mkdir -p of path's first len characters. */
static int make_dirs(const char *path, size_t len)
{
	char buf[4096];
	if (len >= sizeof(buf))
		return -ENAMETOOLONG;
	memcpy(buf, path, len);
	buf[len] = 0;
	for (size_t i = 1; i <= len; i++) {
		if (buf[i] != '/' && buf[i] != 0)
			continue;
		char c = buf[i];
		buf[i] = 0;
		if (mkdir(buf, 0777) != 0 && errno != EEXIST)
			return -errno;
		buf[i] = c;
	}
	return 0;
}

static size_t dir_len(const char *path)
{
	const char *slash = strrchr(path, '/');
	return slash == NULL ? 0 : (size_t)(slash - path);
}

/* The fresh /tmp, with the jail's mounts under it and its symlinks shown
 * again, /dev/shm, a /proc of the child's pid namespace, the loopback
 * interface up; the working directory /tmp. */
static void namespaces(const struct pyexec_child_setup *s)
{
	if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0)
		fail(s, "mount /", errno);
	/* The jail's mounts under /tmp are held open before the fresh /tmp
	 * hides them, then bound again on top of it. */
	int held[MAX_BINDS], nheld = 0;
	for (const char *const *b = s->binds; b != NULL && *b != NULL; b++) {
		if (nheld == MAX_BINDS)
			fail(s, "hold the mounts under /tmp", E2BIG);
		held[nheld] = open(*b, O_PATH | O_CLOEXEC);
		if (held[nheld] < 0)
			fail(s, *b, errno);
		nheld++;
	}
	if (mount("none", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, s->tmp_options) != 0)
		fail(s, "mount /tmp", errno);
	for (int i = 0; i < nheld; i++) {
		const char *point = s->binds[i];
		struct stat st;
		if (fstat(held[i], &st) != 0)
			fail(s, point, errno);
		int err;
		if (S_ISDIR(st.st_mode)) {
			err = make_dirs(point, strlen(point));
		} else {
			err = make_dirs(point, dir_len(point));
			int fd = err == 0 ? open(point, O_WRONLY | O_CREAT | O_CLOEXEC, 0444) : -1;
			if (fd < 0 && err == 0)
				err = -errno;
			if (fd >= 0)
				close(fd);
		}
		if (err < 0)
			fail(s, point, -err);
		char source[64];
		snprintf(source, sizeof(source), "/proc/self/fd/%d", held[i]);
		if (mount(source, point, NULL, MS_BIND | MS_REC, NULL) != 0)
			fail(s, point, errno);
		close(held[i]);
	}
	for (const char *const *l = s->links; l != NULL && l[0] != NULL && l[1] != NULL; l += 2) {
		int err = make_dirs(l[0], dir_len(l[0]));
		if (err < 0)
			fail(s, l[0], -err);
		if (symlink(l[1], l[0]) != 0)
			fail(s, l[0], errno);
	}
	if (mount("none", "/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, s->tmp_options) != 0)
		fail(s, "mount /dev/shm", errno);
	if (mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC | MS_RDONLY, NULL) != 0)
		fail(s, "mount /proc", errno);
	int sock = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (sock < 0)
		fail(s, "loopback", errno);
	struct ifreq ifr;
	memset(&ifr, 0, sizeof(ifr));
	strcpy(ifr.ifr_name, "lo");
	if (ioctl(sock, SIOCGIFFLAGS, &ifr) != 0)
		fail(s, "loopback flags", errno);
	ifr.ifr_flags |= IFF_UP;
	if (ioctl(sock, SIOCSIFFLAGS, &ifr) != 0)
		fail(s, "loopback up", errno);
	close(sock);
	if (chdir("/tmp") != 0)
		fail(s, "chdir /tmp", errno);
}

/* Whether every capability set in /proc/self/status is empty; all five
 * must be there, each a whole line. The file is read whole or not at all. */
static int no_capability_left(void)
{
	static char buf[65536];
	int fd = open("/proc/self/status", O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	size_t got = 0;
	int err = 0;
	for (;;) {
		if (got == sizeof(buf) - 1) {
			err = -EFBIG;
			break;
		}
		ssize_t n = read(fd, buf + got, sizeof(buf) - 1 - got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			err = -errno;
		if (n <= 0)
			break;
		got += (size_t)n;
	}
	close(fd);
	if (err < 0)
		return err;
	buf[got] = 0;
	static const char *const sets[] = {"\nCapInh:\t", "\nCapPrm:\t", "\nCapEff:\t", "\nCapBnd:\t", "\nCapAmb:\t"};
	for (size_t i = 0; i < sizeof(sets) / sizeof(sets[0]); i++) {
		const char *v = strstr(buf, sets[i]);
		if (v == NULL)
			return -ENODATA;
		v += strlen(sets[i]);
		if (*v == '\n' || *v == 0)
			return -ENODATA;
		for (; *v != '\n'; v++)
			if (*v != '0')
				return *v == 0 ? -ENODATA : -EPERM;
	}
	return 0;
}

/* No capability in any set, no_new_privs, the worker's filter on every
 * thread. */
static void confine(const struct pyexec_child_setup *s)
{
	if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) != 0)
		fail(s, "clear ambient capabilities", errno);
	struct __user_cap_header_struct header = {.version = _LINUX_CAPABILITY_VERSION_3, .pid = 0};
	struct __user_cap_data_struct data[2];
	memset(data, 0, sizeof(data));
	if (syscall(SYS_capset, &header, data) != 0)
		fail(s, "capset", errno);
	int err = no_capability_left();
	if (err < 0)
		fail(s, "capabilities left after dropping them", -err);
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0)
		fail(s, "prctl(PR_SET_NO_NEW_PRIVS)", errno);
	long ret = syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_TSYNC, s->filter);
	if (ret < 0)
		fail(s, "seccomp(SECCOMP_SET_MODE_FILTER)", errno);
	if (ret > 0) /* TSYNC names the thread that could not take the filter */
		fail(s, "seccomp: a thread cannot take the filter", EBUSY);
}

void pyexec_child_setup(const struct pyexec_child_setup *s, const int *keep, int nkeep)
{
	int err = close_others(keep, nkeep);
	if (err < 0)
		fail(s, "close the zygote's descriptors", -err);
	/* A session of its own: kill(0) reaches the zygote's process group,
	 * and the kernel lets a signal from a sibling pid namespace through
	 * to the init of another (the next child). */
	if (setsid() < 0)
		fail(s, "setsid", errno);
	namespaces(s);
	/* The first process the kernel's OOM killer picks; not fatal. */
	int fd = open("/proc/self/oom_score_adj", O_WRONLY | O_CLOEXEC);
	if (fd >= 0) {
		(void)!write(fd, "1000", 4);
		close(fd);
	}
	confine(s);
}
