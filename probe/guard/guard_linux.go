package guard

import (
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"sync"
	"time"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"tcpshake/internal/lateclose"
)

// replyTimeout bounds every wait for the kernel's answer on the netlink
// socket; nf_tables answers in microseconds, so hitting it means a bug.
const replyTimeout = 5 * time.Second

// Guard owns one nftables table that drops the local kernel's RSTs for the
// 4-tuples it is told to block. The table lives as long as the Guard's
// netlink socket: Close removes it, and so does the kernel when the process
// exits for any reason. A Guard is safe for concurrent use.
type Guard struct {
	table string

	mu   sync.Mutex    // serializes request/reply exchanges on conn
	conn *netlink.Conn // nil once closed
	seq  uint32        // last netlink sequence number used

	// Rules released by Hold's and HoldPort's functions, deleted together
	// after unblockDelay (see UnblockLater); Close drops them with the table.
	pending []Rule
	flush   *time.Timer
}

// unblockDelay is how long a released rule stays before it is deleted in
// one batch with the others released meanwhile. Every nf_tables commit that
// deletes something frees it only after an RCU grace period (6-16 ms on the
// machines measured), and releasing the netlink socket waits for those
// still pending: before Close handed that release off (lateclose), a rule
// deleted just before Close made the close take 18-40 ms, against 6-13 ms
// when Close deleted the table with the rule in it. Now it saves the
// commit: release and Close 0.27-0.58 ms, against 0.35-0.81 ms deleting the
// rule at once (6 runs each).
const unblockDelay = 100 * time.Millisecond

// createAttempts bounds how many fresh names Open tries when a table of the
// same name exists already (a 1 in 2^32 chance per attempt; see TableName).
const createAttempts = 3

// Open creates an owner-flagged table with a fresh name (see [TableName]) and
// its chain in the calling thread's network namespace. It needs
// CAP_NET_ADMIN; without it the error satisfies
// errors.Is(err, os.ErrPermission).
func Open() (*Guard, error) {
	conn, err := dialOwner()
	if err != nil {
		return nil, fmt.Errorf("guard: open netlink socket: %w", err)
	}
	// Extended acks add the kernel's reason to errors; older kernels lack it,
	// which only makes messages shorter.
	_ = conn.SetOption(netlink.ExtendedAcknowledge, true)

	g := &Guard{conn: conn}
	for attempt := 1; ; attempt++ {
		if g.table, err = TableName(os.Getpid()); err != nil {
			conn.Close()
			return nil, fmt.Errorf("guard: %w", err)
		}
		err = g.create()
		if err == nil {
			return g, nil
		}
		if !errors.Is(err, unix.EEXIST) || attempt == createAttempts {
			conn.Close()
			return nil, fmt.Errorf("guard: create table %s: %w", g.table, err)
		}
	}
}

// dialOwner opens the netlink socket that will own the table, bound to a
// random port ID rather than the kernel's first choice, the process's PID.
// The table lives as long as the socket that created it, by port ID: the
// kernel deletes the owned tables when it releases the socket, after it
// has freed the port ID (netlink_release). Since Close hands the socket's
// release to the Unix garbage collector (internal/lateclose), a guard
// opened just after one was closed could otherwise take the same PID-based
// port ID, create its table, and lose it to the old socket's late release
// (CI: "netlink receive: no such file or directory" on the next rule).
func dialOwner() (*netlink.Conn, error) {
	var err error
	for range 8 {
		var b [4]byte
		if _, err = rand.Read(b[:]); err != nil {
			break
		}
		// Bit 30 set and bit 31 clear: never a PID (at most 2^22), and
		// apart from the kernel's own choices for later sockets (negative
		// as int32, counting down from -4096).
		pid := binary.NativeEndian.Uint32(b[:])&0x3fffffff | 0x40000000
		var c *netlink.Conn
		if c, err = netlink.Dial(unix.NETLINK_NETFILTER, &netlink.Config{PID: pid}); err == nil {
			return c, nil
		}
		if !errors.Is(err, unix.EADDRINUSE) {
			break
		}
	}
	return nil, err
}

// create sends the batch that makes g's table and chain.
func (g *Guard) create() error {
	table, err := newTableMessage(g.table)
	if err != nil {
		return err
	}
	chain, err := newChainMessage(g.table)
	if err != nil {
		return err
	}
	if _, err := g.exchange([]netlink.Message{table, chain}, true); err != nil {
		if errors.Is(err, os.ErrPermission) && g.tableExists() {
			// The kernel answers EPERM, not EEXIST, when the table exists
			// but belongs to another socket; say so rather than blaming
			// missing privileges.
			return fmt.Errorf("owned by another netlink socket: %w", unix.EEXIST)
		}
		return err
	}
	return nil
}

