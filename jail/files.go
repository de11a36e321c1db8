package jail

import (
	"encoding/base64"
	"fmt"
	"regexp"
	"sort"
	"unicode/utf8"

	"github.com/pyexec/pyexec"
)

// mediaTypeRE is the shape of a media type the answer passes on.
var mediaTypeRE = regexp.MustCompile(`^[a-z0-9][a-z0-9!#$&^_.+-]{0,62}/[a-z0-9][a-z0-9!#$&^_.+-]{0,62}$`)

const maxReasonBytes = 200

// checkFiles turns the output files a reply lists into the answer's: at
// most maxFiles files and maxBytes bytes of content, each with a path of
// the shape an input file may have, named once, and decodable. Anything
// else is named as left out, never dropped silently; the left-out list is
// itself capped at maxFiles entries (then truncated is set).
func checkFiles(m *replyMsg, maxFiles, maxBytes int) (files []pyexec.OutputFile, leftOut []pyexec.LeftOutFile, truncated bool) {
	truncated = m.FilesTruncated
	leave := func(path, reason string) {
		if len(leftOut) >= maxFiles {
			truncated = true
			return
		}
		if pyexec.CheckFilePath(path) != nil {
			path = shorten(fmt.Sprintf("%q", path))
		}
		leftOut = append(leftOut, pyexec.LeftOutFile{Path: path, Reason: shorten(reason)})
	}
	seen := make(map[string]bool, len(m.Files))
	total := 0
	for _, f := range m.Files {
		if err := pyexec.CheckFilePath(f.Path); err != nil || seen[f.Path] {
			leave(f.Path, "the sandbox reported an invalid or repeated path")
			continue
		}
		seen[f.Path] = true
		data, err := base64.StdEncoding.DecodeString(f.Content)
		switch {
		case err != nil:
			leave(f.Path, "the sandbox sent content that is not base64")
		case len(files) >= maxFiles:
			leave(f.Path, fmt.Sprintf("over the %d-file limit", maxFiles))
		case total+len(data) > maxBytes:
			leave(f.Path, fmt.Sprintf("%d bytes, over what is left of the %d-byte limit on output files", len(data), maxBytes))
		default:
			total += len(data)
			mt := f.MediaType
			if !mediaTypeRE.MatchString(mt) {
				mt = "application/octet-stream"
			}
			files = append(files, pyexec.OutputFile{Path: f.Path, MediaType: mt, Content: data})
		}
	}
	for _, f := range m.FilesLeftOut {
		leave(f.Path, f.Reason)
	}
	sort.Slice(files, func(i, j int) bool { return files[i].Path < files[j].Path })
	return files, leftOut, truncated
}

// shorten cuts s to maxReasonBytes at a character boundary, and makes it
// valid UTF-8.
func shorten(s string) string {
	s = string([]rune(s)) // invalid bytes become U+FFFD
	if len(s) <= maxReasonBytes {
		return s
	}
	cut := maxReasonBytes
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}
