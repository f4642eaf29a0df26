package webui

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"

	"github.com/heal7/shadowcube/internal/testenv"
)

func TestMain(m *testing.M) { os.Exit(testenv.Run(m)) }

// chromiumPath finds Debian's chromium. Missing, the test skips, except
// under CI=true, where it fails (.ci/run installs the package).
func chromiumPath(t testing.TB) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if _, err := os.Stat("/usr/bin/chromium"); err == nil {
		return "/usr/bin/chromium"
	}
	if testenv.InCI() {
		t.Fatal("chromium not found under CI=true (tests must not skip): install the Debian package chromium (.ci/run does)")
	}
	t.Skip("chromium not found: install the Debian package chromium to run the browser tests")
	return ""
}

// newBrowser starts one headless Chromium for a test; it is stopped when
// the test ends.
func newBrowser(t testing.TB) context.Context {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromiumPath(t)), chromedp.NoSandbox, chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1400, 900), chromedp.Flag("lang", "ko-KR"))
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	bctx, cancelBrowser := chromedp.NewContext(actx)
	// Start the browser now, so a broken install fails here, clearly.
	if err := chromedp.Do(bctx); err != nil {
		cancelBrowser()
		cancelAlloc()
		t.Fatalf("start chromium: %v", err)
	}
	t.Cleanup(func() {
		cancelBrowser()
		cancelAlloc()
	})
	return bctx
}

// tab is one browser tab that records what a page must not do: console
// errors and warnings, uncaught exceptions, browser-log errors (a CSP
// violation, a failed load), and every network request.
type tab struct {
	ctx      context.Context
	mu       sync.Mutex
	problems []string
	requests []string
	loads    int
}

func newTab(t testing.TB, browser context.Context) *tab {
	t.Helper()
	ctx, cancel := chromedp.NewContext(browser)
	t.Cleanup(cancel)
	tb := &tab{ctx: ctx}
	if err := chromedp.Listen(ctx, func(ev any) {
		tb.mu.Lock()
		defer tb.mu.Unlock()
		switch e := ev.(type) {
		case *runtime.EventConsoleAPICalled:
			if e.Type == runtime.ConsoleAPICalledTypeError || e.Type == runtime.ConsoleAPICalledTypeWarning || e.Type == runtime.ConsoleAPICalledTypeAssert {
				var parts []string
				for _, a := range e.Args {
					parts = append(parts, string(a.Value)+a.Description)
				}
				tb.problems = append(tb.problems, fmt.Sprintf("console.%s: %s", e.Type, strings.Join(parts, " ")))
			}
		case *runtime.EventExceptionThrown:
			d := e.ExceptionDetails
			desc := ""
			if d.Exception != nil {
				desc = d.Exception.Description
			}
			tb.problems = append(tb.problems, fmt.Sprintf("exception: %s %s at %s:%d", d.Text, desc, d.URL, d.LineNumber))
		case *log.EventEntryAdded:
			if e.Entry.Level == log.EntryLevelError || e.Entry.Level == log.EntryLevelWarning {
				tb.problems = append(tb.problems, fmt.Sprintf("browser log %s (%s): %s %s", e.Entry.Level, e.Entry.Source, e.Entry.Text, e.Entry.URL))
			}
		case *network.EventRequestWillBeSent:
			tb.requests = append(tb.requests, e.Request.URL)
		case *page.EventLoadEventFired:
			tb.loads++
		}
	}); err != nil {
		t.Fatalf("listen to the tab: %v", err)
	}
	if err := chromedp.Do(ctx, chromedp.EmulateViewport(1400, 900)); err != nil {
		t.Fatal(err)
	}
	return tb
}

// noProblems fails the test with every console error, exception or
// browser-log error seen so far.
func (tb *tab) noProblems(t testing.TB, what string) {
	t.Helper()
	tb.mu.Lock()
	defer tb.mu.Unlock()
	if len(tb.problems) > 0 {
		t.Fatalf("%s: the page reported:\n  %s", what, strings.Join(tb.problems, "\n  "))
	}
}

func (tb *tab) requestsSeen() []string {
	tb.mu.Lock()
	defer tb.mu.Unlock()
	return append([]string(nil), tb.requests...)
}

func (tb *tab) loadCount() int {
	tb.mu.Lock()
	defer tb.mu.Unlock()
	return tb.loads
}

func (tb *tab) do(t testing.TB, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	ctx, cancel := context.WithTimeout(tb.ctx, 90*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, steps...); err != nil {
		t.Fatal(err)
	}
}

// eval runs a script in the page and decodes its result.
func eval[T any](t testing.TB, tb *tab, script string) T {
	t.Helper()
	ctx, cancel := context.WithTimeout(tb.ctx, 60*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](script))
	if err != nil {
		t.Fatalf("evaluate %s: %v", script, err)
	}
	return v
}

// waitFor polls a script until it returns true (the page changed as
// expected), with a generous deadline for a loaded machine. Evaluation
// errors while a page navigates are retried.
func waitFor(t testing.TB, tb *tab, what, script string) {
	t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	var last error
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(tb.ctx, 10*time.Second)
		ok, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`(() => { try { return !!(`+script+`) } catch (e) { return false } })()`))
		cancel()
		if err == nil && ok {
			return
		}
		last = err
		time.Sleep(100 * time.Millisecond)
	}
	text, _ := chromedp.Run(tb.ctx, chromedp.Evaluate[string](`location.href + "\n" + document.body.innerText.slice(0, 2000)`))
	t.Fatalf("waiting for %s: not true after 90s (last error %v)\npage: %s", what, last, text)
}

// navigate loads a URL and waits for the load event.
func (tb *tab) navigate(t testing.TB, url string) {
	t.Helper()
	tb.do(t, chromedp.Navigate(url))
	waitFor(t, tb, "the page "+url+" to load", `document.readyState === "complete"`)
}

// screenshot saves a full-page PNG into the test's temp dir and, when
// SHADOWCUBE_SCREENSHOT_DIR is set, there too (to look at).
func (tb *tab) screenshot(t testing.TB, name string) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(tb.ctx, 90*time.Second)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("screenshot %s: %v", name, err)
	}
	dirs := []string{t.TempDir()}
	if d := os.Getenv("SHADOWCUBE_SCREENSHOT_DIR"); d != "" {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		dirs = append(dirs, d)
	}
	for _, d := range dirs {
		if err := os.WriteFile(filepath.Join(d, name+".png"), png, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return png
}

// jsString quotes s for a script.
func jsString(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range s {
		switch {
		case r == '"' || r == '\\':
			b.WriteByte('\\')
			b.WriteRune(r)
		case r < 0x20 || r == '<' || r == '>' || r == 0x2028 || r == 0x2029:
			fmt.Fprintf(&b, `\u%04x`, r)
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte('"')
	return b.String()
}

// cell reads a figure of the page: the data-v of the data-k cell in the
// row of a service and route ("" route: the service's total row).
func cell(t testing.TB, tb *tab, service, route, key string) string {
	t.Helper()
	sel := `tr[data-service=` + jsString(service) + `]`
	if route == "" {
		sel = `tr.total[data-service=` + jsString(service) + `]`
	} else {
		sel += `[data-route=` + jsString(route) + `]`
	}
	return eval[string](t, tb, `(() => { const c = document.querySelector(`+jsString(sel+` [data-k=`+jsString(key)+`]`)+
		`); return c ? c.dataset.v : "missing" })()`)
}
