package guard

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/google/nftables"
	"github.com/mdlayher/netlink"
	vnl "github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// helperEnv makes the test binary act as a guard-holding helper process
// instead of running tests (see TestMain and runHelper).
const helperEnv = "TCPSHAKE_GUARD_TEST_HELPER"

func TestMain(m *testing.M) {
	if os.Getenv(helperEnv) == "1" {
		os.Exit(runHelper())
	}
	os.Exit(m.Run())
}

// runHelper opens a Guard, blocks one tuple, announces "ready <table>" and
// sleeps without handling any signal, so that the parent test can kill it.
func runHelper() int {
	g, err := Open()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if _, err := g.Block(netip.MustParseAddrPort("127.0.0.1:40001"), netip.MustParseAddrPort("127.0.0.1:40000")); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fmt.Printf("ready %s\n", g.Table())
	time.Sleep(30 * time.Second) // bounded: the parent kills us long before
	return 3
}

// requireRoot skips a privileged test when not root, except under CI=true,
// where skipping would hide that the test never ran.
func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	const why = "needs root: CAP_NET_ADMIN for nftables and network namespaces, CAP_NET_RAW for raw sockets"
	if os.Getenv("CI") == "true" {
		t.Fatal(why + " (CI=true: not skipping)")
	}
	t.Skip(why)
}

// enterNetNS locks the test goroutine to its OS thread and moves the thread
// into a fresh, uniquely named network namespace whose loopback is up.
// Cleanup moves the thread back and deletes the namespace. Subtests run on
// other goroutines, so each must call enterNetNS itself.
func enterNetNS(t *testing.T) netns.NsHandle {
	t.Helper()
	requireRoot(t)
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		t.Fatalf("get current network namespace: %v", err)
	}
	name := fmt.Sprintf("tcpshake-guard-%08x", rand.Uint32())
	ns, err := netns.NewNamed(name)
	if err != nil {
		orig.Close()
		runtime.UnlockOSThread()
		t.Fatalf("create network namespace %s: %v", name, err)
	}
	t.Cleanup(func() {
		if err := netns.Set(orig); err != nil {
			// Keep the thread locked: Go destroys it when the goroutine ends.
			t.Errorf("restore network namespace: %v", err)
		} else {
			runtime.UnlockOSThread()
		}
		orig.Close()
		ns.Close()
		if err := netns.DeleteNamed(name); err != nil {
			t.Errorf("delete network namespace %s: %v", name, err)
		}
	})

	h, err := vnl.NewHandleAt(ns)
	if err != nil {
		t.Fatalf("netlink handle in %s: %v", name, err)
	}
	defer h.Close()
	lo, err := h.LinkByName("lo")
	if err != nil {
		t.Fatalf("find lo in %s: %v", name, err)
	}
	if err := h.LinkSetUp(lo); err != nil {
		t.Fatalf("set lo up in %s: %v", name, err)
	}
	return ns
}

// nftConn returns a google/nftables connection to ns: a different netlink
// socket than the Guard's, as any other tool would use.
func nftConn(t *testing.T, ns netns.NsHandle) *nftables.Conn {
	t.Helper()
	c, err := nftables.New(nftables.WithNetNSFd(int(ns)))
	if err != nil {
		t.Fatalf("nftables connection: %v", err)
	}
	return c
}

// findTable returns the inet table called name in ns, or nil.
func findTable(t *testing.T, ns netns.NsHandle, name string) *nftables.Table {
	t.Helper()
	tables, err := nftConn(t, ns).ListTablesOfFamily(nftables.TableFamilyINet)
	if err != nil {
		t.Fatalf("list tables: %v", err)
	}
	for _, tb := range tables {
		if tb.Name == name {
			return tb
		}
	}
	return nil
}

