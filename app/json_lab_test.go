//go:build linux

package app_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"tcpshake/internal/jsonschema"
	"tcpshake/lab"
	"tcpshake/lab/labtest"
)

// TestJSONSchemaLab runs every command that talks to a peer with --json in
// the lab and holds each line of its output to docs/json-schema.json.
func TestJSONSchemaLab(t *testing.T) {
	labtest.EachPeer(t, false, func(t *testing.T, l lab.Lab) {
		b, err := os.ReadFile("../docs/json-schema.json")
		if err != nil {
			t.Fatal(err)
		}
		schema, err := jsonschema.Parse(b)
		if err != nil {
			t.Fatal(err)
		}
		bin := binary(t)
		srv, obs := l.ServerV4.String(), "--observe-netns="+l.ServerNS
		if l.Peer != lab.PeerLinux {
			obs = "" // lwIP's sockets live in its program: nothing to observe (dropped from the arguments)
		}
		runs := []struct {
			name  string
			args  []string
			stdin string
			types []string // event types that must appear
		}{
			{"probe", []string{"probe", srv, "-p", "80,81,82,83", "--retries", "0", "--timeout", "300ms", "--json"}, "",
				[]string{"start", "step", "result", "summary"}},
			{"probe6", []string{"probe", "-6", l.ServerV6.String(), "-p", "7,84", "-c", "2", "-i", "50ms", "--json"}, "",
				[]string{"start", "step", "result", "summary"}},
			{"handshake", []string{"handshake", srv + ":7", "--send", `hello\n`, "--time-wait", "100ms", obs, "--json"}, "",
				[]string{"start", "step", "summary"}},
			{"handshake-refused", []string{"handshake", srv + ":81", obs, "--json"}, "", []string{"start", "step", "summary"}},
			{"shell", []string{"shell", srv + ":7", "--time-wait", "100ms", obs, "--json"},
				"syn\nwait 50ms\nack\nsend hi\nwait 100ms\nscenario in-window-rst\nquit\n", []string{"start", "step", "scenario", "summary"}},
			{"rst", []string{"rst", srv + ":9", "--scenario", "closed-port,in-window-rst", "--closed-port", "81", obs, "--json"}, "",
				[]string{"start", "step", "scenario", "summary"}},
		}
		for _, r := range runs {
			t.Run(r.name, func(t *testing.T) {
				args := slices.DeleteFunc(slices.Clone(r.args), func(a string) bool { return a == "" })
				out := runWithStdin(t, l, r.stdin, append([]string{bin}, args...)...)
				seen := map[string]bool{}
				sc := bufio.NewScanner(strings.NewReader(out))
				sc.Buffer(nil, 1<<20)
				n := 0
				for sc.Scan() {
					n++
					if err := schema.ValidateLine(sc.Bytes()); err != nil {
						t.Errorf("line %d: %v\n%s", n, err, sc.Text())
					}
					ev := jsonEvents(t, sc.Text())
					seen[ev[0]["type"].(string)] = true
				}
				for _, ty := range r.types {
					if !seen[ty] {
						t.Errorf("no %q event in:\n%s", ty, out)
					}
				}
			})
		}
	})
}

// runWithStdin runs argv in the client namespace with stdin and returns its
// standard output; exit status 0 or 1 both count as a run.
func runWithStdin(t *testing.T, l lab.Lab, stdin string, argv ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	var out, errb bytes.Buffer
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Stdin = strings.NewReader(stdin)
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := lab.Do(l.ClientNS, cmd.Run)
	var ee *exec.ExitError
	if err != nil && !(errors.As(err, &ee) && ee.ExitCode() == 1) {
		t.Fatalf("%q: %v\nstderr: %s", argv, err, errb.String())
	}
	return out.String()
}