// tableExists reports whether the kernel lists g's table. Without
// CAP_NET_ADMIN the query fails too, and it reports false.
func (g *Guard) tableExists() bool {
	m, err := getTableMessage(g.table)
	if err != nil {
		return false
	}
	replies, err := g.exchange([]netlink.Message{m}, false)
	return err == nil && len(replies) > 0
}

// Table returns the name of the guard's nftables table (family inet),
// "tcpshake_<pid>_<8 hex digits>" (see [TableName]).
func (g *Guard) Table() string { return g.table }

// Block drops TCP segments with RST set from local to remote: the exact
// 4-tuple, IPv4 or IPv6 (IPv4-mapped addresses count as IPv4). It returns the
// rule with the handle the kernel assigned, for Unblock and Dropped.
func (g *Guard) Block(local, remote netip.AddrPort) (Rule, error) {
	m, err := newRuleMessage(g.table, local, remote)
	if err != nil {
		return Rule{}, fmt.Errorf("guard: block %v > %v: %w", local, remote, err)
	}
	return g.add(m, local, remote)
}

// BlockPort drops TCP segments with RST set from local's port to anyone:
// the kernel's answers to SYNs for a port where tcpshake listens from raw
// sockets (listen). An unspecified or invalid address blocks the port on
// every address of both families. Unblock lifts it.
func (g *Guard) BlockPort(local netip.AddrPort) (Rule, error) {
	m, err := newPortRuleMessage(g.table, local)
	if err != nil {
		return Rule{}, fmt.Errorf("guard: block port %v: %w", local, err)
	}
	return g.add(m, local, netip.AddrPort{})
}

// add sends one new rule and returns it with the handle the kernel echoed.
func (g *Guard) add(m netlink.Message, local, remote netip.AddrPort) (Rule, error) {
	what := fmt.Sprintf("%v > %v", local, remote)
	if !remote.IsValid() {
		what = fmt.Sprintf("port %v", local)
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.conn == nil {
		return Rule{}, fmt.Errorf("guard: block %s: %w", what, net.ErrClosed)
	}
	replies, err := g.exchange([]netlink.Message{m}, true)
	if err != nil {
		return Rule{}, fmt.Errorf("guard: block %s: %w", what, err)
	}
	for _, reply := range replies {
		handle, _, _, err := parseRule(reply)
		if err == nil && handle != 0 {
			return Rule{Local: local, Remote: remote, Handle: handle}, nil
		}
	}
	return Rule{}, fmt.Errorf("guard: block %s: kernel did not echo the new rule's handle", what)
}

// Unblock deletes the rule, so the kernel's RSTs for its 4-tuple flow again.
func (g *Guard) Unblock(r Rule) error {
	m, err := ruleSelector(unix.NFT_MSG_DELRULE, g.table, r.Handle)
	if err != nil {
		return fmt.Errorf("guard: unblock %v: %w", r, err)
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.conn == nil {
		return fmt.Errorf("guard: unblock %v: %w", r, net.ErrClosed)
	}
	if _, err := g.exchange([]netlink.Message{m}, true); err != nil {
		return fmt.Errorf("guard: unblock %v: %w", r, err)
	}
	return nil
}

// UnblockLater deletes the rule after unblockDelay, in one batch with the
// other rules released by then, or with the table if Close comes first. The
// kernel's RSTs for its 4-tuple are held back until then.
func (g *Guard) UnblockLater(r Rule) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.conn == nil {
		return fmt.Errorf("guard: unblock %v: %w", r, net.ErrClosed)
	}
	g.pending = append(g.pending, r)
	if g.flush == nil {
		g.flush = time.AfterFunc(unblockDelay, g.flushPending)
	} else if len(g.pending) == 1 {
		g.flush.Reset(unblockDelay)
	}
	return nil
}

// Flush deletes the rules released by UnblockLater now, in one batch.
func (g *Guard) Flush() {
	g.mu.Lock()
	if g.flush != nil {
		g.flush.Stop()
	}
	g.mu.Unlock()
	g.flushPending()
}

// flushPending deletes the released rules in one batch.
func (g *Guard) flushPending() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.conn == nil || len(g.pending) == 0 {
		return
	}
	msgs := make([]netlink.Message, 0, len(g.pending))
	for _, r := range g.pending {
		if m, err := ruleSelector(unix.NFT_MSG_DELRULE, g.table, r.Handle); err == nil {
			msgs = append(msgs, m)
		}
	}
	g.pending = g.pending[:0]
	// A rule deleted meanwhile (Unblock) fails the batch with ENOENT; the
	// others are then deleted one by one.
	if _, err := g.exchange(msgs, true); err != nil && len(msgs) > 1 {
		for _, m := range msgs {
			_, _ = g.exchange([]netlink.Message{m}, true)
		}
	}
}

