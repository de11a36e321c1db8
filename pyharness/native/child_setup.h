/* A new child's set-up in C (child_setup.c), as the fork loop runs it. */
#ifndef PYEXEC_CHILD_SETUP_H
#define PYEXEC_CHILD_SETUP_H

/* Laid out as harness.py's ChildSetup. */
struct pyexec_child_setup {
	int fail_code;              /* the exit code of a child whose set-up failed */
	int devnull;                /* kept open, as the child's own three */
	const char *tmp_options;    /* tmpfs options of /tmp and /dev/shm */
	const char *const *binds;   /* the jail's mounts under /tmp; NULL-terminated */
	const char *const *links;   /* symlinks under /tmp: path, target, ...; NULL-terminated */
	const void *filter;         /* the worker's seccomp program, a struct sock_fprog */
};

/* Confines the calling child: returns once it is, or exits. */
void pyexec_child_setup(const struct pyexec_child_setup *setup, const int *keep, int nkeep);

#endif
