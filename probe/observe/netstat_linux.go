package observe

import (
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"

	"github.com/vishvananda/netns"
)

// SynCookiesSent reads the kernel's count of SYN cookies sent
// (/proc/net/netstat, TcpExt SyncookiesSent) in the Diag's network
// namespace. The merger compares it before our SYN and after the SYN-ACK:
// a SYN cookie leaves no socket to read, but it is counted.
func (d *Diag) SynCookiesSent() (int64, error) {
	var b []byte
	read := func() error {
		var err error
		// /proc/thread-self/net is the network namespace of this thread.
		b, err = os.ReadFile("/proc/thread-self/net/netstat")
		return err
	}
	if d.ns == "" {
		if err := read(); err != nil {
			return 0, fmt.Errorf("observe: netstat: %w", err)
		}
	} else if err := inNetns(d.ns, read); err != nil {
		return 0, fmt.Errorf("observe: netstat in %q: %w", d.ns, err)
	}
	return netstatField(string(b), "TcpExt:", "SyncookiesSent")
}

// inNetns runs f on a locked OS thread inside the named network namespace.
func inNetns(name string, f func() error) error {
	errc := make(chan error, 1)
	go func() {
		// The thread is left locked (and so discarded when this goroutine
		// ends) if it could not be moved back.
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			errc <- err
			return
		}
		defer orig.Close()
		target, err := netns.GetFromName(name)
		if err != nil {
			errc <- err
			return
		}
		defer target.Close()
		if err := netns.Set(target); err != nil {
			errc <- err
			return
		}
		ferr := f()
		if err := netns.Set(orig); err == nil {
			runtime.UnlockOSThread()
		}
		errc <- ferr
	}()
	return <-errc
}

// netstatField finds one counter in /proc/net/netstat's header/value line
// pairs.
func netstatField(text, prefix, field string) (int64, error) {
	lines := strings.Split(text, "\n")
	for i := 0; i+1 < len(lines); i++ {
		if !strings.HasPrefix(lines[i], prefix) || !strings.HasPrefix(lines[i+1], prefix) {
			continue
		}
		names, vals := strings.Fields(lines[i]), strings.Fields(lines[i+1])
		for j, n := range names {
			if n == field && j < len(vals) {
				return strconv.ParseInt(vals[j], 10, 64)
			}
		}
	}
	return 0, fmt.Errorf("observe: netstat has no %s %s", prefix, field)
}
