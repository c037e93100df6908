package trace

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/btf"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/ringbuf"
	"github.com/cilium/ebpf/rlimit"
	"golang.org/x/sys/unix"
)

// ringSize is the ring buffer's size: about 10,000 records.
const ringSize = 1 << 20

// readEvery is the longest a record waits in the ring buffer before it is
// read while records come (the kernel then wakes the reader at once only
// for a batch); after a readEvery without any the reader sleeps up to
// quietRead, and the kernel wakes it at once for the next record (quietNs).
const (
	readEvery = 2 * time.Millisecond
	quietRead = 50 * time.Millisecond
)

// hook is one kernel attach point.
type hook struct {
	name     string // what it shows, for a warning when it cannot be attached
	attach   ebpf.AttachType
	to       string // the tracepoint
	required bool
	build    func(offsets, maps) asm.Instructions
}

func hooks(drops bool) []hook {
	return []hook{
		{"state changes (sock:inet_sock_set_state)", ebpf.AttachTraceRawTp, "inet_sock_set_state", true, stateProgram},
		{"drops (skb:kfree_skb), by which a timewait socket's FIN-WAIT-2 → TIME-WAIT is seen", ebpf.AttachTraceRawTp, "kfree_skb", drops,
			func(o offsets, m maps) asm.Instructions { return dropProgram(o, m, !drops) }},
	}
}

// kernelSource is the eBPF record source: the programs, their links and the
// ring buffer reader.
type kernelSource struct {
	maps     maps
	progs    []*ebpf.Program
	links    []link.Link
	rd       *ringbuf.Reader
	rec      ringbuf.Record // the record being read, reused (its buffer grows once)
	empty    int            // reads in a row that ended at their deadline with no record
	offset   time.Duration  // CLOCK_REALTIME - CLOCK_MONOTONIC
	reasons  map[uint32]string
	warnings []string
	once     sync.Once
	cerr     error
}

// openKernel loads and attaches the programs. An error means eBPF is not
// usable here (no CAP_BPF/CAP_PERFMON, no BTF, a kernel without these
// attach points); a hook that only adds detail is left out with a warning.
func openKernel(cfg Config) (_ *kernelSource, err error) {
	if err := rlimit.RemoveMemlock(); err != nil {
		return nil, fmt.Errorf("trace: raise RLIMIT_MEMLOCK: %w", err)
	}
	// One BTF cache for our offsets and every program's attach target:
	// NewProgram decodes the kernel's BTF afresh for each program (about
	// 30 ms each, most of the time it took to open the source).
	cache := btf.NewCache()
	spec, err := cache.Kernel()
	if err != nil {
		return nil, fmt.Errorf("trace: kernel BTF: %w", err)
	}
	o, err := kernelOffsets(spec)
	if err != nil {
		return nil, err
	}
	s := &kernelSource{}
	defer func() {
		if err != nil {
			s.Close()
		}
	}()
	if s.maps.ring, err = ebpf.NewMap(&ebpf.MapSpec{Name: "tcpshake_ring", Type: ebpf.RingBuf, MaxEntries: ringSize}); err != nil {
		return nil, fmt.Errorf("trace: ring buffer: %w", err)
	}
	if s.maps.config, err = ebpf.NewMap(&ebpf.MapSpec{Name: "tcpshake_cfg", Type: ebpf.Array, KeySize: 4, ValueSize: cfgSize, MaxEntries: 1}); err != nil {
		return nil, fmt.Errorf("trace: config map: %w", err)
	}
	if s.maps.lost, err = ebpf.NewMap(&ebpf.MapSpec{Name: "tcpshake_lost", Type: ebpf.Array, KeySize: 4, ValueSize: 8, MaxEntries: 1}); err != nil {
		return nil, fmt.Errorf("trace: lost map: %w", err)
	}
	c := make([]byte, cfgSize)
	binary.NativeEndian.PutUint32(c[cfgNetns:], cfg.Netns)
	binary.NativeEndian.PutUint16(c[cfgPort:], cfg.Port)
	if err := s.maps.config.Put(uint32(0), c); err != nil {
		return nil, fmt.Errorf("trace: set filter: %w", err)
	}
	if s.reasons, err = dropReasons(spec); err != nil && cfg.Drops {
		return nil, err
	}
	for _, h := range hooks(cfg.Drops) {
		l, p, err := attach(o, s.maps, h, cache)
		if err != nil {
			if h.required {
				return nil, fmt.Errorf("trace: %s: %w", h.name, err)
			}
			s.warnings = append(s.warnings, fmt.Sprintf("not seen: %s: %v", h.name, err))
			continue
		}
		s.progs, s.links = append(s.progs, p), append(s.links, l)
	}
	if s.rd, err = ringbuf.NewReader(s.maps.ring); err != nil {
		return nil, fmt.Errorf("trace: ring buffer reader: %w", err)
	}
	s.offset = clockOffset()
	return s, nil
}

