//go:build !linux

package lateclose

import (
	"syscall"

	"golang.org/x/sys/unix"
)

// Handoff does nothing on this system: the caller's close releases fd.
func Handoff(fd int) (done func(), err error) { return func() {}, nil }

// CloseFD closes fd.
func CloseFD(fd int) error { return unix.Close(fd) }

// Close closes c by its own close.
func Close(c syscall.Conn, close func() error) error { return close() }
