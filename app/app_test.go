package app_test

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"tcpshake/app"
)

// mainRun runs the application in-process as main does and returns the exit
// code and what it wrote.
func mainRun(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	a := app.New(&out, &errb)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	code = app.Main(a, func(args []string) error { return a.RunContext(ctx, args) }, append([]string{"tcpshake"}, args...))
	return code, out.String(), errb.String()
}

// unresolvable is a host name that no resolver can look up and that never
// becomes a DNS query: its first label is 64 bytes long, one more than DNS
// allows, so Go's resolver rejects it (isDomainName) before building a query,
// and so would glibc's (ns_name_pton) if cgo were used. It sits under
// .invalid (RFC 6761) besides.
var unresolvable = strings.Repeat("x", 64) + ".invalid"

// TestBadInput checks that every mistake a user can make in a probe's
// arguments gives exit status 2 and one line on stderr naming it, before any
// socket is opened. Every target is loopback, so even a test that failed to
// stop early would send nothing off this machine.
func TestBadInput(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string // in the error line
	}{
		{"port 0", []string{"probe", "127.0.0.1", "-p", "0"}, "port 0"},
		{"port 65536", []string{"probe", "127.0.0.1", "-p", "65536"}, "65536"},
		{"port 0 in target", []string{"probe", "127.0.0.1:0"}, "port"},
		{"port 65536 in target", []string{"probe", "127.0.0.1:65536"}, "65536"},
		{"range without end", []string{"probe", "127.0.0.1", "-p", "1-"}, `"1-"`},
		{"reversed range", []string{"probe", "127.0.0.1", "-p", "80-20"}, "80-20"},
		{"unknown flag letter", []string{"probe", "127.0.0.1", "-p", "80", "--flags", "SQ"}, `"Q"`},
		{"unresolvable host", []string{"probe", unresolvable, "-p", "80"}, "cannot resolve"},
		{"IPv6 literal with -4", []string{"probe", "-4", "::1", "-p", "80"}, "-4"},
		{"IPv4 literal with -6", []string{"probe", "-6", "127.0.0.1", "-p", "80"}, "-6"},
		{"-4 and -6", []string{"probe", "-4", "-6", "127.0.0.1", "-p", "80"}, "-4 and -6"},
		{"negative count", []string{"probe", "127.0.0.1", "-p", "80", "-c", "-1"}, "--count -1"},
		{"zero count", []string{"probe", "127.0.0.1", "-p", "80", "-c", "0"}, "--count 0"},
		{"zero interval", []string{"probe", "127.0.0.1", "-p", "80", "-i", "0"}, "--interval 0"},
		{"negative interval", []string{"probe", "127.0.0.1", "-p", "80", "-i", "-1s"}, "--interval -1s"},
		{"timeout abc", []string{"probe", "127.0.0.1", "-p", "80", "--timeout", "abc"}, "--timeout abc"},
		{"ttl 300", []string{"probe", "127.0.0.1", "-p", "80", "--ttl", "300"}, "--ttl 300"},
		{"ttl 0", []string{"probe", "127.0.0.1", "-p", "80", "--ttl", "0"}, "--ttl 0"},
		{"interface that does not exist", []string{"probe", "127.0.0.1", "-p", "80", "-I", "nope0"}, `"nope0"`},
		{"source not on this machine", []string{"probe", "127.0.0.1", "-p", "80", "-s", "192.0.2.77"}, "192.0.2.77"},
		{"source not an address", []string{"probe", "127.0.0.1", "-p", "80", "-s", "here"}, `"here"`},
		{"source of the other family", []string{"probe", "127.0.0.1", "-p", "80", "-s", "::1"}, "127.0.0.1"},
		{"no port", []string{"probe", "127.0.0.1"}, "no port"},
		{"no host", []string{"probe", "-p", "80"}, "HOST"},
		{"two hosts with --flags", []string{"probe", "127.0.0.1", "127.0.0.2", "-p", "80", "--flags", "F"}, "plain SYNs"},
		{"broadcast", []string{"probe", "255.255.255.255", "-p", "80"}, "broadcast"},
		{"multicast", []string{"probe", "224.0.0.1", "-p", "80"}, "multicast"},
		{"unspecified", []string{"probe", "0.0.0.0", "-p", "80"}, "unspecified"},
		{"multicast in a scan", []string{"probe", "127.0.0.1", "ff02::1", "-p", "80"}, "multicast"},
		{"bad shard", []string{"probe", "127.0.0.1", "-p", "80", "--shard", "5/4"}, "--shard 5/4"},
		{"zero rate", []string{"probe", "127.0.0.1", "-p", "80", "--rate", "0"}, "--rate 0"},
		{"scan too large", []string{"probe", "127.0.0.0/16", "-p", "1-100"}, "at most 4194304"},
		{"unknown option flag", []string{"probe", "127.0.0.1", "-p", "80", "--bogus"}, "bogus"},
		{"bad raw option", []string{"probe", "127.0.0.1", "-p", "80", "--option", "2:zz"}, "--option"},
		{"bad data escape", []string{"probe", "127.0.0.1", "-p", "80", "--data", `\q`}, "--data"},
		{"wscale 15", []string{"probe", "127.0.0.1", "-p", "80", "--wscale", "15"}, "--wscale 15"},
		{"sport 0", []string{"probe", "127.0.0.1", "-p", "80", "--sport", "0"}, "--sport 0"},
		{"seq too big", []string{"probe", "127.0.0.1", "-p", "80", "--seq", "4294967296"}, "--seq"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, stdout, stderr := mainRun(t, tt.args...)
			if code != app.ExitFailure {
				t.Errorf("exit status %d, want %d", code, app.ExitFailure)
			}
			checkOneLine(t, stderr, tt.want)
			if stdout != "" {
				t.Errorf("stdout not empty:\n%s", stdout)
			}
		})
	}
}

