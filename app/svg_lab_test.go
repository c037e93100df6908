//go:build linux

package app_test

import (
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"tcpshake/lab"
	"tcpshake/lab/labtest"
)

// TestSVGLab draws real connections: handshake --svg (with -w), shell --svg
// and analyze --conn --svg of the handshake's own capture. Each picture must
// be well-formed SVG whose text has the lifelines, every segment's flags and
// the states as they change; analyze's must tell the same segments as the
// handshake's. Without --conn, analyze refuses --svg; an unwritable --svg
// stops handshake before its first packet.
func TestSVGLab(t *testing.T) {
	l := labtest.New(t)
	bin := binary(t)
	dir := t.TempDir()
	peer := fmt.Sprintf("%v:%d", l.ServerV4, lab.PortEcho)
	hsSVG, capFile := filepath.Join(dir, "hs.svg"), filepath.Join(dir, "hs.pcapng")
	r := runClient(t, l, bin, "handshake", peer, "--send", `hi\n`, "--time-wait", "0", "--svg", hsSVG, "-w", capFile)
	if r.code != 0 {
		t.Fatalf("handshake --svg: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	hs := svgText(t, hsSVG)
	for _, s := range []string{"us " + l.ClientV4.String() + ":", "peer " + peer, "[S] SYN", "[S.] SYN, ACK", "[P.] PSH, ACK", "[F.] FIN, ACK",
		"SYN-SENT", "SYN-RECEIVED", "ESTABLISHED", "FIN-WAIT-1", "TIME-WAIT", `data: "hi\n"`} {
		if !strings.Contains(hs, s) {
			t.Errorf("handshake's picture has no %q:\n%s", s, hs)
		}
	}

	shSVG := filepath.Join(dir, "sh.svg")
	r = runClient(t, l, "bash", "-c", fmt.Sprintf(`printf 'syn\nack\nsend hi\nfin\nquit\n' | %s shell %s --time-wait 0 --svg %s`, bin, peer, shSVG))
	if r.code != 0 {
		t.Fatalf("shell --svg: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	for _, s := range []string{"tcpshake shell", "[S] SYN", "[S.] SYN, ACK", "[F.] FIN, ACK", "ESTABLISHED"} {
		if !strings.Contains(svgText(t, shSVG), s) {
			t.Errorf("shell's picture has no %q", s)
		}
	}

	anSVG := filepath.Join(dir, "an.svg")
	r = runClient(t, l, bin, "analyze", capFile, "--conn", "1", "--svg", anSVG)
	if r.code != 0 {
		t.Fatalf("analyze --svg: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	an := svgText(t, anSVG)
	for _, s := range []string{"client " + l.ClientV4.String() + ":", "server " + peer, "conversation 1"} {
		if !strings.Contains(an, s) {
			t.Errorf("analyze's picture has no %q", s)
		}
	}
	if got, want := flagsOf(an), flagsOf(hs); got != want {
		t.Errorf("analyze's picture tells segments %s, the handshake's %s", got, want)
	}

	if r := runClient(t, l, bin, "analyze", capFile, "--svg", anSVG); r.code != 2 || !strings.Contains(r.stderr, "--conn") {
		t.Errorf("analyze --svg without --conn: exit %d, %q; want 2 and a word on --conn", r.code, r.stderr)
	}
	r = runClient(t, l, bin, "handshake", peer, "--svg", filepath.Join(dir, "no", "such", "x.svg"))
	if r.code != 2 || !strings.Contains(r.stderr, "--svg") || strings.Contains(r.stdout, "HANDSHAKE") {
		t.Errorf("handshake --svg into a missing directory: exit %d, stdout %q, stderr %q; want 2 before anything is sent", r.code, r.stdout, r.stderr)
	}
}

// svgText is the text of an SVG file's text elements, one per line; the
// file must parse as XML with an svg root.
func svgText(t *testing.T, path string) string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	d := xml.NewDecoder(f)
	var b strings.Builder
	root, in := "", false
	for {
		tok, err := d.Token()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("%s is not well-formed XML: %v", path, err)
		}
		switch tok := tok.(type) {
		case xml.StartElement:
			if root == "" {
				root = tok.Name.Local
			}
			in = tok.Name.Local == "text" || tok.Name.Local == "title"
		case xml.CharData:
			if in {
				b.Write(tok)
			}
		case xml.EndElement:
			if in {
				b.WriteByte('\n')
			}
			in = false
		}
	}
	if root != "svg" {
		t.Fatalf("%s: root element %q, want svg", path, root)
	}
	return b.String()
}

// flagsOf lists the arrows' flags in order, e.g. "[S] [S.] [.]".
func flagsOf(text string) string {
	var fl []string
	for _, l := range strings.Split(text, "\n") {
		if strings.HasPrefix(l, "[") {
			fl = append(fl, l[:strings.IndexByte(l, ']')+1])
		}
	}
	return strings.Join(fl, " ")
}