// tableFlags returns the flags of table inet name in ns, read from a netlink
// socket of its own. (google/nftables v0.3.0 decodes NFTA_TABLE_FLAGS in host
// byte order, so its Table.Flags reads 0x2000000 for the owner flag.)
func tableFlags(t *testing.T, ns netns.NsHandle, name string) uint32 {
	t.Helper()
	conn, err := netlink.Dial(unix.NETLINK_NETFILTER, &netlink.Config{NetNS: int(ns)})
	if err != nil {
		t.Fatalf("open netlink socket: %v", err)
	}
	defer conn.Close()
	m, err := getTableMessage(name)
	if err != nil {
		t.Fatal(err)
	}
	replies, err := (&Guard{conn: conn}).exchange([]netlink.Message{m}, false)
	if err != nil || len(replies) != 1 {
		t.Fatalf("get table %s: %d replies, %v", name, len(replies), err)
	}
	flags, err := parseTableFlags(replies[0])
	if err != nil {
		t.Fatalf("parse table %s: %v", name, err)
	}
	return flags
}

func TestOpenClose(t *testing.T) {
	ns := enterNetNS(t)

	g, err := Open()
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { g.Close() })

	if got, prefix := g.Table(), fmt.Sprintf("tcpshake_%d_", os.Getpid()); !strings.HasPrefix(got, prefix) || !IsTable(got) {
		t.Errorf("Table() = %q, want %s<8 hex digits>", got, prefix)
	}

	tb := findTable(t, ns, g.Table())
	if tb == nil {
		t.Fatalf("table inet %s not listed after Open", g.Table())
	}
	if got := tableFlags(t, ns, g.Table()); got != nftTableFOwner {
		t.Errorf("table flags = %#x, want %#x (owner)", got, nftTableFOwner)
	}

	type chain struct {
		Name     string
		Type     nftables.ChainType
		Hook     nftables.ChainHook
		Priority nftables.ChainPriority
		Policy   nftables.ChainPolicy
	}
	c, err := nftConn(t, ns).ListChain(tb, chainName)
	if err != nil {
		t.Fatalf("list chain %s: %v", chainName, err)
	}
	if c.Hooknum == nil || c.Priority == nil || c.Policy == nil {
		t.Fatalf("chain %s is not a base chain: %+v", chainName, c)
	}
	wantChain := chain{Name: "out", Type: nftables.ChainTypeFilter, Hook: *nftables.ChainHookOutput,
		Priority: -300, Policy: nftables.ChainPolicyAccept}
	if diff := cmp.Diff(wantChain, chain{c.Name, c.Type, *c.Hooknum, *c.Priority, *c.Policy}); diff != "" {
		t.Errorf("chain (-want +got):\n%s", diff)
	}

	// The owner flag at work: another socket may look but not touch.
	other := nftConn(t, ns)
	other.DelTable(&nftables.Table{Name: g.Table(), Family: nftables.TableFamilyINet})
	if err := other.Flush(); !errors.Is(err, os.ErrPermission) {
		t.Errorf("deleting the table from another socket: err = %v, want EPERM", err)
	}

	if err := g.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if tb := findTable(t, ns, g.Table()); tb != nil {
		t.Errorf("table inet %s still listed after Close", g.Table())
	}
	if err := g.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	_, err = g.Block(netip.MustParseAddrPort("127.0.0.1:1"), netip.MustParseAddrPort("127.0.0.1:2"))
	if !errors.Is(err, net.ErrClosed) {
		t.Errorf("Block after Close: err = %v, want net.ErrClosed", err)
	}
	var nilGuard *Guard
	if err := nilGuard.Close(); err != nil {
		t.Errorf("Close on nil Guard: %v", err)
	}
}

// TestOpenTwiceInOneNamespace: two Guards of one process in one network
// namespace get two tables, and each works and goes on its own.
func TestOpenTwiceInOneNamespace(t *testing.T) {
	ns := enterNetNS(t)

	first, err := Open()
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { first.Close() })
	second, err := Open()
	if err != nil {
		t.Fatalf("second Open: %v", err)
	}
	t.Cleanup(func() { second.Close() })
	if first.Table() == second.Table() {
		t.Fatalf("two Guards share the table name %q", first.Table())
	}
	for _, g := range []*Guard{first, second} {
		if findTable(t, ns, g.Table()) == nil {
			t.Errorf("table inet %s not listed", g.Table())
		}
		if _, err := g.Block(netip.MustParseAddrPort("[::1]:1"), netip.MustParseAddrPort("[::1]:2")); err != nil {
			t.Errorf("Block on %s: %v", g.Table(), err)
		}
	}
	if err := first.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if findTable(t, ns, first.Table()) != nil {
		t.Errorf("table inet %s still listed after Close", first.Table())
	}
	if findTable(t, ns, second.Table()) == nil {
		t.Errorf("closing %s removed %s too", first.Table(), second.Table())
	}
	if err := second.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
}

