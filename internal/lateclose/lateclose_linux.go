package lateclose

import (
	"fmt"
	"syscall"

	"golang.org/x/sys/unix"
)

// Handoff makes the kernel hold a reference to fd until its Unix garbage
// collector runs, so that the caller's close of fd is not the last one.
// The caller closes fd as usual, then calls done, which lets the collector
// run: what the object's release does (an RCU grace period) then happens
// there, not in the close. On an error nothing was handed off (done is a
// no-op), and the close waits as before.
func Handoff(fd int) (done func(), err error) {
	p, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return func() {}, fmt.Errorf("lateclose: socketpair: %w", err)
	}
	// p[1] travels in its own queue with fd: once p[0] is closed too, a
	// cycle only the collector can find. Releasing p[0] is what schedules
	// the collector, so it comes last, after the caller's close of fd:
	// earlier, the collector could drop its reference first and leave the
	// caller's close the last one.
	if err := unix.Sendmsg(p[0], []byte{0}, unix.UnixRights(p[1], fd), nil, unix.MSG_DONTWAIT); err != nil {
		unix.Close(p[0])
		unix.Close(p[1])
		return func() {}, fmt.Errorf("lateclose: hand off descriptor %d: %w", fd, err)
	}
	unix.Close(p[1])
	return func() { unix.Close(p[0]) }, nil
}

// CloseFD closes fd with its last reference handed off (Handoff): the
// close returns at once.
func CloseFD(fd int) error {
	done, _ := Handoff(fd)
	defer done()
	return unix.Close(fd)
}

// Close closes c by its own close (an *os.File's, a netlink.Conn's) with
// the last reference to its descriptor handed off first (Handoff).
func Close(c syscall.Conn, close func() error) error {
	done := func() {}
	if rc, err := c.SyscallConn(); err == nil {
		_ = rc.Control(func(fd uintptr) { done, _ = Handoff(int(fd)) })
	}
	defer done()
	return close()
}
