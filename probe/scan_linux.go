package probe

import (
	"errors"

	"golang.org/x/sys/unix"
)

func isNoBufs(err error) bool { return errors.Is(err, unix.ENOBUFS) || errors.Is(err, unix.EAGAIN) }