// TestTableName checks the documented shape, "tcpshake_<pid>_<8 hex
// digits>", and that IsTable tells guard tables from others.
func TestTableName(t *testing.T) {
	seen := map[string]bool{}
	for range 100 {
		name, err := TableName(4242)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(name, "tcpshake_4242_") || len(name) != len("tcpshake_4242_")+8 || !IsTable(name) {
			t.Fatalf("TableName(4242) = %q, want tcpshake_4242_<8 hex digits>", name)
		}
		if seen[name] {
			t.Fatalf("TableName repeated %q within 100 names", name)
		}
		seen[name] = true
	}
	for _, tt := range []struct {
		name string
		want bool
	}{
		{"tcpshake_1_0123abcd", true},
		{"tcpshake_4194304_ffffffff", true},
		{"tcpshake_lab", false},
		{"tcpshake_11513", false}, // the old shape
		{"tcpshake__0123abcd", false},
		{"tcpshake_1_0123abc", false},
		{"tcpshake_1_0123ABCD", false},
		{"tcpshake_x_0123abcd", false},
		{"tcpshake_-1_0123abcd", false},
		{"nat", false},
	} {
		if got := IsTable(tt.name); got != tt.want {
			t.Errorf("IsTable(%q) = %v, want %v", tt.name, got, tt.want)
		}
	}
}

// TestOpenInTwoPIDNamespaces runs two helper processes that both have pid 1,
// each in a PID namespace of its own, in one network namespace, at the same
// time: each must get a table of its own (with names from the pid alone, the
// second would find the first's table and fail).
func TestOpenInTwoPIDNamespaces(t *testing.T) {
	ns := enterNetNS(t)
	var tables []string
	for range 2 {
		tables = append(tables, startHelper(t, &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWPID}))
	}
	if tables[0] == tables[1] {
		t.Fatalf("both helpers hold %q", tables[0])
	}
	for _, table := range tables {
		if !strings.HasPrefix(table, "tcpshake_1_") || !IsTable(table) {
			t.Errorf("helper in a new PID namespace holds %q, want tcpshake_1_<8 hex digits> (it is pid 1 there)", table)
		}
		if findTable(t, ns, table) == nil {
			t.Errorf("table inet %s not listed while its helper runs", table)
		}
	}
}

// startHelper starts the test binary as a guard-holding helper (runHelper)
// from this locked thread, so it inherits the thread's network namespace,
// and returns the table it announces. Cleanup kills it.
func startHelper(t *testing.T, attr *syscall.SysProcAttr) string {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), helperEnv+"=1")
	cmd.SysProcAttr = attr
	var stderr strings.Builder
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start helper: %v", err)
	}
	waited := make(chan error, 1)
	go func() { waited <- cmd.Wait() }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-waited
	})
	lines := make(chan string, 1)
	go func() {
		line, _ := bufio.NewReader(stdout).ReadString('\n')
		lines <- strings.TrimSpace(line)
	}()
	select {
	case line := <-lines:
		table, ok := strings.CutPrefix(line, "ready ")
		if !ok {
			t.Fatalf("helper said %q, want \"ready <table>\"; stderr: %s", line, stderr.String())
		}
		return table
	case err := <-waited:
		waited <- err // for the cleanup
		t.Fatalf("helper ended before it was ready: %v; stderr: %s", err, stderr.String())
	case <-time.After(10 * time.Second):
		t.Fatalf("helper not ready after 10s; stderr: %s", stderr.String())
	}
	return ""
}

