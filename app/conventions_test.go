package app_test

import (
	"os"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strings"
	"testing"

	"tcpshake/app"
)

// oneLine fails unless stderr is exactly one line containing every want.
func oneLine(t *testing.T, stderr string, want ...string) {
	t.Helper()
	if strings.Count(stderr, "\n") != 1 || !strings.HasSuffix(stderr, "\n") {
		t.Errorf("stderr is not one line: %q", stderr)
	}
	for _, w := range want {
		if !strings.Contains(stderr, w) {
			t.Errorf("stderr %q lacks %q", stderr, w)
		}
	}
}

func TestVersion(t *testing.T) {
	code, out, errb := mainRun(t, "--version")
	if code != app.ExitOK || errb != "" || !strings.HasPrefix(out, "tcpshake ") || !strings.Contains(out, "revision ") {
		t.Fatalf("--version: code %d, stdout %q, stderr %q", code, out, errb)
	}
	// A test binary records no VCS revision: it must say so, not invent one.
	info, ok := debug.ReadBuildInfo()
	if want := app.VersionText(info, ok) + "\n"; out != want {
		t.Errorf("--version = %q, want %q", out, want)
	}
}

func TestVersionText(t *testing.T) {
	tests := []struct {
		name string
		info *debug.BuildInfo
		ok   bool
		want string
	}{
		{"no build info", nil, false, "tcpshake (devel) (revision unknown), built with unknown"},
		{"go run", &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "(devel)"}}, true,
			"tcpshake (devel) (revision unknown), built with go1.26.8"},
		{"a checkout with changes", &debug.BuildInfo{GoVersion: "go1.26.8",
			Main: debug.Module{Version: "v0.0.0-20261202031900-63a6e4a0b1c2+dirty"},
			Settings: []debug.BuildSetting{
				{Key: "vcs.revision", Value: "63a6e4a0b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6"},
				{Key: "vcs.time", Value: "2026-12-02T03:19:00Z"},
				{Key: "vcs.modified", Value: "true"},
			}}, true,
			"tcpshake v0.0.0-20261202031900-63a6e4a0b1c2+dirty (revision 63a6e4a0b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6 of 2026-12-02T03:19:00Z, with uncommitted changes), built with go1.26.8"},
		{"a release", &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "v1.2.3"},
			Settings: []debug.BuildSetting{{Key: "vcs.revision", Value: "abc"}, {Key: "vcs.modified", Value: "false"}}}, true,
			"tcpshake v1.2.3 (revision abc), built with go1.26.8"},
	}
	for _, tt := range tests {
		if got := app.VersionText(tt.info, tt.ok); got != tt.want {
			t.Errorf("%s: VersionText = %q, want %q", tt.name, got, tt.want)
		}
	}
}

func TestHelp(t *testing.T) {
	tests := []struct {
		args []string
		want string // the NAME line
	}{
		{[]string{"help"}, "tcpshake - craft TCP segments"},
		{[]string{"help", "probe"}, "tcpshake probe - is a port open"},
		{[]string{"help", "lab"}, "tcpshake lab - a private two-host lab"},
		{[]string{"help", "lab", "up"}, "tcpshake lab up - create the lab"},
		{[]string{"lab", "help", "up"}, "tcpshake lab up - create the lab"},
		{[]string{"lab", "up", "--help"}, "tcpshake lab up - create the lab"},
		{[]string{"lab"}, "tcpshake lab - a private two-host lab"},
		{[]string{"help", "completion"}, "tcpshake completion - print the shell completion"},
		{[]string{}, "tcpshake - craft TCP segments"},
		{[]string{"--help"}, "tcpshake - craft TCP segments"},
		{[]string{"-h"}, "tcpshake - craft TCP segments"},
		{[]string{"probe", "--help"}, "tcpshake probe - is a port open"},
	}
	for _, tt := range tests {
		code, out, errb := mainRun(t, tt.args...)
		if code != app.ExitOK || errb != "" || !strings.Contains(out, "NAME:\n   "+tt.want) {
			t.Errorf("tcpshake %s: code %d, stderr %q, stdout:\n%s", strings.Join(tt.args, " "), code, errb, out)
		}
	}
}

func TestUnknownCommand(t *testing.T) {
	tests := []struct {
		args []string
		want []string
	}{
		{[]string{"frobnicate"}, []string{`unknown command "frobnicate"`, "probe, handshake", "tcpshake help"}},
		{[]string{"prob"}, []string{`unknown command "prob"`, `did you mean "probe"?`}},
		{[]string{"handshak", "127.0.0.1:1"}, []string{`unknown command "handshak"`, `did you mean "handshake"?`}},
		{[]string{"lab", "frobnicate"}, []string{`unknown lab command "frobnicate"`, "up, down, status", "tcpshake help lab"}},
		{[]string{"lab", "dwn"}, []string{`unknown lab command "dwn"`, `did you mean "down"?`}},
		{[]string{"help", "frobnicate"}, []string{`unknown command "frobnicate"`}},
		{[]string{"help", "lab", "upp"}, []string{`unknown lab command "upp"`, `did you mean "up"?`}},
	}
	for _, tt := range tests {
		code, out, errb := mainRun(t, tt.args...)
		if code != app.ExitFailure || out != "" {
			t.Errorf("tcpshake %s: code %d, stdout %q", strings.Join(tt.args, " "), code, out)
		}
		oneLine(t, errb, tt.want...)
		if strings.Contains(errb, "No help topic") {
			t.Errorf("tcpshake %s: %q", strings.Join(tt.args, " "), errb)
		}
	}
}

