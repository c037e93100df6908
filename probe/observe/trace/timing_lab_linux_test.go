package trace

import (
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"

	"tcpshake/lab"
	"tcpshake/lab/labtest"
	"tcpshake/probe/tcpstate"
)

// frame is one captured TCP segment.
type frame struct {
	at                 time.Time
	src, dst           netip.AddrPort
	syn, ack, fin, rst bool
}

// tcpdump captures the namespace's lab link until stop is called.
func tcpdump(t *testing.T, nsName, ifname string) (stop func() []frame) {
	t.Helper()
	if _, err := exec.LookPath("tcpdump"); err != nil {
		t.Fatal("tcpdump is not installed; scripts/test.sh installs it")
	}
	file := filepath.Join(t.TempDir(), nsName+".pcap")
	cmd := exec.Command("ip", "netns", "exec", nsName, "tcpdump", "-Z", "root", "-i", ifname, "-n", "-U", "--immediate-mode", "-w", file,
		"--time-stamp-precision=nano", "tcp")
	errp, _ := cmd.StderrPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// "listening on ..." comes once the capture is attached.
	buf := make([]byte, 256)
	if _, err := errp.Read(buf); err != nil {
		t.Fatalf("tcpdump: %v", err)
	}
	go io.Copy(io.Discard, errp)
	time.Sleep(200 * time.Millisecond)
	return func() []frame {
		time.Sleep(50 * time.Millisecond)
		cmd.Process.Signal(os.Interrupt)
		cmd.Wait()
		f, err := os.Open(file)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		r, err := pcapgo.NewReader(f)
		if err != nil {
			t.Fatal(err)
		}
		var out []frame
		for {
			data, ci, err := r.ReadPacketData()
			if err != nil {
				if err != io.EOF {
					t.Errorf("read %s: %v", file, err)
				}
				return out
			}
			p := gopacket.NewPacket(data, r.LinkType(), gopacket.NoCopy)
			ip, _ := p.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
			tcp, _ := p.Layer(layers.LayerTypeTCP).(*layers.TCP)
			if ip == nil || tcp == nil {
				continue
			}
			sa, _ := netip.AddrFromSlice(ip.SrcIP)
			da, _ := netip.AddrFromSlice(ip.DstIP)
			out = append(out, frame{at: ci.Timestamp, src: netip.AddrPortFrom(sa, uint16(tcp.SrcPort)),
				dst: netip.AddrPortFrom(da, uint16(tcp.DstPort)), syn: tcp.SYN, ack: tcp.ACK, fin: tcp.FIN, rst: tcp.RST})
		}
	}
}

// TestLabWatchTimestamps compares each change's kernel time with the wire
// time (tcpdump, the same AF_PACKET tap the kernel stamps) of the segment
// that caused it, on the end that received it, over 30 connections.
func TestLabWatchTimestamps(t *testing.T) {
	l := labtest.New(t)
	col := collect(t, Config{Port: 7})
	// A capture that missed frames (tcpdump, not watch) is taken again,
	// at most three times.
	var deltas []time.Duration
	var err error
	for range 3 {
		if deltas, err = measure(t, l, col); err == nil {
			break
		}
		t.Log(err)
	}
	if err != nil {
		t.Fatal(err)
	}
	abs := make([]time.Duration, len(deltas))
	for i, d := range deltas {
		abs[i] = d.Abs()
	}
	slices.Sort(abs)
	med, p90, mx := abs[len(abs)/2], abs[len(abs)*9/10], abs[len(abs)-1]
	t.Logf("%d changes: |change time - wire time| median %v, p90 %v, max %v", len(abs), med, p90, mx)
	if med > 50*time.Microsecond {
		t.Errorf("median %v over 50 µs", med)
	}
}

// measure runs 30 connections and pairs each change with its segment.
func measure(t *testing.T, l lab.Lab, col *collector) ([]time.Duration, error) {
	stopC := tcpdump(t, l.ClientNS, l.ClientIf)
	stopS := tcpdump(t, l.ServerNS, l.ServerIf)
	cino, _ := NetnsInode(l.ClientNS)
	sino, _ := NetnsInode(l.ServerNS)
	var clients []netip.AddrPort
	for range 30 {
		c := dialIn(t, l.ClientNS, netip.AddrPortFrom(l.ServerV4, 7).String())
		clients = append(clients, netip.MustParseAddrPort(c.LocalAddr().String()))
		c.Write([]byte("hi\n"))
		io.ReadFull(c, make([]byte, 3))
		c.CloseWrite()
		io.Copy(io.Discard, c)
		c.Close()
	}
	time.Sleep(100 * time.Millisecond)
	cframes, sframes := stopC(), stopS()
	var changes []*Change
	for len(col.evs) > 0 {
		if ev := <-col.evs; ev.Change != nil {
			changes = append(changes, ev.Change)
		}
	}
	// The segment that moved a socket: the first one it received after
	// the previous change that fits the transition.
	cause := func(c *Change) (frame, bool) {
		frames := cframes
		if c.Netns == sino {
			frames = sframes
		} else if c.Netns != cino {
			return frame{}, false
		}
		fits := func(f frame) bool {
			switch {
			case c.From == tcpstate.SynSent && c.To == tcpstate.Established:
				return f.syn && f.ack
			case c.From == tcpstate.SynReceived && c.To == tcpstate.Established:
				return f.ack && !f.syn
			case c.To == tcpstate.CloseWait, c.From == tcpstate.FinWait2 && c.To == tcpstate.TimeWait:
				return f.fin
			case c.From == tcpstate.FinWait1 && c.To == tcpstate.FinWait2, c.From == tcpstate.LastAck:
				return f.ack
			}
			return false
		}
		var best frame
		found := false
		for _, f := range frames {
			if f.dst != c.Local || f.src != c.Remote || !fits(f) {
				continue
			}
			// The last such segment that arrived before the change
			// (20 µs of slack for the two clocks' offset).
			if d := c.At.Sub(f.at); d >= -20*time.Microsecond && d < 10*time.Millisecond && (!found || f.at.After(best.at)) {
				best, found = f, true
			}
		}
		return best, found
	}
	var deltas []time.Duration
	unmatched := map[string]int{}
	worst := map[string]time.Duration{}
	defer func() { t.Logf("largest change time - wire time per change: %v", worst) }()
	for _, c := range changes {
		if !slices.Contains(clients, c.Local) && !slices.Contains(clients, c.Remote) {
			continue
		}
		if f, ok := cause(c); ok {
			deltas = append(deltas, c.At.Sub(f.at))
			kind := c.From.String() + " → " + c.To.String()
			if d := c.At.Sub(f.at); d.Abs() > worst[kind].Abs() {
				worst[kind] = d
			}
		} else {
			unmatched[c.From.String()+" → "+c.To.String()]++
		}
	}
	if len(deltas) < 30*4 {
		return nil, fmt.Errorf("only %d changes matched to a segment (of %d changes; %d and %d frames captured; unmatched %v)", len(deltas), len(changes), len(cframes), len(sframes), unmatched)
	}
	return deltas, nil

}
