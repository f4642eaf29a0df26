package analyst

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"

	"github.com/heal7/shadowcube/comparator"
)

// chromium is Debian's headless browser (.ci/run installs it).
const chromium = "/usr/bin/chromium"

// TestReportInChromium opens a report written to disk in headless
// Chromium (file://, no network): the page loads with no console error or
// exception, shows the seeded numbers, renders the chart, and shows a
// <script> body as text without running it. The screenshot is kept in the
// test's temp dir (and copied to $SHADOWCUBE_SCREENSHOT_DIR when set).
func TestReportInChromium(t *testing.T) {
	st := openStore(t)
	now := time.Now().UTC()
	seed(t, st, seedSpec{service: "saju", route: "/api/saju/chart", kind: comparator.KindSaju, at: now, hours: 3, pairs: 300, open: 9, accepted: 4, errors: 2,
		body: `{"note":"<script>document.title='pwned';window.pwned=1</script>","이름":"김민지"}`})
	f, err := Build(ctxT(t), st, Query{}, Options{Now: fixedNow(now), Criteria: DefaultCriteria()})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	page := filepath.Join(dir, "report.html")
	fh, err := os.Create(page)
	if err != nil {
		t.Fatal(err)
	}
	if err := WriteHTML(fh, f); err != nil {
		t.Fatal(err)
	}
	fh.Close()

	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(chromium), chromedp.NoSandbox, chromedp.Headless,
		chromedp.Flag("disable-gpu", true), chromedp.WindowSize(1300, 1800))
	actx, cancelA := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancelA()
	bctx, cancelB := chromedp.NewContext(actx)
	defer cancelB()
	ctx, cancel := context.WithTimeout(bctx, 90*time.Second)
	defer cancel()
	var mu sync.Mutex
	var problems []string
	if err := chromedp.Listen(ctx, func(ev any) {
		mu.Lock()
		defer mu.Unlock()
		switch e := ev.(type) {
		case *runtime.EventExceptionThrown:
			problems = append(problems, "exception: "+e.ExceptionDetails.Text)
		case *runtime.EventConsoleAPICalled:
			if e.Type == runtime.ConsoleAPICalledTypeError || e.Type == runtime.ConsoleAPICalledTypeWarning {
				problems = append(problems, "console "+string(e.Type))
			}
		}
	}); err != nil {
		t.Fatalf("chromium: %v", err)
	}
	if err := chromedp.Do(ctx, chromedp.Navigate("file://"+page), chromedp.WaitVisible(`section.route`)); err != nil {
		t.Fatalf("chromium: %v", err)
	}
	text := func(js string) string {
		t.Helper()
		v, err := chromedp.Run(ctx, chromedp.Evaluate[string](js))
		if err != nil {
			t.Fatalf("chromium: %s: %v", js, err)
		}
		return v
	}
	count := func(js string) int {
		t.Helper()
		v, err := chromedp.Run(ctx, chromedp.Evaluate[int](js))
		if err != nil {
			t.Fatalf("chromium: %s: %v", js, err)
		}
		return v
	}
	title := text(`document.title`)
	pairs := text(`document.querySelector('tr[data-route="/api/saju/chart"] [data-k="pairs"]').textContent`)
	open := text(`document.querySelector('tr[data-route="/api/saju/chart"] [data-k="open"]').textContent`)
	gate := text(`document.querySelector('[data-k="gate_verdict"]').textContent`)
	pwned := count(`(window.pwned ? 1 : 0) + (document.title === 'pwned' ? 1 : 0)`) > 0
	scripts := count(`document.querySelectorAll('script').length`)
	svgs := count(`document.querySelectorAll('svg.trend rect').length`)
	marked := count(`document.querySelectorAll('.side span.d').length`)
	shown := text(`document.querySelector('details.sig[open] .side.cube pre').textContent`)
	shot, err := chromedp.Run(ctx, chromedp.FullScreenshot(100)) // quality 100: PNG
	if err != nil {
		t.Fatalf("chromium: screenshot: %v", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "report.png"), shot, 0o644); err != nil {
		t.Fatal(err)
	}
	if d := os.Getenv("SHADOWCUBE_SCREENSHOT_DIR"); d != "" {
		_ = os.WriteFile(filepath.Join(d, "report-test.png"), shot, 0o644)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(problems) > 0 {
		t.Errorf("console errors: %v", problems)
	}
	if !strings.HasPrefix(title, "shadowcube report") || pwned || scripts != 0 {
		t.Fatalf("title %q, script ran %v, %d script elements", title, pwned, scripts)
	}
	if pairs != "300" || open != "9" || gate != "no-go: not enough samples" {
		t.Errorf("shown: pairs %q, open %q, gate %q; want 300, 9, no-go: not enough samples", pairs, open, gate)
	}
	if svgs != 3 || marked == 0 {
		t.Errorf("chart bars %d (want 3 hours), marked lines %d", svgs, marked)
	}
	if !strings.Contains(shown, "<script>document.title='pwned';window.pwned=1</script>") || !strings.Contains(shown, "김민지") {
		t.Errorf("cube body not shown as text: %q", shown)
	}
	if len(shot) < 10_000 {
		t.Errorf("screenshot of %d bytes", len(shot))
	}
}
