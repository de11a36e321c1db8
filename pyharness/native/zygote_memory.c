/*
 * The zygote's memory, moved into sealed memory files before its first fork.
 *
 * A fork copies the page table of every private mapping that has anonymous
 * pages, entry by entry, and the child's exit drops those entries again:
 * for a zygote holding about 47 MiB of anonymous memory (numpy and pandas
 * imported) that is most of what a fork costs. A private mapping of a file
 * with no page written since it was mapped is not copied at all: the child
 * maps the file's pages on first touch, and only those.
 *
 * pyexec_share_memory rewrites each anonymous mapping (the heap included,
 * the stack not) as a private mapping of a memory file holding the same
 * bytes: the file is written from the mapping, sealed against any further
 * change, and mapped over it at the same address, with the same protection.
 * Private means a write by the zygote or by a child copies the page, as
 * before; sealed means no one can change what every later child starts
 * from, even with a descriptor to the file, and none is left open.
 *
 * It runs in C because the copy and the mapping must be one step: a byte
 * the interpreter wrote between them would be lost. The caller holds the
 * GIL and is the only thread. Nothing here allocates from the heap.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define PAGE 4096UL
#define PM_PRESENT (1ULL << 63)
#define PM_SWAPPED (1ULL << 62)

struct region {
	uintptr_t start, end;
};

static uintptr_t parse_hex(const char **p, const char *end)
{
	uintptr_t v = 0;
	for (; *p < end; (*p)++) {
		char c = **p;
		if (c >= '0' && c <= '9')
			v = v * 16 + (uintptr_t)(c - '0');
		else if (c >= 'a' && c <= 'f')
			v = v * 16 + (uintptr_t)(c - 'a' + 10);
		else
			break;
	}
	return v;
}

/* One line of /proc/self/maps: whether it is a private, writable,
 * anonymous mapping (or the heap) other than the stack. */
static int parse_line(const char *line, const char *eol, struct region *r)
{
	const char *p = line;
	r->start = parse_hex(&p, eol);
	if (p >= eol || *p != '-')
		return 0;
	p++;
	r->end = parse_hex(&p, eol);
	if (eol - p < 5 || memcmp(p + 1, "rw-p", 4) != 0)
		return 0;
	/* perms, offset, device, inode, then the path if any */
	for (int field = 0; field < 4; field++) {
		while (p < eol && *p == ' ')
			p++;
		while (p < eol && *p != ' ')
			p++;
	}
	while (p < eol && *p == ' ')
		p++;
	if (p == eol)
		return 1;
	return eol - p == 6 && memcmp(p, "[heap]", 6) == 0;
}

/* Write the region's pages that hold data (present or swapped out) into
 * fd at their offsets; pages never touched stay holes, which read as the
 * zeros they would have read. */
static int copy_region(int fd, int pagemap, const struct region *r)
{
	uint64_t entries[512];
	size_t pages = (r->end - r->start) / PAGE;
	for (size_t i = 0; i < pages;) {
		size_t n = pages - i < 512 ? pages - i : 512;
		off_t at = (off_t)((r->start / PAGE + i) * sizeof(uint64_t));
		if (pread(pagemap, entries, n * sizeof(uint64_t), at) != (ssize_t)(n * sizeof(uint64_t)))
			return -1;
		for (size_t j = 0; j < n;) {
			if (!(entries[j] & (PM_PRESENT | PM_SWAPPED))) {
				j++;
				continue;
			}
			size_t k = j;
			while (k < n && (entries[k] & (PM_PRESENT | PM_SWAPPED)))
				k++;
			size_t off = (i + j) * PAGE, len = (k - j) * PAGE;
			const char *src = (const char *)(r->start + off);
			while (len > 0) {
				ssize_t w = pwrite(fd, src, len, (off_t)off);
				if (w <= 0)
					return -1;
				src += w, off += (size_t)w, len -= (size_t)w;
			}
			j = k;
		}
		i += n;
	}
	return 0;
}

/* Move one region; 0 if it was left as it is (the file could not be made
 * or filled: a size over RLIMIT_FSIZE, say), -1 if mapping over it failed. */
static int share_region(int pagemap, const struct region *r)
{
	size_t len = r->end - r->start;
	int fd = memfd_create("pyexec-zygote", MFD_CLOEXEC | MFD_ALLOW_SEALING);
	if (fd < 0)
		return 0;
	if (ftruncate(fd, (off_t)len) != 0 || copy_region(fd, pagemap, r) != 0 ||
	    fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_SEAL) != 0) {
		close(fd);
		return 0;
	}
	void *m = mmap((void *)r->start, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_FIXED, fd, 0);
	close(fd);
	return m == (void *)r->start ? 1 : -1;
}

/* The bytes of address space moved, or -errno if /proc/self/maps or
 * /proc/self/pagemap cannot be read, or -EFAULT if a mapping failed half
 * way (the process must not go on: part of its memory may be gone). */
long pyexec_share_memory(void)
{
	/* The list is read whole before anything changes, into a mapping of
	 * its own, which is then left alone. */
	size_t cap = 1 << 20;
	char *maps = mmap(NULL, cap, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (maps == MAP_FAILED)
		return -errno;
	int fd = open("/proc/self/maps", O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		long err = -errno;
		munmap(maps, cap);
		return err;
	}
	size_t n = 0;
	ssize_t got;
	while (n < cap && (got = read(fd, maps + n, cap - n)) > 0)
		n += (size_t)got;
	close(fd);
	int pagemap = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
	if (pagemap < 0 || n == cap) {
		long err = pagemap < 0 ? -errno : -E2BIG;
		munmap(maps, cap);
		return err;
	}
	long moved = 0;
	for (const char *line = maps, *end = maps + n; line < end;) {
		const char *eol = memchr(line, '\n', (size_t)(end - line));
		if (eol == NULL)
			eol = end;
		struct region r;
		if (parse_line(line, eol, &r) && r.start != (uintptr_t)maps) {
			int ok = share_region(pagemap, &r);
			if (ok < 0) {
				moved = -EFAULT;
				break;
			}
			if (ok > 0)
				moved += (long)(r.end - r.start);
		}
		line = eol + 1;
	}
	close(pagemap);
	munmap(maps, cap);
	return moved;
}
