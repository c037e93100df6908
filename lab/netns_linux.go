package lab

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"

	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// netnsDir is where named network namespaces are bind-mounted, as `ip netns` does.
const netnsDir = "/run/netns"

// Do runs fn on a locked OS thread inside the named network namespace ns and returns its error. Sockets fn creates
// stay in ns and may be used from any goroutine afterwards. fn runs on a goroutine of its own; its thread returns
// to the original namespace afterwards, or, if that fails, is discarded by the runtime.
func Do(ns string, fn func() error) error {
	if err := inNS(ns, fn); err != nil {
		return fmt.Errorf("lab: in namespace %s: %w", ns, err)
	}
	return nil
}

// inNS is Do without the error prefix, for the package's own callers.
func inNS(ns string, fn func() error) error {
	h, err := openNS(ns)
	if err != nil {
		return err
	}
	defer h.Close()
	return doIn(h, fn)
}

// doIn runs fn on a fresh locked thread that has entered target.
func doIn(target netns.NsHandle, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		// The thread stays locked unless it is safely back in its original namespace: a goroutine that exits
		// locked takes its thread with it, so a thread in the wrong namespace is never reused.
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			errc <- fmt.Errorf("get current namespace: %w", err)
			return
		}
		defer orig.Close()
		if err := unix.Setns(int(target), unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("enter namespace: %w", err)
			return
		}
		ferr := fn()
		if err := unix.Setns(int(orig), unix.CLONE_NEWNET); err != nil {
			errc <- errors.Join(ferr, fmt.Errorf("restore namespace: %w", err))
			return
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}

// nsPath returns the bind-mount path of the named namespace.
func nsPath(name string) string { return filepath.Join(netnsDir, name) }

// openNS opens the named namespace and checks that the path really is a namespace (a bind mount of nsfs) and not a
// stale file left by an interrupted run.
func openNS(name string) (netns.NsHandle, error) {
	ok, err := nsExists(name)
	if err != nil {
		return netns.None(), err
	}
	if !ok {
		return netns.None(), fmt.Errorf("namespace %s does not exist: %w", name, fs.ErrNotExist)
	}
	h, err := netns.GetFromPath(nsPath(name))
	if err != nil {
		return netns.None(), fmt.Errorf("open namespace %s: %w", name, err)
	}
	return h, nil
}

// nsExists reports whether the named namespace exists as a mounted namespace.
func nsExists(name string) (bool, error) {
	var st unix.Statfs_t
	err := unix.Statfs(nsPath(name), &st)
	if errors.Is(err, unix.ENOENT) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("stat namespace %s: %w", name, err)
	}
	return st.Type == unix.NSFS_MAGIC, nil
}

// createNS creates the named namespace unless it exists. The new namespace is made on a locked thread that is
// discarded afterwards, so no thread of the process is left in it.
func createNS(name string) error {
	ok, err := nsExists(name)
	if err != nil || ok {
		return err
	}
	if err := os.MkdirAll(netnsDir, 0o755); err != nil {
		return fmt.Errorf("create %s: %w", netnsDir, err)
	}
	if err := sharedNetnsDir(); err != nil {
		return err
	}
	path := nsPath(name)
	// A file that exists but is no namespace is a leftover of an interrupted run: replace it.
	if err := removeNS(name); err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_RDONLY, 0o444)
	if err != nil {
		return fmt.Errorf("create namespace file: %w", err)
	}
	f.Close()
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread ends with the goroutine
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("unshare: %w", err)
			return
		}
		src := fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid())
		if err := unix.Mount(src, path, "none", unix.MS_BIND, ""); err != nil {
			errc <- fmt.Errorf("bind mount %s: %w", path, err)
			return
		}
		errc <- nil
	}()
	if err := <-errc; err != nil {
		os.Remove(path)
		return err
	}
	return nil
}

// sharedNetnsDir makes /run/netns a mount point of its own with shared
// propagation, as `ip netns add` does before its first namespace. A
// namespace file bind-mounted while /run/netns was a plain directory is
// hidden as soon as ip makes that mount point over it: it can then be
// neither used by name nor removed ("device or resource busy").
func sharedNetnsDir() error {
	for made := false; ; made = true {
		err := unix.Mount("", netnsDir, "none", unix.MS_SHARED|unix.MS_REC, "")
		if err == nil {
			return nil
		}
		if !errors.Is(err, unix.EINVAL) || made {
			return fmt.Errorf("make %s a shared mount: %w", netnsDir, err)
		}
		// Not a mount point yet: make it one.
		if err := unix.Mount(netnsDir, netnsDir, "none", unix.MS_BIND|unix.MS_REC, ""); err != nil {
			return fmt.Errorf("bind mount %s on itself: %w", netnsDir, err)
		}
	}
}

// removeNS unmounts and removes the named namespace; a missing or unmounted one is fine.
func removeNS(name string) error {
	path := nsPath(name)
	if err := unix.Unmount(path, unix.MNT_DETACH); err != nil &&
		!errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("unmount %s: %w", path, err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove %s: %w", path, err)
	}
	return nil
}
