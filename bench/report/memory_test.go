package main

import (
	"io"
	"os"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

func TestMedian(t *testing.T) {
	assert.Equal(t, 0, median(nil))
	assert.Equal(t, 5, median([]int{5}))
	assert.Equal(t, 2, median([]int{3, 1, 2}))
	assert.Equal(t, 2, median([]int{4, 1, 3, 2}), "the lower middle of an even count")
	xs := []int{3, 1, 2}
	median(xs)
	assert.Equal(t, []int{3, 1, 2}, xs, "the input is left as it was")
}

func TestMemoryTable(t *testing.T) {
	got := memoryTable([]string{"old/pyexecd", "new/pyexecd"}, [][]int{{51200, 52224, 51712}, {61440, 60416, 62464}}, 2, "strict")
	assert.Equal(t, "Idle worker PSS (MiB; median of the 2 workers; strict isolation)\n\n"+
		"| binary | run 1 | run 2 | run 3 | median |\n|---|---|---|---|---|\n"+
		"| old/pyexecd | 50.0 | 51.0 | 50.5 | **50.5** |\n"+
		"| new/pyexecd | 60.0 | 59.0 | 61.0 | **60.0** |\n", got)
}

// TestIdleMemory_RefusesBadArguments checks the bounds before anything is
// started.
func TestIdleMemory_RefusesBadArguments(t *testing.T) {
	for _, args := range [][]string{
		{"-runs", "3"},
		{"-runs", "0", "bin/pyexecd"},
		{"-runs", "11", "bin/pyexecd"},
		{"-pool", "0", "bin/pyexecd"},
		{"-pool", "17", "bin/pyexecd"},
		{"-unknown", "bin/pyexecd"},
	} {
		require.Error(t, idleMemory(args, io.Discard), "%v", args)
	}
}

// TestPoolFootprint_Fork checks the whole zygote counts: its nsjail, the
// zygote and every pre-forked child below it, at any depth, and nothing
// outside the service's tree.
func TestPoolFootprint_Fork(t *testing.T) {
	procs := map[int]procInfo{
		1:   {ppid: 0, name: "init", rssKB: 9000, pssRead: true, pssKB: 9000},
		100: {ppid: 1, name: "pyexecd", rssKB: 22 << 10, pssRead: true, pssKB: 20 << 10},
		101: {ppid: 100, name: "nsjail", rssKB: 8 << 10, pssRead: true, pssKB: 2 << 10},
		102: {ppid: 101, name: "python3", rssKB: 70 << 10, pssRead: true, pssKB: 40 << 10},
		// Another service's jail: not this pool's.
		200: {ppid: 1, name: "nsjail", rssKB: 8 << 10, pssRead: true, pssKB: 5 << 10},
		201: {ppid: 200, name: "python3", rssKB: 70 << 10, pssRead: true, pssKB: 60 << 10},
	}
	for i := 0; i < 8; i++ {
		procs[110+i] = procInfo{ppid: 102, name: "python3", rssKB: 68 << 10, pssRead: true, pssKB: 9 << 10}
	}
	// A process one of the children started counts too.
	procs[130] = procInfo{ppid: 110, name: "sh", rssKB: 2 << 10, pssRead: true, pssKB: 1 << 10}
	fp := poolFootprint(procs, 100)
	assert.Equal(t, 1, fp.Jails)
	assert.Equal(t, 9, fp.Children)
	assert.Equal(t, 70<<10, fp.HarnessKB)
	assert.Equal(t, 8<<10, fp.NsjailKB)
	assert.Equal(t, 8*(68<<10)+2<<10, fp.ChildKB)
	assert.Equal(t, 2<<10, fp.NsjailPssKB)
	assert.Equal(t, 40<<10, fp.HarnessPssKB)
	assert.Equal(t, 8*(9<<10)+1<<10, fp.ChildPssKB)
	assert.Equal(t, (2+40+72+1)<<10, fp.PoolPssKB)
	assert.Equal(t, []int{(2 + 40 + 72 + 1) << 10}, fp.WorkerPssKB)
	assert.Equal(t, 22<<10, fp.ServiceKB)
	assert.Zero(t, fp.Unread)

	// A child whose PSS cannot be read is counted as such, not as 0 KiB
	// quietly under the bound.
	c := procs[111]
	c.pssRead, c.pssKB = false, 0
	procs[111] = c
	assert.Equal(t, 1, poolFootprint(procs, 100).Unread)
}

// TestPoolFootprint_SharedFiles checks that the part of the zygote's memory
// files no process maps, which no PSS counts, is added as the zygote's.
func TestPoolFootprint_SharedFiles(t *testing.T) {
	file := map[uint64]int{7: 40 << 10}
	procs := map[int]procInfo{
		100: {ppid: 1, name: "pyexecd", pssRead: true},
		101: {ppid: 100, name: "nsjail", pssRead: true, pssKB: 2 << 10},
		102: {ppid: 101, name: "python3", pssRead: true, pssKB: 30 << 10, shared: sharedFiles{mappedKB: 5 << 10, sizeKB: file}},
	}
	for i := 0; i < 8; i++ {
		procs[110+i] = procInfo{ppid: 102, name: "python3", pssRead: true, pssKB: 9 << 10, shared: sharedFiles{mappedKB: 2 << 10, sizeKB: file}}
	}
	fp := poolFootprint(procs, 100)
	assert.Equal(t, 40<<10, fp.SharedFilesKB, "one file, however many map it")
	assert.Equal(t, (40-5-16)<<10, fp.UnmappedKB)
	assert.Equal(t, (30+19)<<10, fp.HarnessPssKB)
	assert.Equal(t, (2+30+72+19)<<10, fp.PoolPssKB)

	// Mapped in full: nothing to add.
	for pid, p := range procs {
		if p.shared.sizeKB != nil {
			p.shared.mappedKB = 40 << 10
			procs[pid] = p
		}
	}
	fp = poolFootprint(procs, 100)
	assert.Zero(t, fp.UnmappedKB)
	assert.Equal(t, (2+30+72)<<10, fp.PoolPssKB)
}

// TestReadSharedFiles reads this process's own mapping of a memory file
// named like the zygote's: its size by inode, and what is mapped of it.
func TestReadSharedFiles(t *testing.T) {
	fd, err := unix.MemfdCreate(strings.TrimPrefix(sharedFileName, "/memfd:"), unix.MFD_CLOEXEC)
	require.NoError(t, err)
	defer unix.Close(fd)
	require.NoError(t, unix.Ftruncate(fd, 1<<20))
	_, err = unix.Pwrite(fd, make([]byte, 256<<10), 0) // 256 KiB allocated, the rest a hole
	require.NoError(t, err)
	mem, err := unix.Mmap(fd, 0, 1<<20, unix.PROT_READ, unix.MAP_PRIVATE)
	require.NoError(t, err)
	defer unix.Munmap(mem)
	sum := 0
	for i := 0; i < 64<<10; i += 4096 { // map 64 KiB of it
		sum += int(mem[i])
	}
	sf := readSharedFiles(os.Getpid())
	require.Len(t, sf.sizeKB, 1, "one memory file: %+v (root is needed to read map_files)", sf)
	for _, kb := range sf.sizeKB {
		assert.Equal(t, 256, kb)
	}
	assert.GreaterOrEqual(t, sf.mappedKB, 64, "at least the pages read are mapped")
	assert.LessOrEqual(t, sf.mappedKB, 256)
	assert.Zero(t, sum)
}

// TestPoolFootprint_Strict checks one tree per worker.
func TestPoolFootprint_Strict(t *testing.T) {
	procs := map[int]procInfo{100: {ppid: 1, name: "pyexecd", rssKB: 22 << 10, pssRead: true}}
	for i := 0; i < 3; i++ {
		procs[101+2*i] = procInfo{ppid: 100, name: "nsjail", rssKB: 8 << 10, pssRead: true, pssKB: 2 << 10}
		procs[102+2*i] = procInfo{ppid: 101 + 2*i, name: "python3", rssKB: 70 << 10, pssRead: true, pssKB: (58 + i) << 10}
	}
	// A child of the service that is not a jail (a probe, say) is no worker.
	procs[120] = procInfo{ppid: 100, name: "python3", rssKB: 30 << 10, pssRead: true, pssKB: 30 << 10}
	fp := poolFootprint(procs, 100)
	assert.Equal(t, 3, fp.Jails)
	assert.Equal(t, 0, fp.Children)
	assert.Equal(t, []int{60 << 10, 61 << 10, 62 << 10}, fp.WorkerPssKB)
	assert.Equal(t, 183<<10, fp.PoolPssKB)
}

func TestMemoryTable_Fork(t *testing.T) {
	got := memoryTable([]string{"bin/pyexecd"}, [][]int{{122880}}, 8, "fork")
	assert.Equal(t, "Idle pool PSS (MiB; the zygote's nsjail, the zygote and its 8 children; fork isolation)\n\n"+
		"| binary | run 1 | median |\n|---|---|---|\n"+
		"| bin/pyexecd | 120.0 | **120.0** |\n", got)
}
