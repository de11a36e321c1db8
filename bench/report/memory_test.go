package main

import (
	"io"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
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