// checkOneLine checks that stderr is exactly one line "tcpshake: ..."
// containing want, with no trace of a panic.
func checkOneLine(t *testing.T, stderr, want string) {
	t.Helper()
	if strings.Count(stderr, "\n") != 1 || !strings.HasSuffix(stderr, "\n") {
		t.Errorf("stderr is not exactly one line:\n%s", stderr)
	}
	if !strings.HasPrefix(stderr, "tcpshake: ") {
		t.Errorf("stderr does not start with \"tcpshake: \": %q", stderr)
	}
	if !strings.Contains(stderr, want) {
		t.Errorf("stderr %q does not mention %q", stderr, want)
	}
	for _, bad := range []string{"panic", "goroutine", ".go:"} {
		if strings.Contains(stderr, bad) {
			t.Errorf("stderr contains %q: %s", bad, stderr)
		}
	}
}

func TestPermute(t *testing.T) {
	a := app.New(nil, nil)
	tests := []struct {
		name string
		in   []string
		want []string
	}{
		{"nothing", []string{"tcpshake"}, []string{"tcpshake"}},
		{"flags after host", []string{"tcpshake", "probe", "h", "-p", "80"}, []string{"tcpshake", "probe", "-p", "80", "--", "h"}},
		{"flags before host", []string{"tcpshake", "probe", "-p", "80", "h"}, []string{"tcpshake", "probe", "-p", "80", "--", "h"}},
		{"bool flag takes no value", []string{"tcpshake", "probe", "h", "-q", "-p", "80"}, []string{"tcpshake", "probe", "-q", "-p", "80", "--", "h"}},
		{"bool flag before host", []string{"tcpshake", "probe", "-4", "h:80"}, []string{"tcpshake", "probe", "-4", "--", "h:80"}},
		{"value with =", []string{"tcpshake", "probe", "h", "--ports=80", "--json"}, []string{"tcpshake", "probe", "--ports=80", "--json", "--", "h"}},
		{"negative value", []string{"tcpshake", "probe", "h", "-c", "-1"}, []string{"tcpshake", "probe", "-c", "-1", "--", "h"}},
		{"double dash", []string{"tcpshake", "probe", "-p", "80", "--", "-h"}, []string{"tcpshake", "probe", "-p", "80", "--", "-h"}},
		{"two hosts kept", []string{"tcpshake", "probe", "a", "-p", "1", "b"}, []string{"tcpshake", "probe", "-p", "1", "--", "a", "b"}},
		{"subcommand", []string{"tcpshake", "lab", "up", "--name", "x"}, []string{"tcpshake", "lab", "up", "--name", "x"}},
		{"unknown command untouched", []string{"tcpshake", "nope", "h", "-p", "1"}, []string{"tcpshake", "nope", "h", "-p", "1"}},
		{"group command untouched", []string{"tcpshake", "lab", "-x"}, []string{"tcpshake", "lab", "-x"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := app.Permute(a, append([]string(nil), tt.in...))
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("Permute(%q) (-want +got):\n%s", tt.in, diff)
			}
		})
	}
}

func TestUnescape(t *testing.T) {
	tests := []struct {
		in      string
		want    []byte
		wantErr bool
	}{
		{"", nil, false},
		{"plain", []byte("plain"), false},
		{`GET / HTTP/1.0\r\n\r\n`, []byte("GET / HTTP/1.0\r\n\r\n"), false},
		{`a\tb\\c\0`, []byte("a\tb\\c\x00"), false},
		{`\x41\x7f\xff`, []byte{0x41, 0x7f, 0xff}, false},
		{`\xAb`, []byte{0xab}, false},
		{`trailing\`, nil, true},
		{`\x4`, nil, true},
		{`\xzz`, nil, true},
		{`\q`, nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := app.Unescape(tt.in)
			if (err != nil) != tt.wantErr {
				t.Fatalf("Unescape(%q) error %v, want error %v", tt.in, err, tt.wantErr)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("Unescape(%q) (-want +got):\n%s", tt.in, diff)
			}
		})
	}
}
