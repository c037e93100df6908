package trace

import (
	"io"
	"net/netip"
	"slices"
	"testing"
	"time"

	"tcpshake/lab/labtest"
)

// BenchmarkLabWatchOverhead times a loop of HTTP/1.0 requests from the client
// namespace to the lab server (connect, request, the answer to EOF, close:
// ten state changes per connection), in runs alternating without and with a
// Source watching every namespace unfiltered and rendering each change to
// io.Discard, and reports the ratio of the median times:
//
//	go test ./probe/observe/trace -run '^$' -bench LabWatchOverhead -benchtime 10000x
func BenchmarkLabWatchOverhead(b *testing.B) {
	l := labtest.New(b)
	addr := netip.AddrPortFrom(l.ServerV4, 80).String()
	loop := func(n int) time.Duration {
		start := time.Now()
		for range n {
			c := dialIn(b, l.ClientNS, addr)
			c.Write([]byte("GET / HTTP/1.0\r\n\r\n"))
			io.Copy(io.Discard, c)
			c.Close()
		}
		return time.Since(start)
	}
	watched := func(n int) (time.Duration, int) {
		src, err := Open(Config{})
		if err != nil {
			b.Fatal(err)
		}
		r := NewRenderer(io.Discard, false, src.NetnsName)
		count := make(chan int)
		go func() {
			k := 0
			for {
				ev, err := src.Next()
				if err != nil {
					count <- k
					return
				}
				r.Event(ev)
				k++
			}
		}()
		d := loop(n)
		time.Sleep(100 * time.Millisecond) // the last changes
		src.Close()
		return d, <-count
	}
	loop(100) // warm up: ARP, the server's accept loop
	b.ResetTimer()
	// Ten runs alternating, compared by their medians: the machine is
	// shared, and a median of alternating runs holds the least of the
	// noise.
	const runs = 10
	var off, on []time.Duration
	events := 0
	for i := range runs {
		n := b.N / runs
		if i%2 == 0 {
			off = append(off, loop(n))
		} else {
			d, k := watched(n)
			on = append(on, d)
			events += k
		}
	}
	b.StopTimer()
	slices.Sort(off)
	slices.Sort(on)
	b.ReportMetric(float64(on[len(on)/2])/float64(off[len(off)/2]), "ratio")
	b.ReportMetric(float64(off[len(off)/2].Microseconds())/float64(b.N/runs), "µs/conn-unwatched")
	b.ReportMetric(float64(events)/float64(b.N/2), "changes/conn")
	b.ReportMetric(0, "ns/op")
}
