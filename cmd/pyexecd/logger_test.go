package main

import (
	"bytes"
	"encoding/json"
	"runtime"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// The caller is Cloud Logging's sourceLocation, on lines from a logger
// with fields of its own too, and there is no plain "caller".
func TestLogger_SourceLocation(t *testing.T) {
	var buf bytes.Buffer
	log := newLogger(zapcore.InfoLevel, zapcore.AddSync(&buf)).Named("api").With(zap.String("k", "v"))
	_, file, line, _ := runtime.Caller(0)
	log.Info("here")
	log.Debug("below the level")

	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	require.Len(t, lines, 1)
	var entry map[string]any
	require.NoError(t, json.Unmarshal([]byte(lines[0]), &entry))
	assert.NotContains(t, entry, "caller")
	assert.Equal(t, "v", entry["k"])
	loc, ok := entry["logging.googleapis.com/sourceLocation"].(map[string]any)
	require.True(t, ok, "%s", lines[0])
	assert.Equal(t, file, loc["file"])
	assert.Equal(t, strconv.Itoa(line+1), loc["line"], "an int64 is a string in LogEntry's JSON")
	assert.Equal(t, "github.com/pyexec/pyexec/cmd/pyexecd.TestLogger_SourceLocation", loc["function"])
}
