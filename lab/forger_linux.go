package lab

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// packetSocket is an AF_PACKET socket bound to one interface of the forger namespace.
type packetSocket struct {
	fd      int
	ifindex int
}

// openPacketSocket opens an AF_PACKET socket for IPv4 frames on interface ifname of the forger namespace.
func (l Lab) openPacketSocket(ifname string) (*packetSocket, error) {
	var ps *packetSocket
	err := inNS(l.ForgerNS, func() error {
		ifi, err := net.InterfaceByName(ifname)
		if err != nil {
			return fmt.Errorf("find %s: %w", ifname, err)
		}
		// ETH_P_ALL, not ETH_P_IP: on a bridge port the bridge consumes a frame before the kernel hands it to
		// sockets of one protocol; only "all protocols" taps see it first.
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, int(htons(unix.ETH_P_ALL)))
		if err != nil {
			return fmt.Errorf("open packet socket: %w", err)
		}
		sa := &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: ifi.Index}
		if err := unix.Bind(fd, sa); err != nil {
			unix.Close(fd)
			return fmt.Errorf("bind packet socket to %s: %w", ifname, err)
		}
		// Room for bursts while the forger is busy sending; a short timeout so the loop sees its deadline.
		unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 8<<20)
		tv := unix.NsecToTimeval((50 * time.Millisecond).Nanoseconds())
		if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
			unix.Close(fd)
			return fmt.Errorf("packet socket timeout: %w", err)
		}
		ps = &packetSocket{fd: fd, ifindex: ifi.Index}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return ps, nil
}

func (p *packetSocket) close() { unix.Close(p.fd) }

// send puts frame on the wire of the socket's interface.
func (p *packetSocket) send(frame []byte) error {
	sa := &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_IP), Ifindex: p.ifindex, Halen: 6}
	copy(sa.Addr[:], frame[0:6])
	for {
		err := unix.Sendto(p.fd, frame, 0, sa)
		if errors.Is(err, unix.ENOBUFS) || errors.Is(err, unix.EAGAIN) {
			time.Sleep(100 * time.Microsecond) // the device queue is full: let it drain
			continue
		}
		return err
	}
}

// recv reads one frame that arrived on the interface (not one sent from it) into buf; n is 0 on timeout.
func (p *packetSocket) recv(buf []byte) (int, error) {
	for {
		n, from, err := unix.Recvfrom(p.fd, buf, 0)
		if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR) {
			return 0, nil
		}
		if err != nil {
			return 0, err
		}
		if ll, ok := from.(*unix.SockaddrLinklayer); ok && ll.Pkttype == unix.PACKET_OUTGOING {
			continue
		}
		return n, nil
	}
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// macs reads the MAC addresses of the client's and the server's veth ends.
func (l Lab) macs() (client, server [6]byte, err error) {
	for _, e := range []struct {
		ns, ifname string
		out        *[6]byte
	}{{l.ClientNS, l.ClientIf, &client}, {l.ServerNS, l.ServerIf, &server}} {
		err = inNS(e.ns, func() error {
			link, err := netlink.LinkByName(e.ifname)
			if err != nil {
				return fmt.Errorf("find %s in %s: %w", e.ifname, e.ns, err)
			}
			if len(link.Attrs().HardwareAddr) != 6 {
				return fmt.Errorf("%s in %s has no Ethernet address", e.ifname, e.ns)
			}
			copy(e.out[:], link.Attrs().HardwareAddr)
			return nil
		})
		if err != nil {
			return client, server, err
		}
	}
	if p, err := l.runningPeer(); err == nil && p == PeerLWIP {
		server = peerMAC() // the server's frames come from the lwip peer's interface, not from the veth end
	}
	return client, server, nil
}

// forgerReady checks that the lab has a forger namespace to act from.
func (l Lab) forgerReady(op string) error {
	if err := l.check(); err != nil {
		return err
	}
	if !l.Forger {
		return fmt.Errorf("lab: %s: lab %s has no forger (set Lab.Forger before Up)", op, l.Name)
	}
	if ok, err := nsExists(l.ForgerNS); err != nil || !ok {
		return fmt.Errorf("lab: %s: forger namespace %s missing (run Up first): %v", op, l.ForgerNS, err)
	}
	return nil
}

// Flood sends unrelated TCP frames (see FloodConfig) from the forger namespace to the client over the lab link,
// paced to at most cfg.Rate per second, until cfg.Packets are sent, cfg.Duration has passed or ctx is done. The
// lab must have been brought up with Forger set.
func (l Lab) Flood(ctx context.Context, cfg FloodConfig) (FloodStats, error) {
	if err := l.forgerReady("flood"); err != nil {
		return FloodStats{}, err
	}
	if err := cfg.check(); err != nil {
		return FloodStats{}, err
	}
	rate := cfg.Rate
	if rate == 0 {
		rate = DefaultFloodRate
	}
	cmac, smac, err := l.macs()
	if err != nil {
		return FloodStats{}, fmt.Errorf("lab: flood: %w", err)
	}
	ps, err := l.openPacketSocket(forgerClientPort)
	if err != nil {
		return FloodStats{}, fmt.Errorf("lab: flood: %w", err)
	}
	defer ps.close()
	frames := l.floodFrames(cmac, smac, cfg)
	start := time.Now()
	deadline := start.Add(cfg.Duration)
	var st FloodStats
	for st.Sent < cfg.Packets {
		now := time.Now()
		if now.After(deadline) || ctx.Err() != nil {
			break
		}
		// Send what the rate allows up to now, then sleep a little: bursts of about a millisecond's worth.
		due := min(int(now.Sub(start).Seconds()*float64(rate))+1, cfg.Packets)
		for ; st.Sent < due; st.Sent++ {
			if err := ps.send(frames[st.Sent%len(frames)]); err != nil {
				st.Elapsed = time.Since(start)
				return st, fmt.Errorf("lab: flood: send: %w", err)
			}
		}
		time.Sleep(500 * time.Microsecond)
	}
	st.Elapsed = time.Since(start)
	return st, nil
}

