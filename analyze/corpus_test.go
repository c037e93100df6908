package analyze

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"tcpshake/event"
)

// corpusDir holds public real-world captures (the test captures of tcpdump and gopacket) and captures made for
// each link type and tunnel; oracle.tsv is tshark's view of them (scripts/corpus-oracle.sh).
const corpusDir = "testdata/corpus"

// oracleConv is one tcp.stream as tshark sees it.
type oracleConv struct {
	Ends              string // "A <-> B", A < B
	FramesAB, BytesAB uint64
	FramesBA, BytesBA uint64
	Retransmissions   uint64
	OutOfOrder        uint64
	Steps             []string // per frame: the analysis flags, comma-separated, "-" for none
}

// readOracle reads oracle.tsv: per capture, its conversations and the row count of tshark's own table.
func readOracle(t *testing.T) (map[string][]oracleConv, map[string]int) {
	t.Helper()
	f, err := os.Open(filepath.Join(corpusDir, "oracle.tsv"))
	if err != nil {
		t.Fatalf("%v (run scripts/corpus-oracle.sh)", err)
	}
	defer f.Close()
	convs := map[string][]oracleConv{}
	rows := map[string]int{}
	streams := map[string]map[string]int{} // file → tcp.stream → index in convs[file]
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fs := strings.Split(sc.Text(), "\t")
		switch fs[0] {
		case "C":
			n, err := strconv.Atoi(fs[2])
			if err != nil {
				t.Fatalf("oracle line %q: %v", sc.Text(), err)
			}
			rows[fs[1]] = n
		case "F":
			if len(fs) != 8 {
				t.Fatalf("oracle line %q: want 8 fields", sc.Text())
			}
			file, stream, src, dst, flags := fs[1], fs[3], fs[4], fs[5], fs[7]
			n, _ := strconv.ParseUint(fs[6], 10, 64)
			if streams[file] == nil {
				streams[file] = map[string]int{}
			}
			i, ok := streams[file][stream]
			if !ok {
				a, b := src, dst
				if b < a {
					a, b = b, a
				}
				i = len(convs[file])
				streams[file][stream] = i
				convs[file] = append(convs[file], oracleConv{Ends: a + " <-> " + b})
			}
			c := &convs[file][i]
			if src < dst || (src == dst && !strings.HasSuffix(c.Ends, src)) {
				c.FramesAB++
				c.BytesAB += n
			} else {
				c.FramesBA++
				c.BytesBA += n
			}
			if strings.Contains(flags, "retransmission") {
				c.Retransmissions++
			}
			if strings.Contains(flags, "out-of-order") {
				c.OutOfOrder++
			}
			c.Steps = append(c.Steps, flags)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return convs, rows
}

// corpusRun analyzes one capture, telling every conversation, and returns it in the oracle's shape.
func corpusRun(t *testing.T, path string) ([]oracleConv, event.CaptureSummary, error) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	steps := map[int][]string{}
	var conns []event.Connection
	cfg := Config{File: filepath.Base(path), stories: func(index int) event.Sink {
		return event.SinkFunc(func(e event.Event) {
			if s, ok := e.(event.Step); ok && s.ICMP == "" {
				w := "-"
				if len(s.Analysis) > 0 {
					w = strings.Join(s.Analysis, ",")
				}
				steps[index] = append(steps[index], w)
			}
		})
	}}
	sum, err := Run(context.Background(), f, cfg, event.SinkFunc(func(e event.Event) {
		if c, ok := e.(event.Connection); ok {
			conns = append(conns, c)
		}
	}))
	slices.SortFunc(conns, func(x, y event.Connection) int { return x.Index - y.Index })
	var out []oracleConv
	for _, c := range conns {
		r := ourRows([]event.Connection{c})[0]
		out = append(out, oracleConv{Ends: r.Ends, FramesAB: r.FramesAB, BytesAB: r.BytesAB, FramesBA: r.FramesBA,
			BytesBA: r.BytesBA, Retransmissions: c.Retransmissions, OutOfOrder: c.OutOfOrder, Steps: steps[c.Index]})
	}
	return out, sum, err
}

// corpusDiff says how our view of one capture differs from tshark's, or "" when they agree.
func corpusDiff(want, got []oracleConv, rows int) string {
	var b strings.Builder
	if rows != len(got) {
		fmt.Fprintf(&b, "tshark -z conv,tcp has %d conversations, we have %d; ", rows, len(got))
	}
	if len(want) != len(got) {
		fmt.Fprintf(&b, "tcp.stream has %d conversations, we have %d; ", len(want), len(got))
	}
	for i := range min(len(want), len(got)) {
		w, g := want[i], got[i]
		if w.Ends != g.Ends || w.FramesAB != g.FramesAB || w.BytesAB != g.BytesAB || w.FramesBA != g.FramesBA ||
			w.BytesBA != g.BytesBA || w.Retransmissions != g.Retransmissions || w.OutOfOrder != g.OutOfOrder {
			fmt.Fprintf(&b, "conversation %d: tshark %s %d/%d %d/%d retrans %d ooo %d, we %s %d/%d %d/%d retrans %d ooo %d; ",
				i+1, w.Ends, w.FramesAB, w.BytesAB, w.FramesBA, w.BytesBA, w.Retransmissions, w.OutOfOrder,
				g.Ends, g.FramesAB, g.BytesAB, g.FramesBA, g.BytesBA, g.Retransmissions, g.OutOfOrder)
			continue
		}
		for j := range min(len(w.Steps), len(g.Steps)) {
			if w.Steps[j] != g.Steps[j] {
				fmt.Fprintf(&b, "conversation %d step %d: tshark %s, we %s; ", i+1, j+1, w.Steps[j], g.Steps[j])
				break
			}
		}
		if len(w.Steps) != len(g.Steps) {
			fmt.Fprintf(&b, "conversation %d: tshark %d steps, we %d; ", i+1, len(w.Steps), len(g.Steps))
		}
	}
	return b.String()
}

