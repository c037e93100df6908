package trace

import (
	"sync"
	"time"
)

// A Source is the kernel's stream of TCP state changes (and, with
// Config.Drops, drops) through eBPF. Next must be called from one goroutine;
// Close may be called from any, and makes Next return ErrClosed.
type Source struct {
	k    *kernelSource
	t    *tracker
	ns   *namespaces
	recs chan []raw // batches of records, in the ring's order
	free chan []raw // batches Next is done with, for the reader to fill again
	errc chan error
	stop chan struct{}
	done chan struct{}
	tick *time.Ticker
	q    []Event
	once sync.Once
}

// Open loads and attaches the eBPF programs. It needs CAP_BPF and
// CAP_PERFMON (or CAP_SYS_ADMIN), CAP_SYS_ADMIN to read other namespaces'
// socket tables, and the kernel's BTF; the error says what failed, and then
// [Poll] is the way left.
func Open(cfg Config) (*Source, error) {
	k, err := openKernel(cfg)
	if err != nil {
		return nil, err
	}
	ns := newNamespaces()
	s := &Source{
		k: k, ns: ns, t: newTracker(k.wall, k.reasons, ns, cfg.Drops),
		recs: make(chan []raw, 16), free: make(chan []raw, 17), errc: make(chan error, 1), stop: make(chan struct{}), done: make(chan struct{}),
		tick: time.NewTicker(50 * time.Millisecond),
	}
	go s.read()
	return s, nil
}

// maxBatch is the most records one read hands over at once.
const maxBatch = 256

// read hands the ring's records to Next in batches (all that waited in the
// ring, up to maxBatch), so a burst costs one handover, not one per
// record; up to 16 batches wait for Next (4096 records).
func (s *Source) read() {
	defer close(s.done)
	for {
		var batch []raw
		select {
		case batch = <-s.free:
		default:
			batch = make([]raw, 0, maxBatch)
		}
		batch, err := s.k.read(batch[:0])
		if len(batch) > 0 {
			select {
			case s.recs <- batch:
			case <-s.stop:
				return
			}
		}
		if err != nil {
			s.errc <- err
			return
		}
	}
}

// Next blocks until the next event.
func (s *Source) Next() (Event, error) {
	for len(s.q) == 0 {
		select {
		case batch := <-s.recs:
			for _, r := range batch {
				s.q = append(s.q, s.t.add(r)...)
			}
			select {
			case s.free <- batch:
			default:
			}
		case <-s.tick.C:
			s.q = append(s.q, s.t.tick()...)
		case err := <-s.errc:
			s.errc <- err
			return Event{}, err
		case <-s.stop:
			return Event{}, ErrClosed
		}
	}
	ev := s.q[0]
	s.q = s.q[1:]
	return ev, nil
}

// NetnsName is how a namespace inode is shown: its name under /run/netns,
// "init" for the first process's, or "netns:INODE".
func (s *Source) NetnsName(ino uint32) string { return s.ns.Name(ino) }

// Warnings says what this kernel does not let the source see, each in one
// line.
func (s *Source) Warnings() []string { return s.k.warnings }

// Lost is how many kernel records had no room in the ring buffer so far.
func (s *Source) Lost() uint64 { return s.k.lost() }

// Close detaches the programs and waits for the reader; it is idempotent.
func (s *Source) Close() error {
	s.once.Do(func() { close(s.stop) })
	err := s.k.Close()
	<-s.done
	s.tick.Stop()
	s.ns.Close()
	return err
}
