package trace

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"tcpshake/probe/observe"
)

// namespaces names network namespaces by inode and opens a sock_diag socket
// in each on demand: those named under /run/netns (as ip netns names them),
// and any a process is in (/proc/PID/ns/net).
type namespaces struct {
	mu      sync.Mutex
	names   map[uint32]string // inode → name under /run/netns
	paths   map[uint32]string // inode → a namespace file to open
	diags   map[uint32]*observe.Diag
	init    uint32
	scanned time.Time
}

func newNamespaces() *namespaces {
	n := &namespaces{names: map[uint32]string{}, paths: map[uint32]string{}, diags: map[uint32]*observe.Diag{}}
	n.init, _ = Inode("/proc/1/ns/net")
	n.scan(true)
	return n
}

// Inode is the inode of a namespace file, the number the kernel's records
// carry (struct net's ns.inum).
func Inode(path string) (uint32, error) {
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		return 0, fmt.Errorf("trace: network namespace %s: %w", path, err)
	}
	return uint32(st.Ino), nil
}

// NetnsInode is the inode of the network namespace ip netns calls name.
func NetnsInode(name string) (uint32, error) {
	return Inode(filepath.Join("/run/netns", name))
}

// scan reads /run/netns and, with procs, every process's namespace.
func (n *namespaces) scan(procs bool) {
	n.scanned = time.Now()
	if ents, err := os.ReadDir("/run/netns"); err == nil {
		for _, e := range ents {
			p := filepath.Join("/run/netns", e.Name())
			if ino, err := Inode(p); err == nil {
				n.names[ino], n.paths[ino] = e.Name(), p
			}
		}
	}
	if !procs {
		return
	}
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return
	}
	for _, e := range ents {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		p := filepath.Join("/proc", e.Name(), "ns", "net")
		if ino, err := Inode(p); err == nil {
			if _, ok := n.paths[ino]; !ok {
				n.paths[ino] = p
			}
		}
	}
}

// Name is how a namespace is shown: its name under /run/netns, "init" for
// the first process's, or "netns:INODE".
func (n *namespaces) Name(ino uint32) string {
	n.mu.Lock()
	defer n.mu.Unlock()
	if name, ok := n.names[ino]; ok {
		return name
	}
	if time.Since(n.scanned) > time.Second {
		n.scan(false)
		if name, ok := n.names[ino]; ok {
			return name
		}
	}
	if ino == n.init {
		return "init"
	}
	return "netns:" + strconv.FormatUint(uint64(ino), 10)
}

func (n *namespaces) diag(ino uint32) (*observe.Diag, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if d, ok := n.diags[ino]; ok {
		return d, nil
	}
	var d *observe.Diag
	var err error
	// Our thread's own namespace without setns (which needs
	// CAP_SYS_ADMIN even into it): checked and opened on one locked
	// thread, since "this" namespace is a thread's.
	if d, ok := openIfHere(ino); ok {
		n.diags[ino] = d
		return d, nil
	}
	p, ok := n.paths[ino]
	if !ok && time.Since(n.scanned) > 100*time.Millisecond {
		n.scan(true)
		p, ok = n.paths[ino]
	}
	if !ok {
		return nil, fmt.Errorf("no process and no name for network namespace %d", ino)
	}
	d, err = observe.OpenPath(p)
	if err != nil {
		return nil, err
	}
	n.diags[ino] = d
	return d, nil
}

func (n *namespaces) get(ino uint32, local, remote netip.AddrPort) (observe.Reading, error) {
	d, err := n.diag(ino)
	if err != nil {
		return observe.Reading{Err: err}, err
	}
	return d.Get(local, remote)
}

func (n *namespaces) sockets(ino uint32, mask uint32) ([]observe.Socket, error) {
	d, err := n.diag(ino)
	if err != nil {
		return nil, err
	}
	return d.Sockets(mask)
}

func (n *namespaces) Close() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	for ino, d := range n.diags {
		d.Close()
		delete(n.diags, ino)
	}
	return nil
}

// openIfHere opens a Diag in the calling thread's namespace when that is
// ino.
func openIfHere(ino uint32) (*observe.Diag, bool) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	here, err := Inode("/proc/thread-self/ns/net")
	if err != nil || here != ino {
		return nil, false
	}
	d, err := observe.Open("")
	return d, err == nil
}

// openLowPriority is Open on an OS thread of its own at the lowest
// priority, so that the decoding of the kernel's BTF and the verifier,
// which a StartHub runs beside a connection, take the CPU only when the
// connection's threads do not want it: SCHED_IDLE, where the scheduler lets
// any other thread that wakes preempt it at once. At nice 19 (the fallback
// where SCHED_IDLE is refused) a woken thread could wait for the loader's
// time slice to end: the SYN-ACK→ACK gap with --observe-netns was bimodal,
// 0.2 or 0.6 ms.
func openLowPriority(cfg Config) (*Source, error) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	tid := unix.Gettid()
	if err := unix.SchedSetAttr(tid, &unix.SchedAttr{Size: unix.SizeofSchedAttr, Policy: unix.SCHED_IDLE}, 0); err == nil {
		defer unix.SchedSetAttr(tid, &unix.SchedAttr{Size: unix.SizeofSchedAttr, Policy: unix.SCHED_NORMAL}, 0)
		return Open(cfg)
	}
	old, err := unix.Getpriority(unix.PRIO_PROCESS, tid)
	if err == nil {
		_ = unix.Setpriority(unix.PRIO_PROCESS, tid, 19)
		// getpriority's raw value is 20 - nice.
		defer unix.Setpriority(unix.PRIO_PROCESS, tid, 20-old)
	}
	return Open(cfg)
}
