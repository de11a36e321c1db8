package main

import (
	"strconv"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

const sourceLocationKey = "logging.googleapis.com/sourceLocation"

// sourceLocationCore writes an entry's caller as Cloud Logging's
// sourceLocation (file, line, function), which the log viewer shows and
// links, instead of zap's "caller" string, which it does not read.
type sourceLocationCore struct{ zapcore.Core }

func (c sourceLocationCore) With(fields []zapcore.Field) zapcore.Core {
	return sourceLocationCore{c.Core.With(fields)}
}

func (c sourceLocationCore) Check(e zapcore.Entry, ce *zapcore.CheckedEntry) *zapcore.CheckedEntry {
	if c.Enabled(e.Level) {
		return ce.AddCore(e, c)
	}
	return ce
}

func (c sourceLocationCore) Write(e zapcore.Entry, fields []zapcore.Field) error {
	if e.Caller.Defined {
		// A copy: the caller's slice may have room that another entry
		// shares.
		fields = append(fields[:len(fields):len(fields)], zap.Object(sourceLocationKey, sourceLocation(e.Caller)))
	}
	return c.Core.Write(e, fields)
}

type sourceLocation zapcore.EntryCaller

func (s sourceLocation) MarshalLogObject(enc zapcore.ObjectEncoder) error {
	enc.AddString("file", s.File)
	// An int64 in Cloud Logging's LogEntry, which JSON writes as a string.
	enc.AddString("line", strconv.Itoa(s.Line))
	if s.Function != "" {
		enc.AddString("function", s.Function)
	}
	return nil
}