func TestOpenWithoutCapability(t *testing.T) {
	enterNetNS(t) // in case Open wrongly succeeds, it changes nothing outside

	// Capabilities are per thread: clear the effective set of this (locked)
	// thread, where Open opens its socket, and restore it afterwards.
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var saved [2]unix.CapUserData
	if err := unix.Capget(&hdr, &saved[0]); err != nil {
		t.Fatalf("capget: %v", err)
	}
	dropped := saved
	dropped[0].Effective, dropped[1].Effective = 0, 0
	if err := unix.Capset(&hdr, &dropped[0]); err != nil {
		t.Fatalf("capset: %v", err)
	}
	g, err := Open()
	if rerr := unix.Capset(&hdr, &saved[0]); rerr != nil {
		runtime.LockOSThread() // never unlocked: Go destroys this thread when the test ends
		t.Fatalf("restore capabilities: %v", rerr)
	}
	if err == nil {
		g.Close()
		t.Fatal("Open without CAP_NET_ADMIN succeeded")
	}
	if !errors.Is(err, os.ErrPermission) {
		t.Errorf("Open without CAP_NET_ADMIN: err = %v, want errors.Is(err, os.ErrPermission)", err)
	}
}

// tcpFlags of RFC 9293 used by the tests.
const (
	flagSYN = 0x02
	flagRST = 0x04
)

// checksum is the Internet checksum (RFC 1071) of b.
func checksum(b []byte) uint16 {
	var sum uint32
	for i := 0; i+1 < len(b); i += 2 {
		sum += uint32(binary.BigEndian.Uint16(b[i:]))
	}
	if len(b)%2 == 1 {
		sum += uint32(b[len(b)-1]) << 8
	}
	for sum > 0xffff {
		sum = sum>>16 + sum&0xffff
	}
	return ^uint16(sum)
}

// synPacket builds a complete IP packet holding a TCP SYN from src to dst
// with sequence number isn, IPv4 or IPv6 by the addresses' family.
func synPacket(src, dst netip.AddrPort, isn uint32) []byte {
	tcp := make([]byte, 20)
	binary.BigEndian.PutUint16(tcp[0:], src.Port())
	binary.BigEndian.PutUint16(tcp[2:], dst.Port())
	binary.BigEndian.PutUint32(tcp[4:], isn)
	tcp[12] = 5 << 4 // data offset: 5 words, no options
	tcp[13] = flagSYN
	binary.BigEndian.PutUint16(tcp[14:], 65535)

	s, d := src.Addr().AsSlice(), dst.Addr().AsSlice()
	pseudo := append(append(append([]byte{}, s...), d...), 0, unix.IPPROTO_TCP, 0, byte(len(tcp)))
	if src.Addr().Is6() {
		// RFC 8200 section 8.1: 32-bit length, 24 zero bits, next header.
		pseudo = append(append(append([]byte{}, s...), d...), 0, 0, 0, byte(len(tcp)), 0, 0, 0, unix.IPPROTO_TCP)
	}
	binary.BigEndian.PutUint16(tcp[16:], checksum(append(pseudo, tcp...)))

	if src.Addr().Is4() {
		ip := make([]byte, 20)
		ip[0] = 0x45
		binary.BigEndian.PutUint16(ip[2:], uint16(len(ip)+len(tcp)))
		binary.BigEndian.PutUint16(ip[6:], 0x4000) // DF
		ip[8] = 64
		ip[9] = unix.IPPROTO_TCP
		copy(ip[12:], s)
		copy(ip[16:], d)
		binary.BigEndian.PutUint16(ip[10:], checksum(ip))
		return append(ip, tcp...)
	}
	ip := make([]byte, 40)
	ip[0] = 0x60
	binary.BigEndian.PutUint16(ip[4:], uint16(len(tcp)))
	ip[6] = unix.IPPROTO_TCP
	ip[7] = 64
	copy(ip[8:], s)
	copy(ip[24:], d)
	return append(ip, tcp...)
}

func sockaddr(a netip.Addr) unix.Sockaddr {
	if a.Is4() {
		return &unix.SockaddrInet4{Addr: a.As4()}
	}
	return &unix.SockaddrInet6{Addr: a.As16()}
}

func family(a netip.Addr) int {
	if a.Is4() {
		return unix.AF_INET
	}
	return unix.AF_INET6
}

// sendSYN sends one SYN from src to dst on an IPPROTO_RAW socket (the header
// is ours), as tcpshake does. Both addresses are loopback.
func sendSYN(t *testing.T, src, dst netip.AddrPort, isn uint32) {
	t.Helper()
	if !src.Addr().IsLoopback() || !dst.Addr().IsLoopback() {
		t.Fatalf("refusing to send to %v: tests only send on loopback", dst)
	}
	fd, err := unix.Socket(family(dst.Addr()), unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.IPPROTO_RAW)
	if err != nil {
		t.Fatalf("open raw socket: %v", err)
	}
	defer unix.Close(fd)
	if err := unix.Sendto(fd, synPacket(src, dst, isn), 0, sockaddr(dst.Addr())); err != nil {
		t.Fatalf("send SYN %v > %v: %v", src, dst, err)
	}
}

