package main

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
)

// sharedFileName names the zygote's memory files: its memory, moved into
// sealed memory files that it and every child map privately
// (pyharness/native/zygote_memory.c).
const sharedFileName = "/memfd:pyexec-zygote"

// sharedFiles is what one process maps of the zygote's memory files. A
// file page no process maps is in memory but in nobody's PSS, so the pool's
// footprint adds the files' size less what is mapped.
type sharedFiles struct {
	// mappedKB is its proportional share of the file pages it maps: the
	// mappings' PSS less their anonymous pages (its own copies of pages it
	// wrote, which its PSS counts already). Subtracting every anonymous
	// page, shared or not, can only make the unmapped rest look larger.
	mappedKB int
	// sizeKB is each file's allocated size, by inode.
	sizeKB map[uint64]int
}

// unmappedKB is the size of the memory files a group of processes maps
// (each file once) and the part of it none of them maps.
func unmappedKB(procs []sharedFiles) (size, unmapped int) {
	files, mapped := map[uint64]int{}, 0
	for _, sf := range procs {
		mapped += sf.mappedKB
		for ino, kb := range sf.sizeKB {
			files[ino] = kb
		}
	}
	for _, kb := range files {
		size += kb
	}
	return size, max(size-mapped, 0)
}

// readSharedFiles reads a process's mappings of the zygote's memory files
// (root only: the zygote and its children are not dumpable).
func readSharedFiles(pid int) sharedFiles {
	var sf sharedFiles
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/smaps", pid))
	if err != nil || !bytes.Contains(data, []byte(sharedFileName)) {
		return sf
	}
	in := false
	pss := 0
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		line := sc.Text()
		fields := strings.Fields(line)
		if len(fields) == 0 {
			continue
		}
		if span, ok := vmaSpan(fields[0]); ok {
			in = strings.Contains(line, sharedFileName)
			if in {
				if st, err := os.Stat(fmt.Sprintf("/proc/%d/map_files/%s", pid, span)); err == nil {
					if sys, ok := st.Sys().(*syscall.Stat_t); ok {
						if sf.sizeKB == nil {
							sf.sizeKB = map[uint64]int{}
						}
						sf.sizeKB[sys.Ino] = int(sys.Blocks * 512 / 1024)
					}
				}
			}
			continue
		}
		if !in || len(fields) < 2 {
			continue
		}
		kb, err := strconv.Atoi(fields[1])
		if err != nil {
			continue
		}
		switch fields[0] {
		case "Pss:":
			pss = kb
		case "Anonymous:":
			if pss > kb {
				sf.mappedKB += pss - kb
			}
		}
	}
	return sf
}

// vmaSpan reads a mapping's address range from the first field of its
// smaps header ("7f12a000-7f12c000"), as /proc/pid/map_files names it.
func vmaSpan(field string) (string, bool) {
	lo, hi, ok := strings.Cut(field, "-")
	if !ok {
		return "", false
	}
	a, err1 := strconv.ParseUint(lo, 16, 64)
	b, err2 := strconv.ParseUint(hi, 16, 64)
	if err1 != nil || err2 != nil {
		return "", false
	}
	return fmt.Sprintf("%x-%x", a, b), true
}
