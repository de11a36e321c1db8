package pyexec

import "strconv"

// LoneSurrogate finds the first \uXXXX escape in the JSON text raw (already
// known to be valid JSON) that is half of a UTF-16 surrogate pair without
// the other half: a high surrogate not followed by an escaped low one, or a
// low surrogate not preceded by a high one. Such an escape is valid JSON
// text but names no character; Go's decoder turns it into U+FFFD, other
// readers fail on it. It returns the escape and true when there is one.
func LoneSurrogate(raw []byte) (string, bool) {
	hex := func(i int) (rune, bool) {
		if i+6 > len(raw) || raw[i] != '\\' || raw[i+1] != 'u' {
			return 0, false
		}
		v, err := strconv.ParseUint(string(raw[i+2:i+6]), 16, 16)
		return rune(v), err == nil
	}
	for i := 0; i < len(raw); i++ {
		if raw[i] != '\\' {
			continue
		}
		r, ok := hex(i)
		if !ok {
			i++ // a two-character escape such as \\ or \"
			continue
		}
		switch {
		case r >= 0xD800 && r <= 0xDBFF:
			if lo, ok := hex(i + 6); ok && lo >= 0xDC00 && lo <= 0xDFFF {
				i += 11
				continue
			}
			return string(raw[i : i+6]), true
		case r >= 0xDC00 && r <= 0xDFFF:
			return string(raw[i : i+6]), true
		}
		i += 5
	}
	return "", false
}
