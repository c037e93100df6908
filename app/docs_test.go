package app_test

import (
	"bytes"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/urfave/cli/v2"

	"tcpshake/app"
)

// updateCLIDocs rewrites the generated part of docs/cli.md instead of
// comparing it: go test ./app -run TestCLIDocs -update.
var updateCLIDocs = flag.Bool("update", false, "rewrite the generated part of docs/cli.md")

// cliDocsPath is the command reference, relative to this package.
var cliDocsPath = filepath.Join("..", "docs", "cli.md")

// cliDocsMarker separates the hand-written preface of docs/cli.md from the
// part generated from the urfave/cli application.
const cliDocsMarker = "<!-- Everything below is generated from app.New by `go test ./app -run TestCLIDocs -update`. Do not edit it by hand. -->\n"

// cliReference renders the command reference from the application itself:
// urfave/cli's ToMarkdown, with each command's synopsis and description
// (which ToMarkdown leaves out) put in as its usage text. It works on a
// fresh application, so the one main runs is never touched.
func cliReference() (string, error) {
	a := app.New(io.Discard, io.Discard)
	withSynopsis(a.Name, a.Commands)
	md, err := a.ToMarkdown()
	if err != nil {
		return "", fmt.Errorf("render markdown: %w", err)
	}
	// Trailing spaces are invisible in Markdown and stripped by editors.
	lines := strings.Split(md, "\n")
	for i, l := range lines {
		lines[i] = strings.TrimRight(l, " \t")
	}
	return strings.TrimRight(strings.Join(lines, "\n"), "\n") + "\n", nil
}

// withSynopsis sets every visible command's UsageText to its synopsis line
// followed by its description.
func withSynopsis(prefix string, cmds []*cli.Command) {
	for _, c := range cmds {
		if c.Hidden {
			continue
		}
		name := prefix + " " + c.Name
		var b strings.Builder
		b.WriteString(name)
		if len(c.Subcommands) > 0 {
			b.WriteString(" COMMAND")
		} else if len(c.VisibleFlags()) > 0 {
			b.WriteString(" [OPTIONS]")
		}
		if c.ArgsUsage != "" {
			b.WriteString(" " + c.ArgsUsage)
		}
		if c.Description != "" {
			b.WriteString("\n\n" + strings.TrimRight(c.Description, "\n"))
		}
		c.UsageText = b.String()
		withSynopsis(name, c.Subcommands)
	}
}

// TestCLIDocs keeps docs/cli.md true: the part below the marker must be
// exactly what the application generates now.
func TestCLIDocs(t *testing.T) {
	want, err := cliReference()
	if err != nil {
		t.Fatal(err)
	}
	again, err := cliReference()
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, again); diff != "" {
		t.Fatalf("the generated reference is not deterministic (-first +second):\n%s", diff)
	}
	doc, err := os.ReadFile(cliDocsPath)
	if err != nil {
		t.Fatalf("read %s: %v", cliDocsPath, err)
	}
	preface, got, ok := bytes.Cut(doc, []byte(cliDocsMarker))
	if !ok {
		t.Fatalf("%s lacks the marker line %q that starts the generated part", cliDocsPath, strings.TrimSpace(cliDocsMarker))
	}
	if *updateCLIDocs {
		out := append(append(preface, cliDocsMarker...), "\n"+want...)
		if err := os.WriteFile(cliDocsPath, out, 0o644); err != nil {
			t.Fatalf("write %s: %v", cliDocsPath, err)
		}
		return
	}
	if diff := cmp.Diff(want, strings.TrimPrefix(string(got), "\n")); diff != "" {
		t.Errorf("%s is out of date with the CLI; run go test ./app -run TestCLIDocs -update (-want +got):\n%s", cliDocsPath, diff)
	}
}

// TestCLIDocsCoverEveryCommand checks that the reference names every visible
// command and every flag of it, so a change in how urfave/cli renders
// Markdown cannot silently drop them.
func TestCLIDocsCoverEveryCommand(t *testing.T) {
	md, err := cliReference()
	if err != nil {
		t.Fatal(err)
	}
	var walk func(prefix string, cmds []*cli.Command)
	walk = func(prefix string, cmds []*cli.Command) {
		for _, c := range cmds {
			name := prefix + " " + c.Name
			t.Run(strings.TrimPrefix(name, "tcpshake "), func(t *testing.T) {
				if c.Hidden {
					if strings.Contains(md, name+"\n") || strings.Contains(md, name+" ") {
						t.Errorf("hidden command %q appears in the reference", name)
					}
					return
				}
				// A synopsis is an indented code line, or a quote line when
				// the command has no description.
				if !strings.Contains(md, "    "+name) && !strings.Contains(md, ">"+name) {
					t.Errorf("no synopsis for %q in the reference", name)
				}
				for _, f := range c.VisibleFlags() {
					n := f.Names()[0]
					dash := "--"
					if len(n) == 1 {
						dash = "-"
					}
					if !strings.Contains(md, "**"+dash+n) {
						t.Errorf("%s: flag %s%s missing from the reference", name, dash, n)
					}
				}
			})
			walk(name, c.Subcommands)
		}
	}
	walk("tcpshake", app.New(io.Discard, io.Discard).Commands)
}