// sniffer receives copies of every TCP segment arriving in the namespace on
// a raw IPPROTO_TCP socket.
type sniffer struct {
	fd int
	v4 bool
}

func newSniffer(t *testing.T, fam netip.Addr) *sniffer {
	t.Helper()
	fd, err := unix.Socket(family(fam), unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.IPPROTO_TCP)
	if err != nil {
		t.Fatalf("open raw TCP socket: %v", err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	tv := unix.NsecToTimeval((20 * time.Millisecond).Nanoseconds())
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		t.Fatalf("set receive timeout: %v", err)
	}
	return &sniffer{fd: fd, v4: fam.Is4()}
}

// sawRST reports whether a RST from src to dst acknowledging ack arrives
// within d.
func (s *sniffer) sawRST(t *testing.T, src, dst netip.AddrPort, ack uint32, d time.Duration) bool {
	t.Helper()
	buf := make([]byte, 2048)
	for deadline := time.Now().Add(d); time.Now().Before(deadline); {
		n, from, err := unix.Recvfrom(s.fd, buf, 0)
		if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			t.Fatalf("receive: %v", err)
		}
		seg := buf[:n]
		if s.v4 { // IPv4 raw sockets deliver the IP header too
			if n < 20 || n < int(seg[0]&0x0f)*4 {
				continue
			}
			seg = seg[int(seg[0]&0x0f)*4:]
		}
		if len(seg) < 20 {
			continue
		}
		var fromAddr netip.Addr
		switch sa := from.(type) {
		case *unix.SockaddrInet4:
			fromAddr = netip.AddrFrom4(sa.Addr)
		case *unix.SockaddrInet6:
			fromAddr = netip.AddrFrom16(sa.Addr)
		}
		if fromAddr == src.Addr() &&
			binary.BigEndian.Uint16(seg[0:]) == src.Port() &&
			binary.BigEndian.Uint16(seg[2:]) == dst.Port() &&
			binary.BigEndian.Uint32(seg[8:]) == ack &&
			seg[13]&flagRST != 0 {
			return true
		}
	}
	return false
}

func TestBlockDropsKernelRST(t *testing.T) {
	tests := []struct {
		name string
		addr netip.Addr
	}{
		{name: "ipv4", addr: netip.MustParseAddr("127.0.0.1")},
		{name: "ipv6", addr: netip.MustParseAddr("::1")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			enterNetNS(t) // fresh namespace: nothing listens on any port
			client := netip.AddrPortFrom(tt.addr, 40000)
			closed := netip.AddrPortFrom(tt.addr, 40001) // the kernel answers SYNs here with RST
			bystander := netip.AddrPortFrom(tt.addr, 40002)
			sniff := newSniffer(t, tt.addr)
			isn := rand.Uint32()

			// Without a guard the kernel resets: otherwise this test could not fail.
			isn++
			sendSYN(t, client, closed, isn)
			if !sniff.sawRST(t, closed, client, isn+1, 2*time.Second) {
				t.Fatalf("no kernel RST %v > %v without a guard", closed, client)
			}

			g, err := Open()
			if err != nil {
				t.Fatalf("Open: %v", err)
			}
			t.Cleanup(func() { g.Close() })

			// A rule for another tuple leaves this one alone.
			other, err := g.Block(closed, bystander)
			if err != nil {
				t.Fatalf("Block(%v, %v): %v", closed, bystander, err)
			}
			isn++
			sendSYN(t, client, closed, isn)
			if !sniff.sawRST(t, closed, client, isn+1, 2*time.Second) {
				t.Errorf("a rule for %v > %v dropped the RST to %v", closed, bystander, client)
			}
			if n, err := g.Dropped(other); err != nil || n != 0 {
				t.Errorf("Dropped(%v) = %d, %v; want 0, nil", other, n, err)
			}

			r, err := g.Block(closed, client)
			if err != nil {
				t.Fatalf("Block(%v, %v): %v", closed, client, err)
			}
			want := Rule{Local: closed, Remote: client, Handle: r.Handle}
			if diff := cmp.Diff(want, r, cmpopts.EquateComparable(netip.AddrPort{})); diff != "" || r.Handle == 0 {
				t.Errorf("Block returned (-want +got):\n%s (handle %d)", diff, r.Handle)
			}
			isn++
			sendSYN(t, client, closed, isn)
			if sniff.sawRST(t, closed, client, isn+1, 300*time.Millisecond) {
				t.Errorf("kernel RST %v > %v seen despite Block", closed, client)
			}
			if n, err := g.Dropped(r); err != nil || n != 1 {
				t.Errorf("Dropped(%v) = %d, %v; want 1, nil", r, n, err)
			}

			if err := g.Unblock(r); err != nil {
				t.Fatalf("Unblock(%v): %v", r, err)
			}
			isn++
			sendSYN(t, client, closed, isn)
			if !sniff.sawRST(t, closed, client, isn+1, 2*time.Second) {
				t.Errorf("no kernel RST %v > %v after Unblock", closed, client)
			}
			if _, err := g.Dropped(r); !errors.Is(err, unix.ENOENT) {
				t.Errorf("Dropped after Unblock: err = %v, want ENOENT", err)
			}
			if err := g.Unblock(r); !errors.Is(err, unix.ENOENT) {
				t.Errorf("second Unblock: err = %v, want ENOENT", err)
			}
		})
	}
}

