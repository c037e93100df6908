// Package ptytest opens real pseudo-terminals for tests on Linux: output
// that must look right on a terminal of a given width is written to one, as
// to a user's terminal, and read back from the other side.
package ptytest