func TestCompletion(t *testing.T) {
	for shell, want := range map[string]string{
		"bash": "complete -o bashdefault -o default -F _tcpshake_complete tcpshake",
		"zsh":  "#compdef tcpshake",
		"fish": "complete -r -c tcpshake -n '__fish_tcpshake_no_subcommand' -a 'probe'",
	} {
		code, out, errb := mainRun(t, "completion", shell)
		if code != app.ExitOK || errb != "" || !strings.Contains(out, want) {
			t.Errorf("completion %s: code %d, stderr %q, stdout lacks %q:\n%s", shell, code, errb, want, out)
		}
	}
	code, _, errb := mainRun(t, "completion", "powershell")
	if code != app.ExitFailure {
		t.Errorf("completion powershell: code %d", code)
	}
	oneLine(t, errb, `unknown shell "powershell"`)

	// What the bash and zsh scripts ask the program.
	for _, tt := range []struct {
		args []string
		want []string
	}{
		{[]string{"--generate-bash-completion"}, []string{"probe", "handshake", "lab", "completion", "man"}},
		{[]string{"lab", "--generate-bash-completion"}, []string{"up", "down", "status"}},
		{[]string{"probe", "-", "--generate-bash-completion"}, []string{"--ports", "--flags", "--write"}},
	} {
		// urfave/cli reads the word being completed from os.Args, not from
		// the arguments it runs with; no test of this package is parallel.
		saved := os.Args
		os.Args = append([]string{"tcpshake"}, tt.args...)
		code, out, errb := mainRun(t, tt.args...)
		os.Args = saved
		words := strings.Fields(out)
		for _, w := range tt.want {
			if !slices.Contains(words, w) {
				t.Errorf("tcpshake %s: code %d, stderr %q, %q lacks %q", strings.Join(tt.args, " "), code, errb, out, w)
			}
		}
	}
}

func TestMan(t *testing.T) {
	code, out, errb := mainRun(t, "man")
	if code != app.ExitOK || errb != "" {
		t.Fatalf("man: code %d, stderr %q", code, errb)
	}
	for _, w := range []string{".TH tcpshake 1", ".SH NAME", "probe", "handshake", "lab"} {
		if !strings.Contains(out, w) {
			t.Errorf("man page lacks %q", w)
		}
	}
}

// TestChecksBeforeSending checks that what would make a run fail at its end
// fails before its first packet, with nothing on stdout (no start line).
// Every target is loopback.
func TestChecksBeforeSending(t *testing.T) {
	big := strings.Repeat("x", 70000)
	tests := []struct {
		name string
		args []string
		want []string
	}{
		{"probe -w", []string{"probe", "127.0.0.1:9", "-w", "/nonexistent/dir/x.pcapng"}, []string{"-w /nonexistent/dir/x.pcapng", "no such directory"}},
		{"handshake -w", []string{"handshake", "127.0.0.1:9", "-w", "/nonexistent/dir/x.pcapng"}, []string{"-w /nonexistent/dir/x.pcapng"}},
		{"shell -w", []string{"shell", "127.0.0.1:9", "-w", "/nonexistent/dir/x.pcapng"}, []string{"-w /nonexistent/dir/x.pcapng"}},
		{"rst -w", []string{"rst", "127.0.0.1:9", "-w", "/nonexistent/dir/x.pcapng"}, []string{"-w /nonexistent/dir/x.pcapng"}},
		{"-w a directory", []string{"probe", "127.0.0.1:9", "-w", t.TempDir()}, []string{"not a regular file"}},
		{"probe 70000-byte --data", []string{"probe", "127.0.0.1:9", "--data", big}, []string{"packet too large", "70000 bytes"}},
		{"options and data too large", []string{"probe", "127.0.0.1:9", "--data", big[:65535-40-8], "--mss", "1400", "--wscale", "7", "--sackok"}, []string{"packet too large"}},
		{"bare IPv6 with a port", []string{"probe", "-6", "2001:db8::2:80"}, []string{"[2001:db8::2]:80", "-p 80"}},
		{"bare IPv6, last group not a port", []string{"probe", "::1"}, []string{"[::1]:PORT"}},
		{"empty --flags", []string{"probe", "127.0.0.1:9", "--flags", ""}, []string{"empty flag list", "--flags none"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, out, errb := mainRun(t, tt.args...)
			if code != app.ExitFailure || out != "" {
				t.Errorf("code %d, stdout %q", code, out)
			}
			oneLine(t, errb, tt.want...)
		})
	}
}

// TestWriteCheckLeavesNothing checks that the early -w check does not leave
// a file behind when the run then stops, and does not truncate one that is
// there.
func TestWriteCheckLeavesNothing(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "x.pcapng")
	code, _, errb := mainRun(t, "probe", "127.0.0.1", "-p", "0", "-w", path)
	if code != app.ExitFailure || !strings.Contains(errb, "port") {
		t.Fatalf("code %d, stderr %q", code, errb)
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Errorf("-w file left behind: %v", err)
	}
	if err := os.WriteFile(path, []byte("keep"), 0o644); err != nil {
		t.Fatal(err)
	}
	mainRun(t, "probe", "127.0.0.1", "-p", "0", "-w", path)
	if b, err := os.ReadFile(path); err != nil || string(b) != "keep" {
		t.Errorf("existing -w file changed: %q, %v", b, err)
	}
}