// floodFrames builds the distinct frames a flood cycles through.
func (l Lab) floodFrames(cmac, smac [6]byte, cfg FloodConfig) [][]byte {
	client, server := l.ClientV4.As4(), l.ServerV4.As4()
	otherSrc, otherDst := [4]byte{198, 51, 100, 9}, [4]byte{198, 51, 100, 77}
	other := func(avoid uint16) uint16 { // a port from 1024 up that is not avoid
		for {
			if p := uint16(1024 + rand.IntN(64000)); p != avoid {
				return p
			}
		}
	}
	const n = 1024
	frames := make([][]byte, 0, n)
	for i := range n {
		seq, ack := rand.Uint32(), rand.Uint32()
		var f []byte
		switch i % 4 {
		case 0: // the server's port to another client port
			f = floodFrame(cmac, smac, server, client, cfg.ServerPort, other(cfg.ClientPort), seq, ack, true)
		case 1: // another server port to the client's port
			f = floodFrame(cmac, smac, server, client, other(cfg.ServerPort), cfg.ClientPort, seq, ack, i%8 == 1)
		case 2: // another host to the client's port
			f = floodFrame(cmac, smac, otherSrc, client, cfg.ServerPort, cfg.ClientPort, seq, ack, true)
		default: // the server to another host, on the client's link
			f = floodFrame(cmac, smac, server, otherDst, cfg.ServerPort, cfg.ClientPort, seq, ack, true)
		}
		if cfg.ClientPort == 0 && i%4 != 0 { // no port to avoid: pick any
			binary.BigEndian.PutUint16(f[ethLen+22:], other(0))
			fixChecksums(f, ethLen+20)
		}
		frames = append(frames, f)
	}
	return frames
}

// Forge watches the lab link from the forger namespace for data segments from the server's cfg.ServerPort to
// the client and answers each with the next forged segment of the rotation described at ForgeConfig, sent to the
// client as if it came over the link from the server, until cfg.Max are sent, cfg.Duration has passed or ctx is
// done. The lab must have been brought up with Forger set. It returns what it saw and sent.
func (l Lab) Forge(ctx context.Context, cfg ForgeConfig) (ForgeStats, error) {
	st := ForgeStats{ClientPort: cfg.ClientPort}
	if err := l.forgerReady("forge"); err != nil {
		return st, err
	}
	if err := cfg.check(); err != nil {
		return st, err
	}
	sniff, err := l.openPacketSocket(forgerServerPort)
	if err != nil {
		return st, fmt.Errorf("lab: forge: %w", err)
	}
	defer sniff.close()
	out, err := l.openPacketSocket(forgerClientPort)
	if err != nil {
		return st, fmt.Errorf("lab: forge: %w", err)
	}
	defer out.close()
	if cfg.Ready != nil {
		cfg.Ready()
	}
	kinds := cfg.Kinds
	if kinds == 0 {
		kinds = ForgeAll
	}
	var rotation []ForgeKind
	for k := ForgeDuplicate; k <= ForgeOutOfWindow; k <<= 1 {
		if kinds&k != 0 {
			rotation = append(rotation, k)
		}
	}
	client, server := l.ClientV4.As4(), l.ServerV4.As4()
	deadline := time.Now().Add(cfg.Duration)
	buf := make([]byte, 256<<10) // GSO frames on a veth can exceed 64 KiB with their headers
	var held []byte              // a copy waiting to be sent after the next segment
	id := uint16(rand.Uint32())
	send := func(frame []byte, count *int) error {
		if err := out.send(frame); err != nil {
			return fmt.Errorf("lab: forge: send: %w", err)
		}
		*count++
		return nil
	}
	for st.Forged() < cfg.Max && time.Now().Before(deadline) && ctx.Err() == nil {
		n, err := sniff.recv(buf)
		if err != nil {
			return st, fmt.Errorf("lab: forge: read: %w", err)
		}
		f, ok := parseFrameTCP(buf[:n])
		if !ok || f.srcIP != server || f.dstIP != client || f.sport != cfg.ServerPort || f.payloadLen == 0 {
			continue
		}
		if st.ClientPort == 0 {
			st.ClientPort = f.dport
		}
		if f.dport != st.ClientPort {
			continue
		}
		st.Seen++
		if held != nil {
			if err := send(held, &st.Reordered); err != nil {
				return st, err
			}
			held = nil
		}
		id++
		next := f.seq + uint32(f.payloadLen)
		size := min(f.payloadLen, maxForgedPayload)
		real := f.b[f.data : f.data+size]
		junk := bytes.Repeat([]byte{'X'}, size)
		switch rotation[(st.Seen-1)%len(rotation)] {
		case ForgeDuplicate:
			err = send(forgeFrom(f, f.seq, f.ack, real, f.id()), &st.Duplicate)
		case ForgeReordered:
			held = forgeFrom(f, f.seq, f.ack, real, f.id())
		case ForgeAckAbove:
			err = send(forgeFrom(f, next, f.ack+0x10000000, junk, id), &st.AckAbove)
		case ForgeAckBelow:
			err = send(forgeFrom(f, next, f.ack-0x40000000, junk, id), &st.AckBelow)
		case ForgeOutOfWindow:
			err = send(forgeFrom(f, f.seq+0x40000000, f.ack, junk, id), &st.OutOfWindow)
		}
		if err != nil {
			return st, err
		}
	}
	return st, nil
}
