//go:build !linux

package trace

import (
	"fmt"
	"net/netip"
	"runtime"
	"time"

	"tcpshake/probe/observe"
)

type kernelSource struct {
	warnings []string
	reasons  map[uint32]string
}

func errNotLinux() error { return fmt.Errorf("trace: eBPF is not implemented on %s", runtime.GOOS) }

func openKernel(Config) (*kernelSource, error) { return nil, errNotLinux() }

func (s *kernelSource) wall(mono uint64) time.Time  { return time.Unix(0, int64(mono)) }
func (s *kernelSource) read(b []raw) ([]raw, error) { return b, errClosed }
func (s *kernelSource) lost() uint64                { return 0 }
func (s *kernelSource) Close() error                { return nil }

type namespaces struct{}

func newNamespaces() *namespaces             { return &namespaces{} }
func (n *namespaces) Name(ino uint32) string { return fmt.Sprintf("netns:%d", ino) }
func (n *namespaces) Close() error           { return nil }
func (n *namespaces) get(uint32, netip.AddrPort, netip.AddrPort) (observe.Reading, error) {
	return observe.Reading{}, errNotLinux()
}
func (n *namespaces) sockets(uint32, uint32) ([]observe.Socket, error) { return nil, errNotLinux() }

// NetnsInode returns an error on this system.
func NetnsInode(name string) (uint32, error) { return 0, errNotLinux() }

// Inode returns an error on this system.
func Inode(path string) (uint32, error) { return 0, errNotLinux() }

func openLowPriority(cfg Config) (*Source, error) { return Open(cfg) }
