package probe

import (
	"errors"

	"golang.org/x/sys/unix"
)

func isNoBufs(err error) bool { return errors.Is(err, unix.ENOBUFS) || errors.Is(err, unix.EAGAIN) }

// isRefused tells an EPERM from sendmsg: a rule on this host's netfilter
// output hook dropped the packet.
func isRefused(err error) bool { return errors.Is(err, unix.EPERM) }
