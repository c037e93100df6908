package app_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"tcpshake/internal/jsonschema"
)

// TestAnalyzeJSONSchema holds analyze's --json output (the table, and one
// conversation's steps) on every capture under analyze/testdata to
// docs/json-schema.json. The other commands are checked in the lab
// (json_lab_test.go).
func TestAnalyzeJSONSchema(t *testing.T) {
	b, err := os.ReadFile("../docs/json-schema.json")
	if err != nil {
		t.Fatal(err)
	}
	schema, err := jsonschema.Parse(b)
	if err != nil {
		t.Fatal(err)
	}
	files, _ := filepath.Glob("../analyze/testdata/*.pcap*")
	if len(files) == 0 {
		t.Fatal("no captures under analyze/testdata")
	}
	seen := map[string]bool{}
	for _, f := range files {
		for _, args := range [][]string{{"analyze", f, "--json"}, {"analyze", f, "--conn", "1", "--json"}} {
			code, out, errOut := mainRun(t, args...)
			if code != 0 {
				t.Fatalf("%v: exit %d: %s", args, code, errOut)
			}
			for i, line := range strings.Split(strings.TrimSpace(out), "\n") {
				if err := schema.ValidateLine([]byte(line)); err != nil {
					t.Errorf("%v line %d: %v\n%s", args, i+1, err, line)
				}
				if j := strings.Index(line, `"type":"`); j >= 0 {
					rest := line[j+8:]
					seen[rest[:strings.IndexByte(rest, '"')]] = true
				}
			}
		}
	}
	for _, ty := range []string{"connection", "capture_summary", "step"} {
		if !seen[ty] {
			t.Errorf("analyze printed no %q event", ty)
		}
	}
}
