//go:build !linux

package probe

import "errors"

func isNoBufs(err error) bool { return false }

func isRefused(err error) bool { return false }

func allowedCPUs() []int { return nil }

func pinThread(cpu int) error { return errors.ErrUnsupported }
