// Package pyharness carries the Python program that runs inside the jail.
// To Go it is data: package jail writes it to a private directory and
// bind-mounts that directory read-only into each worker.
package pyharness

import _ "embed"

//go:embed harness.py
var source string

// FileName is the name the harness must have inside its directory.
const FileName = "harness.py"

// Source returns the harness program's text.
func Source() string { return source }
