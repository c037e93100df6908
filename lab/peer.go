package lab

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"tcpshake/lab/lwip"
)

// The lab's peers: the TCP stacks that can serve the server's addresses.
const (
	// PeerLinux is the server namespace's Linux kernel, with the Go services of Serve listening on its sockets.
	PeerLinux = "linux"
	// PeerLWIP is lwIP, a userspace TCP/IP stack (Debian's liblwip), running in a small C program on a TAP device
	// bridged to the lab link; the server namespace's kernel then holds no lab address (see package lab/lwip and
	// docs/peers.md).
	PeerLWIP = "lwip"
)

// Names of the links the lwip peer adds in the server namespace: a bridge whose ports are the server's veth end
// and the TAP device the peer program attaches to.
const (
	peerBridge = "br0"
	peerTap    = "tap0"
)

// Peers lists the peer names Up accepts.
func Peers() []string { return []string{PeerLinux, PeerLWIP} }

// ValidatePeer reports whether p names a peer; empty means PeerLinux.
func ValidatePeer(p string) error {
	if p == "" || p == PeerLinux || p == PeerLWIP {
		return nil
	}
	return fmt.Errorf("lab: unknown peer %q (known: %s)", p, strings.Join(Peers(), ", "))
}

// PeerDescription says in words what serves the lab with peer p.
func PeerDescription(p string) string {
	switch p {
	case PeerLWIP:
		return "lwIP, a userspace TCP/IP stack, on " + peerTap + " bridged to the lab link; the server kernel has no lab address"
	case PeerLinux, "":
		return "the server namespace's Linux kernel"
	}
	return "unknown"
}

// peer returns the lab's peer with the default filled in.
func (l Lab) peer() string {
	if l.Peer == "" {
		return PeerLinux
	}
	return l.Peer
}

// peerMAC is the Ethernet address of the lwip peer's interface.
func peerMAC() [6]byte { return lwip.MAC() }

// PeerCacheDir is where DaemonCommand builds the peer programs: tcpshake under the user's cache directory
// ($XDG_CACHE_HOME or ~/.cache), or under the temporary directory when there is none.
func PeerCacheDir() string {
	if d, err := os.UserCacheDir(); err == nil {
		return filepath.Join(d, "tcpshake")
	}
	return filepath.Join(os.TempDir(), "tcpshake-cache")
}