// corpusKnown are the captures where analyze and tshark still disagree, and why. Each is checked to still
// differ (a capture that starts agreeing is reported, to be taken off the list).
var corpusKnown = map[string]string{
	"tcpdump-arcnet-rfc1051-arp-icmp-http.pcap": "link type 129 (ARCNET_LINUX): gopacket has no decoder; skipped with a warning",
	"tcpdump-arcnet-rfc1201-arp-icmp-http.pcap": "link type 129 (ARCNET_LINUX): gopacket has no decoder; skipped with a warning",
	"tcpdump-ipoib.pcap":                        "link type 242 (IPoIB): gopacket has no decoder; skipped with a warning",
	"tcpdump-bgp-aigp.pcap":                     "link type 178 (JUNIPER_ETHER): gopacket has no decoder; skipped with a warning",
	"tcpdump-beep-oobr.pcap":                    "a TCP header cut short (IPv6 payload length 12336 in a 184-byte file): tshark gives it a tcp.stream but no row in -z conv,tcp (nor does analyze, which counts it undecodable)",
	"tcpdump-heapoverflow-tcp_print.pcap":       "a 60-byte TCP header past the frame's end: tcp.stream but no -z conv,tcp row in tshark; undecodable here",
	"tcpdump-tcp-auth-heapoverflow.pcap":        "a 52-byte TCP header past the frame's end: tcp.stream but no -z conv,tcp row in tshark; undecodable here",
	"tcpdump-sflow_expanded.pcap":               "TCP inside an sFlow sample (a copied packet header): tshark gives it a tcp.stream but no -z conv,tcp row; analyze does not look inside sFlow",
	"tcpdump-mptcp-dss-oobr.pcap":               "tshark's tcp.stream has the conversation but its -z conv,tcp table lists none",
	"gopacket-linux_sll_oversized_addr.pcapng":  "one 'ACKed unseen segment' more than tshark 4.0 (frame 15, a second ACK past a segment the capture cut short); counts and every other flag agree",
}

// TestCorpus compares every capture of the corpus with tshark's oracle: the conversations, packets and bytes
// each way, retransmissions, out-of-order segments, and every step's analysis flags.
func TestCorpus(t *testing.T) {
	oracle, rows := readOracle(t)
	files, err := os.ReadDir(corpusDir)
	if err != nil {
		t.Fatal(err)
	}
	agree, total := 0, 0
	for _, de := range files {
		name := de.Name()
		if name == "oracle.tsv" || name == "README.md" {
			continue
		}
		total++
		n, ok := rows[name]
		if !ok {
			t.Errorf("%s: not in oracle.tsv (run scripts/corpus-oracle.sh)", name)
			continue
		}
		got, _, err := corpusRun(t, filepath.Join(corpusDir, name))
		if err != nil && !strings.Contains(err.Error(), "truncated") {
			t.Errorf("%s: %v", name, err)
		}
		d := corpusDiff(oracle[name], got, n)
		why, known := corpusKnown[name]
		switch {
		case d == "" && known:
			agree++
			t.Errorf("%s: now agrees with tshark: take it off corpusKnown (%s)", name, why)
		case d == "":
			agree++
		case known:
			t.Logf("%s: known difference (%s): %s", name, why, d)
		default:
			t.Errorf("%s: %s", name, d)
		}
	}
	t.Logf("%d of %d captures agree with tshark", agree, total)
}

// TestCorpusLiveTshark checks the committed oracle against the tshark installed here (with
// TCPSHAKE_CORPUS_LIVE=1: it takes about a minute): a tshark whose analysis differs from the one that wrote
// oracle.tsv shows up as a diff of the two.
func TestCorpusLiveTshark(t *testing.T) {
	if os.Getenv("TCPSHAKE_CORPUS_LIVE") != "1" {
		t.Skip("set TCPSHAKE_CORPUS_LIVE=1 to compare oracle.tsv with the installed tshark (about a minute)")
	}
	needTshark(t)
	fresh := filepath.Join(t.TempDir(), "oracle.tsv")
	cmd := exec.Command("bash", "../scripts/corpus-oracle.sh")
	cmd.Env = append(os.Environ(), "ORACLE_OUT="+fresh)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("corpus-oracle.sh: %v\n%s", err, out)
	}
	want, err := os.ReadFile(filepath.Join(corpusDir, "oracle.tsv"))
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(fresh)
	if err != nil {
		t.Fatal(err)
	}
	body := func(b []byte) []string { // without the version line
		lines := strings.Split(strings.TrimSpace(string(b)), "\n")
		return slices.DeleteFunc(lines, func(l string) bool { return strings.HasPrefix(l, "#") })
	}
	w, g := body(want), body(got)
	for i := range max(len(w), len(g)) {
		switch {
		case i >= len(w):
			t.Errorf("the installed tshark has more: %s", g[i])
		case i >= len(g):
			t.Errorf("the installed tshark lacks: %s", w[i])
		case w[i] != g[i]:
			t.Errorf("oracle.tsv: %s\ninstalled tshark: %s", w[i], g[i])
		default:
			continue
		}
		return
	}
}
