package event

import (
	"bytes"
	"encoding/xml"
	"errors"
	"io"
	"strings"
	"testing"
)

// svgTexts parses the picture as XML and returns the content of its text
// elements.
func svgTexts(t *testing.T, doc []byte) []string {
	t.Helper()
	d := xml.NewDecoder(bytes.NewReader(doc))
	var texts []string
	var in bool
	var cur strings.Builder
	for {
		tok, err := d.Token()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("the SVG is not well-formed XML: %v", err)
		}
		switch tok := tok.(type) {
		case xml.StartElement:
			in = tok.Name.Local == "text" || tok.Name.Local == "title"
			cur.Reset()
		case xml.CharData:
			if in {
				cur.Write(tok)
			}
		case xml.EndElement:
			if in {
				texts = append(texts, cur.String())
			}
			in = false
		}
	}
	return texts
}

// TestSVGLabels: every segment's flags and numbers, every state as it
// changes, the kernel's readings and every word of the arithmetic are text
// of the picture.
func TestSVGLabels(t *testing.T) {
	var pic SVG
	for _, e := range sessionFixture() {
		pic.Emit(e)
	}
	var b bytes.Buffer
	if _, err := pic.WriteTo(&b); err != nil {
		t.Fatal(err)
	}
	texts := svgTexts(t, b.Bytes())
	all := strings.Join(texts, "\n")
	has := func(s string) {
		t.Helper()
		if !strings.Contains(all, s) {
			t.Errorf("the picture has no text %q", s)
		}
	}
	has("us 198.51.100.1:37513")
	has("peer 198.51.100.2:7")
	words := map[string]bool{}
	for _, w := range strings.Fields(all) {
		words[w] = true
	}
	for _, e := range sessionFixture() {
		st, ok := e.(Step)
		if !ok {
			continue
		}
		if st.Flags != "" {
			has(svgLabel(st))
		}
		for _, x := range st.Explain {
			for _, w := range strings.Fields(x) {
				if !words[w] {
					t.Errorf("the word %q of %q is not in the picture", w, x)
				}
			}
		}
		if obs, _ := observed(st); obs != "" && st.Direction != DirectionObserved {
			has(obs)
		}
	}
	// States beside the lifelines, once per change.
	var states []string
	for _, x := range strings.Split(b.String(), "\n") {
		if strings.Contains(x, `class="state"`) {
			states = append(states, x[strings.Index(x, ">")+1:strings.LastIndex(x, "<")])
		}
	}
	want := []string{"CLOSED", "LISTEN", "SYN-SENT", "SYN-RECEIVED", "ESTABLISHED", "ESTABLISHED", "CLOSE-WAIT", "FIN-WAIT-1", "CLOSED", "CLOSED"}
	if strings.Join(states, " ") != strings.Join(want, " ") {
		t.Errorf("states drawn %q, want %q", states, want)
	}
	// Analyze's story: the lifelines are the client and the server.
	var story SVG
	for _, e := range sessionFixture()[1:] {
		story.Emit(e)
	}
	story.Emit(Connection{Index: 2, Client: "192.0.2.1:5000", Server: "192.0.2.2:80"})
	b.Reset()
	if _, err := story.WriteTo(&b); err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"client 192.0.2.1:5000", "server 192.0.2.2:80", "conversation 2"} {
		if !strings.Contains(strings.Join(svgTexts(t, b.Bytes()), "\n"), s) {
			t.Errorf("the story's picture has no %q", s)
		}
	}
}

// TestSVGEscapes: payloads and addresses with XML's special characters
// stay text.
func TestSVGEscapes(t *testing.T) {
	var pic SVG
	pic.Emit(Step{N: 1, Direction: "sent", Flags: "P.", Len: 9, Local: "ESTABLISHED", Remote: "ESTABLISHED",
		Data: Payload("<a&b>\"\x01"), Explain: []string{"x < y & y > z"}})
	var b bytes.Buffer
	if _, err := pic.WriteTo(&b); err != nil {
		t.Fatal(err)
	}
	all := strings.Join(svgTexts(t, b.Bytes()), "\n")
	for _, s := range []string{"x < y & y > z", `data: "hex:`} {
		if !strings.Contains(all, s) {
			t.Errorf("no %q in %q", s, all)
		}
	}
}
