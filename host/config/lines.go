package config

import (
	"strings"
)

// lineIndex finds the line on which a TOML key is defined. BurntSushi/toml
// reports lines for syntax and type errors but not for keys found unknown or
// invalid after decoding, so this recovers them from the text: it tracks the
// current [table] header and matches `key =` lines, dotted and quoted keys
// included. It does not descend into inline tables; for a key inside one it
// returns the line of the inline table's key.
type lineIndex struct {
	keys map[string]int // dotted key path -> first line
}

func newLineIndex(data []byte) *lineIndex {
	idx := &lineIndex{keys: map[string]int{}}
	var table []string
	for i, raw := range strings.Split(string(data), "\n") {
		line := strings.TrimSpace(raw)
		if line == "" || line[0] == '#' {
			continue
		}
		n := i + 1
		if strings.HasPrefix(line, "[") {
			hdr := strings.TrimPrefix(strings.TrimPrefix(line, "["), "[")
			if end := strings.Index(hdr, "]"); end >= 0 {
				hdr = hdr[:end]
			}
			table = splitKey(hdr)
			idx.add(table, n)
			continue
		}
		eq := strings.Index(line, "=")
		if eq <= 0 {
			continue
		}
		key := append(append([]string(nil), table...), splitKey(line[:eq])...)
		idx.add(key, n)
	}
	return idx
}

func (idx *lineIndex) add(key []string, line int) {
	// Register every prefix too, so a table's line is known from its first key.
	for i := 1; i <= len(key); i++ {
		k := strings.Join(key[:i], "\x00")
		if _, ok := idx.keys[k]; !ok {
			idx.keys[k] = line
		}
	}
}

// find returns the line of the longest defined prefix of key, or 0.
func (idx *lineIndex) find(key []string) int {
	for i := len(key); i > 0; i-- {
		if n, ok := idx.keys[strings.Join(key[:i], "\x00")]; ok {
			return n
		}
	}
	return 0
}

// splitKey splits a TOML key like `a."b.c".d` into its parts.
func splitKey(s string) []string {
	var parts []string
	var cur strings.Builder
	quote := byte(0)
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case quote != 0 && c == quote:
			quote = 0
		case quote != 0:
			cur.WriteByte(c)
		case c == '"' || c == '\'':
			quote = c
		case c == '.':
			parts = append(parts, strings.TrimSpace(cur.String()))
			cur.Reset()
		default:
			cur.WriteByte(c)
		}
	}
	return append(parts, strings.TrimSpace(cur.String()))
}
