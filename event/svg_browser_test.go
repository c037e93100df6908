package event

import (
	"context"
	"fmt"
	"image"
	"image/png"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// TestSVGInBrowser renders the picture of a whole session in a real
// browser (headless Chromium, one render) and checks the screenshot: not
// blank, and the arrows are there in their colours (sent, received, reset),
// which a page showing an XML error would not have. The labels are checked
// in the SVG's text by TestSVGLabels. Without Chromium the test skips,
// except under CI=true (scripts/test.sh installs it).
func TestSVGInBrowser(t *testing.T) {
	browser := ""
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			browser = p
			break
		}
	}
	if browser == "" {
		if os.Getenv("CI") == "true" {
			t.Fatal("no chromium on PATH (scripts/test.sh installs it: apt-get install chromium)")
		}
		t.Skip("no chromium on PATH: apt-get install -y chromium")
	}
	dir := t.TempDir()
	file := filepath.Join(dir, "session.svg")
	var pic SVG
	for _, e := range sessionFixture() {
		pic.Emit(e)
	}
	f, err := os.Create(file)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pic.WriteTo(f); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	shot := filepath.Join(dir, "shot.png")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
		"--no-first-run", "--disable-dev-shm-usage", "--user-data-dir="+filepath.Join(dir, "profile"),
		"--screenshot="+shot, "--window-size="+strconv.Itoa(svgWidth)+",1000", "file://"+file)
	start := time.Now()
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", browser, err, out)
	}
	t.Logf("rendered in %v", time.Since(start).Round(time.Millisecond))
	pf, err := os.Open(shot)
	if err != nil {
		t.Fatalf("no screenshot: %v\n%s", err, out)
	}
	defer pf.Close()
	img, err := png.Decode(pf)
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	var sum, sq float64
	colours := map[string]int{}
	want := map[string][3]uint8{"sent": rgb(svgSent), "received": rgb(svgRecv), "reset": rgb(svgRST)}
	bnd := img.Bounds()
	n := float64(bnd.Dx() * bnd.Dy())
	for y := bnd.Min.Y; y < bnd.Max.Y; y++ {
		for x := bnd.Min.X; x < bnd.Max.X; x++ {
			r, g, b := px(img, x, y)
			l := 0.299*float64(r) + 0.587*float64(g) + 0.114*float64(b)
			sum += l
			sq += l * l
			for name, c := range want {
				if near(r, c[0]) && near(g, c[1]) && near(b, c[2]) {
					colours[name]++
				}
			}
		}
	}
	mean := sum / n
	variance := sq/n - mean*mean
	t.Logf("screenshot %dx%d: luminance mean %.1f, variance %.1f; pixels per colour %v", bnd.Dx(), bnd.Dy(), mean, variance, colours)
	if variance < 100 {
		t.Errorf("the screenshot is (nearly) blank: luminance variance %.1f", variance)
	}
	for name := range want {
		if colours[name] < 200 {
			t.Errorf("%s arrows: %d pixels of their colour, want 200 or more", name, colours[name])
		}
	}
}

func rgb(hex string) [3]uint8 {
	var c [3]uint8
	fmt.Sscanf(hex, "#%02x%02x%02x", &c[0], &c[1], &c[2])
	return c
}

func px(img image.Image, x, y int) (r, g, b uint8) {
	R, G, B, _ := img.At(x, y).RGBA()
	return uint8(R >> 8), uint8(G >> 8), uint8(B >> 8)
}

func near(a, b uint8) bool { return max(a, b)-min(a, b) <= 24 }
