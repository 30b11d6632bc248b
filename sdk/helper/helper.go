// Package helper finds the small programs a plugin ships next to its own
// binary for its long-lived helper processes. It imports nothing beyond the
// standard library, so those programs stay small.
package helper

import (
	"os"
	"path/filepath"
)

// Binary is the program a plugin runs for a long-lived helper
// process of its own (a per-container supervisor, a pod init): the program
// named name in the plugin binary's directory when it is there and
// executable, else the plugin binary itself (which must then recognise the
// helper's arguments before serving). A helper that links only its own
// code costs a few hundred KiB per process instead of a copy of the
// plugin's runtime state.
func Binary(name string) (string, error) {
	self, err := os.Executable()
	if err != nil {
		return "", err
	}
	helper := filepath.Join(filepath.Dir(self), name)
	if st, err := os.Stat(helper); err == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0 {
		return helper, nil
	}
	return self, nil
}