// TestHoldReleaseIsBatched: a Hold's release keeps the rule until
// unblockDelay has passed (then it is gone), Flush deletes what is released
// at once, and Close with a rule still pending removes the table cleanly.
func TestHoldReleaseIsBatched(t *testing.T) {
	ns := enterNetNS(t)
	addr := netip.MustParseAddr("127.0.0.1")
	g, err := Open()
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { g.Close() })
	var released []func() error
	for port := uint16(41000); port < 41003; port++ {
		rel, err := g.Hold(netip.AddrPortFrom(addr, port), netip.AddrPortFrom(addr, 7))
		if err != nil {
			t.Fatalf("Hold: %v", err)
		}
		released = append(released, rel)
	}
	count := func() int {
		t.Helper()
		rules, err := nftConn(t, ns).GetRules(&nftables.Table{Name: g.Table(), Family: nftables.TableFamilyINet}, &nftables.Chain{Name: "out"})
		if err != nil {
			t.Fatalf("list rules: %v", err)
		}
		return len(rules)
	}
	start := time.Now()
	for _, rel := range released[:2] {
		if err := rel(); err != nil {
			t.Fatalf("release: %v", err)
		}
	}
	if n := count(); n != 3 && time.Since(start) < unblockDelay {
		t.Errorf("%d rules right after two releases, want 3 (deleted after %v)", n, unblockDelay)
	}
	deadline := time.Now().Add(5 * unblockDelay)
	for count() != 1 {
		if time.Now().After(deadline) {
			t.Fatalf("%d rules %v after two of three were released, want 1", count(), 5*unblockDelay)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := released[2](); err != nil {
		t.Fatalf("release: %v", err)
	}
	g.Flush()
	if n := count(); n != 0 {
		t.Errorf("%d rules after Flush, want 0", n)
	}

	// Close with a release pending: the table goes, rule and all.
	rel, err := g.Hold(netip.AddrPortFrom(addr, 41009), netip.AddrPortFrom(addr, 7))
	if err != nil {
		t.Fatalf("Hold: %v", err)
	}
	if err := rel(); err != nil {
		t.Fatalf("release: %v", err)
	}
	if err := g.Close(); err != nil {
		t.Fatalf("Close with a release pending: %v", err)
	}
	if tb := findTable(t, ns, g.Table()); tb != nil {
		t.Errorf("table %s left after Close", g.Table())
	}
	time.Sleep(2 * unblockDelay) // the stopped timer must not fire on a closed guard
}

// TestReopenAfterClose: a guard opened right after another was closed keeps
// its table, though the closed one's socket is released later, by the
// kernel's Unix garbage collector (Close hands it over): each guard's socket
// has a random port ID of its own, so the late release deletes no other
// guard's table. (CI saw the table of a guard opened after another's Close
// vanish once, with PID-based port IDs; this loop did not reproduce it
// here, so the port ID is checked itself.)
func TestReopenAfterClose(t *testing.T) {
	enterNetNS(t)
	addr := netip.MustParseAddr("127.0.0.1")
	for i := range 8 {
		g, err := Open()
		if err != nil {
			t.Fatalf("Open %d: %v", i, err)
		}
		if pid := g.conn.PID(); pid == uint32(os.Getpid()) || pid&0xc0000000 != 0x40000000 {
			t.Errorf("guard %d's socket has port ID %#x: want a random one apart from the PID (%d) and the kernel's choices", i, pid, os.Getpid())
		}
		if _, err := g.Block(netip.AddrPortFrom(addr, 42000), netip.AddrPortFrom(addr, 7)); err != nil {
			g.Close()
			t.Fatalf("guard %d: Block right after the previous guard's Close: %v", i, err)
		}
		// The old socket's release waits out a grace period or two before
		// it looks for the tables its port ID owned.
		time.Sleep(50 * time.Millisecond)
		if _, err := g.Block(netip.AddrPortFrom(addr, 42001), netip.AddrPortFrom(addr, 7)); err != nil {
			g.Close()
			t.Fatalf("guard %d: a second Block 50 ms later: %v", i, err)
		}
		if err := g.Close(); err != nil {
			t.Fatalf("Close %d: %v", i, err)
		}
	}
}

func TestTableVanishesWhenOwnerDies(t *testing.T) {
	tests := []struct {
		name string
		sig  syscall.Signal
	}{
		{name: "SIGKILL", sig: syscall.SIGKILL},
		{name: "SIGTERM", sig: syscall.SIGTERM},
		{name: "SIGINT", sig: syscall.SIGINT},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ns := enterNetNS(t)

			// Started from this locked thread, the helper inherits the namespace.
			cmd := exec.Command(os.Args[0], "-test.run=^$")
			cmd.Env = append(os.Environ(), helperEnv+"=1")
			var stderr strings.Builder
			cmd.Stderr = &stderr
			stdout, err := cmd.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			if err := cmd.Start(); err != nil {
				t.Fatalf("start helper: %v", err)
			}
			waited := make(chan error, 1)
			go func() { waited <- cmd.Wait() }()
			t.Cleanup(func() {
				cmd.Process.Kill()
				<-waited
			})

			lines := make(chan string, 1)
			go func() {
				line, _ := bufio.NewReader(stdout).ReadString('\n')
				lines <- strings.TrimSpace(line)
			}()
			var line string
			select {
			case line = <-lines:
			case <-time.After(10 * time.Second):
				t.Fatalf("helper not ready after 10s; stderr: %s", stderr.String())
			}
			prefix := fmt.Sprintf("ready tcpshake_%d_", cmd.Process.Pid)
			if !strings.HasPrefix(line, prefix) || !IsTable(line[len("ready "):]) {
				t.Fatalf("helper said %q, want %s<8 hex digits>; stderr: %s", line, prefix, stderr.String())
			}
			table := line[len("ready "):]
			tb := findTable(t, ns, table)
			if tb == nil {
				t.Fatalf("table inet %s of the running helper not listed", table)
			}
			rules, err := nftConn(t, ns).GetRules(tb, &nftables.Chain{Name: chainName})
			if err != nil || len(rules) != 1 {
				t.Fatalf("rules of the running helper: %d, %v; want 1 rule", len(rules), err)
			}

			if err := cmd.Process.Signal(tt.sig); err != nil {
				t.Fatalf("signal helper: %v", err)
			}
			deadline := time.Now().Add(time.Second)
			select {
			case <-waited:
				waited <- nil // for the cleanup
			case <-time.After(time.Second):
				t.Fatalf("helper still running 1s after %v", tt.sig)
			}
			if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != tt.sig {
				t.Errorf("helper ended with %v, want death by %v", cmd.ProcessState, tt.sig)
			}
			for findTable(t, ns, table) != nil {
				if time.Now().After(deadline) {
					t.Fatalf("table inet %s still listed 1s after %v of its owner", table, tt.sig)
				}
				time.Sleep(10 * time.Millisecond)
			}
		})
	}
}
