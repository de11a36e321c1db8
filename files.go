package pyexec

import (
	"fmt"
	"strings"
)

// File is an input file: written into the script's working directory at
// Path before the script starts.
type File struct {
	Path    string
	Content []byte
}

// OutputFile is a file the script left under output/ in its working
// directory; Path is relative to output/.
type OutputFile struct {
	Path      string
	MediaType string
	Content   []byte
}

// LeftOutFile names a file under output/ that is not in the answer, and why.
type LeftOutFile struct {
	Path   string
	Reason string
}

// OutputDir is the directory, in the script's working directory, whose
// files come back in the answer.
const OutputDir = "output"

// Limits on a file path, in bytes: a whole path and one of its segments
// (the latter is what Linux allows for one name).
const (
	MaxFilePathBytes    = 1024
	MaxFileSegmentBytes = 255
)

// CheckFilePath refuses a path that is not a plain relative path inside the
// working directory: it must be made of '/'-separated names, none empty,
// "." or "..", with no NUL or backslash (a backslash is a separator to some
// clients, and a name that looks like two is refused rather than guessed).
// The message names the path.
func CheckFilePath(p string) error {
	switch {
	case p == "":
		return fmt.Errorf("file path is empty")
	case len(p) > MaxFilePathBytes:
		return fmt.Errorf("file path %.64q... is over %d bytes", p, MaxFilePathBytes)
	case strings.HasPrefix(p, "/"):
		return fmt.Errorf("file path %q is absolute: paths are relative to the working directory", p)
	case strings.ContainsAny(p, "\x00\\"):
		return fmt.Errorf("file path %q holds a NUL or a backslash", p)
	}
	for _, seg := range strings.Split(p, "/") {
		switch {
		case seg == "":
			return fmt.Errorf("file path %q has an empty segment (a doubled or trailing '/')", p)
		case seg == "." || seg == "..":
			return fmt.Errorf("file path %q has a %q segment: paths must be normalised and stay in the working directory", p, seg)
		case len(seg) > MaxFileSegmentBytes:
			return fmt.Errorf("file path %q has a name over %d bytes", p, MaxFileSegmentBytes)
		}
	}
	return nil
}

// CheckFiles refuses a set of input files the working directory cannot
// hold as given: a bad path, the same path twice, a path that is also
// another's directory ("data" and "data/x.csv"), more than maxFiles files or
// more than maxBytes bytes of content in all. Errors are CodeInvalidRequest
// and name the path.
func CheckFiles(files []File, maxFiles, maxBytes int) error {
	if len(files) > maxFiles {
		return Errorf(CodeInvalidRequest, "%d input files, over the %d-file limit", len(files), maxFiles)
	}
	seen := make(map[string]bool, len(files))
	total := 0
	for _, f := range files {
		if err := CheckFilePath(f.Path); err != nil {
			return Errorf(CodeInvalidRequest, "%v", err)
		}
		if f.Path == OutputDir {
			return Errorf(CodeInvalidRequest, "file path %q is the directory for output files", f.Path)
		}
		if seen[f.Path] {
			return Errorf(CodeInvalidRequest, "file path %q is given twice", f.Path)
		}
		seen[f.Path] = true
		total += len(f.Content)
	}
	if total > maxBytes {
		return Errorf(CodeInvalidRequest, "input files hold %d bytes, over the %d-byte limit", total, maxBytes)
	}
	for _, f := range files {
		for i := strings.IndexByte(f.Path, '/'); i >= 0; {
			if dir := f.Path[:i]; seen[dir] {
				return Errorf(CodeInvalidRequest, "file path %q is also the directory of %q", dir, f.Path)
			}
			next := strings.IndexByte(f.Path[i+1:], '/')
			if next < 0 {
				break
			}
			i += 1 + next
		}
	}
	return nil
}
