package probe

import (
	"errors"

	"golang.org/x/sys/unix"
)

func isNoBufs(err error) bool { return errors.Is(err, unix.ENOBUFS) || errors.Is(err, unix.EAGAIN) }

// isRefused tells an EPERM from sendmsg: a rule on this host's netfilter
// output hook dropped the packet.
func isRefused(err error) bool { return errors.Is(err, unix.EPERM) }

// allowedCPUs is the CPUs this process may run on (its affinity mask).
func allowedCPUs() []int {
	var set unix.CPUSet
	if err := unix.SchedGetaffinity(0, &set); err != nil {
		return nil
	}
	var cpus []int
	for i := range len(set) * 64 {
		if set.IsSet(i) {
			cpus = append(cpus, i)
		}
	}
	return cpus
}

// pinThread binds the calling OS thread (locked to its goroutine) to cpu.
func pinThread(cpu int) error {
	var set unix.CPUSet
	set.Set(cpu)
	return unix.SchedSetaffinity(0, &set)
}