// Dropped reports how many local RSTs the rule has dropped so far, from the
// rule's counter, read over the owning socket. A deleted rule gives an error
// that satisfies errors.Is(err, unix.ENOENT).
func (g *Guard) Dropped(r Rule) (packets uint64, err error) {
	m, err := ruleSelector(unix.NFT_MSG_GETRULE, g.table, r.Handle)
	if err != nil {
		return 0, fmt.Errorf("guard: read counter of %v: %w", r, err)
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.conn == nil {
		return 0, fmt.Errorf("guard: read counter of %v: %w", r, net.ErrClosed)
	}
	replies, err := g.exchange([]netlink.Message{m}, false)
	if err != nil {
		return 0, fmt.Errorf("guard: read counter of %v: %w", r, err)
	}
	for _, reply := range replies {
		handle, c, ok, err := parseRule(reply)
		if err != nil {
			return 0, fmt.Errorf("guard: read counter of %v: %w", r, err)
		}
		if handle == r.Handle && ok {
			return c.Packets, nil
		}
	}
	return 0, fmt.Errorf("guard: read counter of %v: kernel returned no counter for the rule", r)
}

// Close deletes the table and closes the netlink socket. It is idempotent and
// safe on a nil Guard. If deleting fails, closing the socket still removes
// the table, and the error is reported.
func (g *Guard) Close() error {
	if g == nil {
		return nil
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.conn == nil {
		return nil
	}
	if g.flush != nil {
		g.flush.Stop()
	}
	g.pending = nil // deleted with the table
	var errs []error
	m, err := delTableMessage(g.table)
	if err == nil {
		_, err = g.exchange([]netlink.Message{m}, true)
	}
	if err != nil && !errors.Is(err, unix.ENOENT) {
		errs = append(errs, fmt.Errorf("guard: delete table %s: %w", g.table, err))
	}
	// The release of the socket that owned the table flushes the table's
	// destruction, which waits for an RCU grace period (6-13 ms): its last
	// reference goes to the kernel's Unix garbage collector instead
	// (internal/lateclose), and the table is gone already.
	if err := lateclose.Close(g.conn, g.conn.Close); err != nil {
		errs = append(errs, fmt.Errorf("guard: close netlink socket: %w", err))
	}
	g.conn = nil
	return errors.Join(errs...)
}

// exchange sends msgs, wrapped in an nf_tables batch when batch is set
// (changes must be; GET requests must not be), and waits until the kernel has
// acknowledged every one of them. It returns the kernel's other replies (echoes,
// GET answers) to these messages and the first error the kernel reported.
// The caller holds g.mu, or owns g exclusively as in Open.
//
// Every message asks for an acknowledgement, so nfnetlink answers each with
// exactly one NLMSG_ERROR (errno 0 on success), in order, after any echo.
// Errors that concern the whole batch (EPERM without CAP_NET_ADMIN, ENOMEM)
// come as one NLMSG_ERROR for the batch-begin message instead. Sequence
// numbers tie answers to requests, so stale answers left by an interrupted
// exchange are skipped.
func (g *Guard) exchange(msgs []netlink.Message, batch bool) ([]netlink.Message, error) {
	out := make([]netlink.Message, 0, len(msgs)+2)
	if batch {
		out = append(out, batchMessage(unix.NFNL_MSG_BATCH_BEGIN))
	}
	for _, m := range msgs {
		m.Header.Flags |= netlink.Request | netlink.Acknowledge
		out = append(out, m)
	}
	if batch {
		out = append(out, batchMessage(unix.NFNL_MSG_BATCH_END))
	}
	ours := make(map[uint32]bool, len(out))
	pending := make(map[uint32]bool, len(msgs))
	for i := range out {
		g.seq++
		if g.seq == 0 {
			g.seq++
		}
		out[i].Header.Sequence = g.seq
		ours[g.seq] = true
		if out[i].Header.Flags&netlink.Acknowledge != 0 {
			pending[g.seq] = true
		}
	}

	if err := g.conn.SetReadDeadline(time.Now().Add(replyTimeout)); err != nil {
		return nil, err
	}
	if _, err := g.conn.SendMessages(out); err != nil {
		return nil, err
	}
	var replies []netlink.Message
	var firstErr error
	for len(pending) > 0 {
		got, err := g.conn.Receive()
		if err != nil {
			var oe *netlink.OpError
			if !errors.As(err, &oe) || oe.Sequence == 0 {
				return nil, err // socket error or timeout
			}
			switch {
			case pending[oe.Sequence]:
				delete(pending, oe.Sequence)
				if firstErr == nil {
					firstErr = err
				}
			case ours[oe.Sequence]:
				return nil, err // the kernel rejected the whole batch
			}
			continue
		}
		for _, m := range got {
			if !ours[m.Header.Sequence] {
				continue
			}
			if m.Header.Type == netlink.Error {
				delete(pending, m.Header.Sequence)
				continue
			}
			replies = append(replies, m)
		}
	}
	return replies, firstErr
}
