package ptytest

import (
	"fmt"
	"os"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// Open returns a new pty's two sides: tty, the terminal a program writes
// to (its stdout), cols columns wide and 50 rows high, and master, where
// what the terminal received is read. Output processing and echo are off,
// so what is read are the bytes written (no CR added before each LF). Both
// are closed when t ends.
func Open(t testing.TB, cols int) (master, tty *os.File) {
	t.Helper()
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Fatalf("open /dev/ptmx: %v", err)
	}
	t.Cleanup(func() { m.Close() })
	if err := unix.IoctlSetPointerInt(int(m.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		t.Fatalf("unlockpt: %v", err)
	}
	n, err := unix.IoctlGetUint32(int(m.Fd()), unix.TIOCGPTN)
	if err != nil {
		t.Fatalf("ptsname: %v", err)
	}
	s, err := os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Fatalf("open the pty's terminal side: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	tio, err := unix.IoctlGetTermios(int(s.Fd()), unix.TCGETS)
	if err != nil {
		t.Fatalf("tcgetattr: %v", err)
	}
	tio.Oflag &^= unix.OPOST
	tio.Lflag &^= unix.ECHO
	if err := unix.IoctlSetTermios(int(s.Fd()), unix.TCSETS, tio); err != nil {
		t.Fatalf("tcsetattr: %v", err)
	}
	if err := unix.IoctlSetWinsize(int(s.Fd()), unix.TIOCSWINSZ, &unix.Winsize{Row: 50, Col: uint16(cols)}); err != nil {
		t.Fatalf("set the window size: %v", err)
	}
	return m, s
}

// ReadAll starts reading master and returns a channel that delivers all it
// read once the terminal side is closed (by every process holding it) and
// drained.
func ReadAll(master *os.File) <-chan []byte {
	done := make(chan []byte, 1)
	go func() {
		var b []byte
		buf := make([]byte, 32<<10)
		for {
			n, err := master.Read(buf)
			b = append(b, buf[:n]...)
			if err != nil { // EIO once the terminal side is closed and drained
				done <- b
				return
			}
		}
	}()
	return done
}
