package protocol

import (
	"fmt"
	"unicode/utf8"
)

// refusedRune reports the first character of s that no text field may hold,
// and its position in characters: invalid UTF-8 (and so an unpaired
// surrogate), NUL and the other C0 controls, DEL, the C1 controls, the
// zero-width characters and the bidirectional controls. PostgreSQL refuses
// NUL outright; the others are invisible in a partner's admin pages and can
// make two different names look the same.
func refusedRune(s string) (r rune, at int, bad bool) {
	i := 0
	for _, r := range s {
		if r == utf8.RuneError || r < 0x20 || r >= 0x7f && r <= 0x9f || invisible(r) {
			return r, i, true
		}
		i++
	}
	return 0, 0, false
}

// invisible reports the zero-width and bidirectional control characters, and
// the line and paragraph separators.
func invisible(r rune) bool {
	switch {
	case r >= 0x200b && r <= 0x200f, // zero-width space, non-joiner, joiner; LRM, RLM
		r >= 0x2028 && r <= 0x202e,            // line and paragraph separators; LRE, RLE, PDF, LRO, RLO
		r >= 0x2060 && r <= 0x2064,            // word joiner and invisible operators
		r >= 0x2066 && r <= 0x2069,            // LRI, RLI, FSI, PDI
		r == 0x061c, r == 0xfeff, r == 0x180e: // Arabic letter mark, BOM, Mongolian vowel separator
		return true
	}
	return false
}

// checkRunes is the 400 of a text field holding a refused character.
func checkRunes(field, v string) *Error {
	r, at, bad := refusedRune(v)
	if !bad {
		return nil
	}
	what := fmt.Sprintf("U+%04X", r)
	if r == utf8.RuneError {
		what = "invalid UTF-8"
	}
	return InvalidParams(field, fmt.Sprintf(
		"%s must not contain control, zero-width or bidirectional characters (found %s at character %d)", field, what, at+1))
}
