//go:build !linux

package observe

// OpenPath returns an error on this system.
func OpenPath(path string) (*Diag, error) { return nil, errNotLinux() }

// Sockets returns an error on this system.
func (d *Diag) Sockets(states uint32) ([]Socket, error) { return nil, errNotLinux() }