// attach loads h's program and attaches it. It is loaded as a collection of
// one so that it can use cache (ebpf.NewProgram has no way to share one).
func attach(o offsets, m maps, h hook, cache *btf.Cache) (link.Link, *ebpf.Program, error) {
	const name = "prog"
	coll, err := ebpf.NewCollectionWithOptions(&ebpf.CollectionSpec{Programs: map[string]*ebpf.ProgramSpec{name: {
		Name: "tcpshake_" + shortName(h.to), Type: ebpf.Tracing, AttachType: h.attach, AttachTo: h.to,
		Instructions: h.build(o, m), License: "GPL",
	}}}, ebpf.CollectionOptions{Cache: cache})
	if err != nil {
		return nil, nil, fmt.Errorf("load: %+v", err)
	}
	p := coll.DetachProgram(name)
	coll.Close()
	l, err := link.AttachTracing(link.TracingOptions{Program: p, AttachType: h.attach})
	if err != nil {
		p.Close()
		return nil, nil, fmt.Errorf("attach: %w", err)
	}
	return l, p, nil
}

// shortName fits a tracepoint's name into a program name (15 bytes with the
// prefix).
func shortName(fn string) string {
	fn = strings.TrimPrefix(fn, "inet_")
	if len(fn) > 6 {
		fn = fn[:6]
	}
	return fn
}

// dropReasons reads enum skb_drop_reason from the kernel's BTF: the names
// without their SKB_DROP_REASON_ prefix, e.g. 3 → NO_SOCKET.
func dropReasons(spec *btf.Spec) (map[uint32]string, error) {
	var e *btf.Enum
	if err := spec.TypeByName("skb_drop_reason", &e); err != nil {
		return nil, fmt.Errorf("trace: kernel BTF: enum skb_drop_reason: %w", err)
	}
	m := make(map[uint32]string, len(e.Values))
	for _, v := range e.Values {
		m[uint32(v.Value)] = strings.TrimPrefix(v.Name, "SKB_DROP_REASON_")
	}
	return m, nil
}

// clockOffset is CLOCK_REALTIME - CLOCK_MONOTONIC, from the tightest of a
// few samples (bpf_ktime_get_ns is CLOCK_MONOTONIC; packet timestamps are
// CLOCK_REALTIME).
func clockOffset() time.Duration {
	best, bestGap := time.Duration(0), time.Duration(1<<62)
	for range 5 {
		var m1, r, m2 unix.Timespec
		_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &m1)
		_ = unix.ClockGettime(unix.CLOCK_REALTIME, &r)
		_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &m2)
		gap := time.Duration(m2.Nano() - m1.Nano())
		if gap < bestGap {
			bestGap = gap
			best = time.Duration(r.Nano() - (m1.Nano()+m2.Nano())/2)
		}
	}
	return best
}

func (s *kernelSource) wall(mono uint64) time.Time {
	return time.Unix(0, int64(mono)+int64(s.offset))
}

// read blocks for the next records and appends them to batch: the first
// one waited for, then every one already in the ring, up to maxBatch, with
// no system call and no allocation per record (one Record is reused;
// decode copies what it keeps).
func (s *kernelSource) read(batch []raw) ([]raw, error) {
	for len(batch) == 0 {
		// While records come the programs wake the reader only for a
		// batch, and the deadline reads what waits every readEvery.
		// Once a whole readEvery passed without one (the reader may be
		// told so twice: once for a deadline that found records), the
		// programs wake it for the next record, and the deadline is only
		// a backstop.
		wait := readEvery
		if s.empty >= 2 {
			wait = quietRead
		}
		s.rd.SetDeadline(time.Now().Add(wait))
		if err := s.rd.ReadInto(&s.rec); err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				s.empty++
				continue
			}
			if errors.Is(err, ringbuf.ErrClosed) {
				return batch, errClosed
			}
			return batch, fmt.Errorf("trace: read ring buffer: %w", err)
		}
		s.empty = 0
		batch = s.keep(batch)
		// What else waits is read without blocking: with the deadline
		// passed the reader takes what is in the ring, then says
		// ErrDeadlineExceeded (one poll for the batch, none per record).
		// AvailableBytes would be cheaper but reads the ring without the
		// reader's lock: after Close it dereferenced nil (CI: a data race,
		// then a panic).
		s.rd.SetDeadline(time.Now())
		for len(batch) < maxBatch {
			if err := s.rd.ReadInto(&s.rec); err != nil {
				break // the next read says it again, after this batch
			}
			batch = s.keep(batch)
		}
	}
	return batch, nil
}

// keep decodes the record just read onto batch, unless it is not a TCP/IP
// socket's (a family we do not show).
func (s *kernelSource) keep(batch []raw) []raw {
	if r, err := decode(s.rec.RawSample); err == nil {
		batch = append(batch, r)
	}
	return batch
}

// lost is how many records the ring buffer had no room for.
func (s *kernelSource) lost() uint64 {
	var n uint64
	if s.maps.lost != nil {
		_ = s.maps.lost.Lookup(uint32(0), &n)
	}
	return n
}

// Close detaches every program and frees the maps; it is idempotent.
func (s *kernelSource) Close() error {
	s.once.Do(func() {
		var errs []error
		if s.rd != nil {
			errs = append(errs, s.rd.Close())
		}
		for _, l := range s.links {
			errs = append(errs, l.Close())
		}
		for _, p := range s.progs {
			errs = append(errs, p.Close())
		}
		for _, m := range []*ebpf.Map{s.maps.ring, s.maps.config, s.maps.lost} {
			if m != nil {
				errs = append(errs, m.Close())
			}
		}
		s.cerr = errors.Join(errs...)
	})
	return s.cerr
}
