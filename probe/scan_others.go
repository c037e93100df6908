//go:build !linux

package probe

func isNoBufs(err error) bool { return false }

func isRefused(err error) bool { return false }
