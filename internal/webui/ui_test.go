package webui

import (
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/heal7/shadowcube/comparator"
	"github.com/heal7/shadowcube/internal/analyst"
	"github.com/heal7/shadowcube/internal/testenv"
)

const uiToken = Token("ui-test-token-3f9c2a")

// TestWebUIInBrowser drives the web UI in a real headless Chromium over a
// seeded store: pages load without console errors and show the seeded
// numbers, filters in the URL change them, a <script> body renders as text
// and never runs, the page refreshes itself, and a signature can be
// accepted (and un-accepted) only with the token: the audit table and the
// YAML export record each change.
func TestWebUIInBrowser(t *testing.T) {
	st, c := seed(t)
	browser := newBrowser(t)
	out := filepath.Join(t.TempDir(), "accepted.yaml")
	srv := startUI(t, st, Config{Token: uiToken, AcceptedOut: out, Criteria: analyst.DefaultCriteria()})
	base := "http://" + srv.Addr()
	mismatches := c.chartDay + c.chartLuck + c.chartScript

	t.Run("overview shows the seeded numbers", func(t *testing.T) {
		tb := newTab(t, browser)
		tb.navigate(t, base+"/?refresh=0")
		want := map[string]string{
			"saju|pairs":                          strconv.Itoa(c.sajuPairs()),
			"saju|" + chartRoute + "|pairs":       strconv.Itoa(c.chartPairs()),
			"saju|" + chartRoute + "|mismatches":  strconv.Itoa(mismatches),
			"saju|" + chartRoute + "|open":        strconv.Itoa(mismatches),
			"saju|" + chartRoute + "|cube_errors": strconv.Itoa(c.chartErr),
			"saju|" + byIDRoute + "|pairs":        strconv.Itoa(c.byIDMatch + c.byIDStatus),
			"ai|pairs":                            strconv.Itoa(c.aiPairs),
		}
		for k, v := range want {
			parts := strings.Split(k, "|")
			route := ""
			if len(parts) == 3 {
				route = parts[1]
			}
			if got := cell(t, tb, parts[0], route, parts[len(parts)-1]); got != v {
				t.Errorf("%s: page shows %s, seeded %s", k, got, v)
			}
		}
		// The same figures the report is built from.
		fig, err := analyst.Build(testenv.Context(t, time.Minute), st, analyst.Query{}, analyst.Options{})
		if err != nil {
			t.Fatal(err)
		}
		for _, svc := range fig.Services {
			if got := cell(t, tb, svc.Service, "", "match_rate"); got != strconv.FormatFloat(svc.Total.MatchRate, 'g', -1, 64) {
				t.Errorf("%s match rate: page %s, figures %v", svc.Service, got, svc.Total.MatchRate)
			}
		}
		tb.screenshot(t, "ui-overview")
		tb.noProblems(t, "overview")
	})

	t.Run("filters in the URL change the numbers", func(t *testing.T) {
		tb := newTab(t, browser)
		tb.navigate(t, base+"/?refresh=0")
		if got := cell(t, tb, "saju", "", "pairs"); got != strconv.Itoa(c.sajuPairs()) {
			t.Fatalf("unfiltered saju pairs %s, want %d", got, c.sajuPairs())
		}
		// Through the filter form, as an analyst would.
		tb.do(t, chromedp.SetValue(`#filters select[name=verdict]`, "error"), chromedp.Click(`#apply`))
		waitFor(t, tb, "the verdict filter in the URL", `location.search.includes("verdict=error")`)
		waitFor(t, tb, "the filtered page", `document.readyState === "complete" && !!document.querySelector("tr.total[data-service=saju]")`)
		if got := cell(t, tb, "saju", "", "pairs"); got != strconv.Itoa(c.chartErr) {
			t.Errorf("verdict=error: saju pairs %s, want %d", got, c.chartErr)
		}
		if n := eval[int](t, tb, `document.querySelectorAll("tr.total[data-service=ai]").length`); n != 0 {
			t.Errorf("verdict=error: ai has no cube error, but its row is shown")
		}
		shared := eval[string](t, tb, `location.href`)
		// The link, opened elsewhere, shows the same view.
		tb2 := newTab(t, browser)
		tb2.navigate(t, shared)
		if got := cell(t, tb2, "saju", "", "pairs"); got != strconv.Itoa(c.chartErr) {
			t.Errorf("shared link %s: saju pairs %s, want %d", shared, got, c.chartErr)
		}
		// Service and route filters.
		tb2.navigate(t, base+"/?refresh=0&service=saju&route="+url.QueryEscape(byIDRoute))
		if got := cell(t, tb2, "saju", "", "pairs"); got != strconv.Itoa(c.byIDMatch+c.byIDStatus) {
			t.Errorf("route filter: saju pairs %s, want %d", got, c.byIDMatch+c.byIDStatus)
		}
		// A time window after every seeded hour holds nothing.
		tb2.navigate(t, base+"/?refresh=0&since="+url.QueryEscape(time.Now().Add(2*time.Hour).UTC().Format(time.RFC3339)))
		waitFor(t, tb2, "the empty window", `!!document.getElementById("empty")`)
		tb2.screenshot(t, "ui-empty-window")
		// A bad filter names the parameter.
		tb2.navigate(t, base+"/?since=yesterday-ish")
		waitFor(t, tb2, "the filter error", `(document.getElementById("error")||{}).textContent?.includes("since")`)
		tb.noProblems(t, "filtered overview")
	})

	t.Run("route page: paths, causes, signatures with examples", func(t *testing.T) {
		tb := newTab(t, browser)
		tb.navigate(t, base+"/route?refresh=0&service=saju&route="+url.QueryEscape(chartRoute))
		for _, sig := range []string{c.sigDay, c.sigLuck, c.sigScript} {
			if n := eval[int](t, tb, `[...document.querySelectorAll("div.ui-sig")].filter(d => d.dataset.signature === `+jsString(sig)+`).length`); n != 1 {
				t.Errorf("signature %s shown %d times", sig, n)
			}
		}
		if got := eval[string](t, tb, `document.querySelector("table.paths tr[data-path='$.pillars.day'] [data-k=pairs]")?.dataset.v ?? "missing"`); got != strconv.Itoa(c.chartDay) {
			t.Errorf("path $.pillars.day: %s pairs, want %d", got, c.chartDay)
		}
		// Not logged in: no accept form, a login link.
		if n := eval[int](t, tb, `document.querySelectorAll("form.accept, form.unaccept").length`); n != 0 {
			t.Errorf("%d accept forms shown without login", n)
		}
		if n := eval[int](t, tb, `document.querySelectorAll("#login-link").length`); n != 1 {
			t.Error("no login link")
		}
		eval[bool](t, tb, `(() => { document.querySelectorAll("details.sig").forEach(d => d.open = true); return true })()`)
		tb.screenshot(t, "ui-route")
		tb.noProblems(t, "route page")
	})

	t.Run("a <script> body renders as text and never runs", func(t *testing.T) {
		tb := newTab(t, browser)
		for _, u := range []string{
			base + "/signature?refresh=0&signature=" + url.QueryEscape(c.sigScript),
			base + "/route?refresh=0&service=saju&route=" + url.QueryEscape(chartRoute),
		} {
			tb.navigate(t, u)
			if !eval[bool](t, tb, `document.body.textContent.includes(`+jsString(pwned)+`)`) {
				t.Errorf("%s: the body's <script> text is not shown as text", u)
			}
			if n := eval[int](t, tb, `[...document.scripts].filter(s => s.textContent.includes("__pwned")).length`); n != 0 {
				t.Errorf("%s: %d script elements carry the body's script: not escaped", u, n)
			}
			if ran := eval[string](t, tb, `typeof window.__pwned`); ran != "undefined" {
				t.Errorf("%s: the body's script ran (window.__pwned is %s)", u, ran)
			}
		}
		tb.navigate(t, base+"/signature?refresh=0&signature="+url.QueryEscape(c.sigScript))
		tb.screenshot(t, "ui-signature-script")
		tb.noProblems(t, "signature page with a <script> body")
	})

	t.Run("pages refresh themselves", func(t *testing.T) {
		tb := newTab(t, browser)
		tb.navigate(t, base+"/?refresh=1")
		first := tb.loadCount()
		waitFor(t, tb, "a reload", `document.readyState === "complete"`)
		deadline := time.Now().Add(60 * time.Second)
		for tb.loadCount() < first+2 && time.Now().Before(deadline) {
			time.Sleep(100 * time.Millisecond)
		}
		if got := tb.loadCount(); got < first+2 {
			t.Fatalf("the page loaded %d times in 60s with refresh=1; want it to reload itself", got-first+1)
		}
		// An analyst typing into the page holds the refresh: the reloads
		// seen above stop once a field has focus.
		// A reload may land between finding the field and typing: retry
		// until the typing happened on one page.
		typed := false
		for try := 0; try < 20 && !typed; try++ {
			waitFor(t, tb, "the reloaded page", `document.readyState === "complete" && !!document.querySelector("#filters input[name=service]")`)
			before := tb.loadCount()
			tb.do(t, chromedp.Focus(`#filters input[name=service]`), chromedp.SendKeys(`#filters input[name=service]`, "sa"))
			v, err := chromedp.Run(tb.ctx, chromedp.Evaluate[string](`document.querySelector("#filters input[name=service]").value`))
			typed = err == nil && v == "sa" && tb.loadCount() == before
		}
		if !typed {
			t.Fatal("could not type into the page between reloads in 20 tries")
		}
		held := tb.loadCount()
		time.Sleep(4 * time.Second) // four refresh periods
		if got := tb.loadCount(); got != held {
			t.Errorf("the page reloaded %d times while a field was being typed into", got-held)
		}
		if v := eval[string](t, tb, `document.querySelector("#filters input[name=service]").value`); v != "sa" {
			t.Errorf("typed text lost: %q", v)
		}
		tb.noProblems(t, "refreshing page")
	})

	t.Run("accepting needs the token", func(t *testing.T) {
		client := newClient(t)
		post := func(path string, form url.Values, hdr map[string]string) (int, string) {
			t.Helper()
			req, _ := http.NewRequest("POST", base+path, strings.NewReader(form.Encode()))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			for k, v := range hdr {
				req.Header.Set(k, v)
			}
			resp, err := client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			return resp.StatusCode, string(b)
		}
		form := url.Values{"signature": {c.sigLuck}, "who": {"mallory"}, "reason": {"because"}}
		if code, body := post("/accept", form, nil); code != http.StatusUnauthorized {
			t.Errorf("accept without credentials: %d %s, want 401", code, body)
		}
		if code, body := post("/accept", form, map[string]string{"Authorization": "Bearer wrong-token"}); code != http.StatusUnauthorized {
			t.Errorf("accept with a wrong bearer token: %d %s, want 401", code, body)
		}
		if code, _ := post("/login", url.Values{"token": {"wrong"}}, nil); code != http.StatusUnauthorized {
			t.Errorf("login with a wrong token: %d, want 401", code)
		}
		// A session cookie without its CSRF token, or from another origin, is refused.
		if code, body := post("/login", url.Values{"token": {string(uiToken)}}, nil); code != http.StatusOK {
			t.Fatalf("login: %d %s", code, body)
		}
		csrf := csrfOf(t, client, base+"/route?service=saju&route="+url.QueryEscape(chartRoute))
		if code, body := post("/accept", form, nil); code != http.StatusForbidden {
			t.Errorf("accept with the cookie, no CSRF token: %d %s, want 403", code, body)
		}
		withCSRF := url.Values{"signature": {c.sigLuck}, "who": {"mallory"}, "reason": {"because"}, "csrf": {csrf}}
		bad := url.Values{"signature": {c.sigLuck}, "who": {"mallory"}, "reason": {"because"}, "csrf": {csrf + "x"}}
		if code, body := post("/accept", bad, nil); code != http.StatusForbidden {
			t.Errorf("accept with a wrong CSRF token: %d %s, want 403", code, body)
		}
		if code, body := post("/accept", withCSRF, map[string]string{"Origin": "http://evil.example"}); code != http.StatusForbidden {
			t.Errorf("cross-origin accept (Origin): %d %s, want 403", code, body)
		}
		if code, body := post("/accept", withCSRF, map[string]string{"Sec-Fetch-Site": "cross-site"}); code != http.StatusForbidden {
			t.Errorf("cross-site accept (Sec-Fetch-Site): %d %s, want 403", code, body)
		}
		if code, body := post("/accept", url.Values{"signature": {c.sigLuck}, "who": {"bob"}, "csrf": {csrf}}, nil); code != http.StatusBadRequest {
			t.Errorf("accept without a reason: %d %s, want 400", code, body)
		}
		accs, err := st.AcceptedSignatures(testenv.Context(t, time.Minute))
		if err != nil || len(accs) != 0 {
			t.Fatalf("refused requests changed the store: %+v %v", accs, err)
		}
		// The same form with its CSRF token, same origin: accepted.
		if code, body := post("/accept", withCSRF, map[string]string{"Origin": base}); code != http.StatusOK || !strings.Contains(body, "accepted") {
			t.Errorf("accept with cookie and CSRF token: %d %s, want 200 after the redirect", code, body)
		}
		// A bearer request (no cookie, so no CSRF token needed) un-accepts it.
		bearer := &http.Client{Timeout: 30 * time.Second}
		req, _ := http.NewRequest("POST", base+"/unaccept", strings.NewReader(url.Values{"signature": {c.sigLuck}, "who": {"ci-bot"}, "reason": {"revert"}}.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Authorization", "Bearer "+string(uiToken))
		resp, err := bearer.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("bearer un-accept: %d, want 200", resp.StatusCode)
		}
		audit, err := st.AcceptAudit(testenv.Context(t, time.Minute), c.sigLuck, 10)
		if err != nil || len(audit) != 2 || audit[0].Action != "unaccept" || audit[0].By != "ci-bot" || audit[1].By != "mallory" {
			t.Fatalf("audit of %s: %+v %v, want accept by mallory then unaccept by ci-bot", c.sigLuck, audit, err)
		}
	})

	t.Run("an analyst accepts and un-accepts a signature in the browser", func(t *testing.T) {
		tb := newTab(t, browser)
		routeURL := base + "/route?refresh=0&service=saju&route=" + url.QueryEscape(chartRoute)
		tb.navigate(t, routeURL)
		if n := eval[int](t, tb, `document.querySelectorAll("form.accept").length`); n != 0 {
			t.Fatalf("%d accept forms before login", n)
		}
		tb.do(t, chromedp.Click(`#login-link`))
		waitFor(t, tb, "the login form", `!!document.getElementById("token")`)
		tb.do(t, chromedp.SetValue(`#token`, string(uiToken)), chromedp.Click(`#login-submit`))
		waitFor(t, tb, "logged in, back on the route", `(document.getElementById("flash")||{}).textContent === "logged in" && !!document.querySelector("form.accept")`)
		submit := func(sig, who, why string) {
			t.Helper()
			ok := eval[bool](t, tb, `(() => {
				const d = [...document.querySelectorAll("div.ui-sig")].find(d => d.dataset.signature === `+jsString(sig)+`);
				const f = d && d.querySelector("form");
				if (!f) return false;
				f.who.value = `+jsString(who)+`; f.reason.value = `+jsString(why)+`;
				f.querySelector("button").click();
				return true })()`)
			if !ok {
				t.Fatalf("no form for %s", sig)
			}
		}
		submit(c.sigDay, "alice", "the cube changes the day at midnight, on purpose (자시)")
		waitFor(t, tb, "the acceptance", `(document.getElementById("flash")||{}).textContent?.startsWith("accepted ")`)
		// The route now counts it as accepted: open drops by its pairs.
		wantOpen := mismatches - c.chartDay
		got := eval[int](t, tb, `[...document.querySelectorAll("div.ui-sig")].filter(d => d.dataset.signature === `+jsString(c.sigDay)+` && d.querySelector("form.unaccept")).length`)
		if got != 1 {
			t.Errorf("after accepting, %s has no un-accept form (got %d)", c.sigDay, got)
		}
		tb.navigate(t, base+"/?refresh=0")
		if got := cell(t, tb, "saju", chartRoute, "open"); got != strconv.Itoa(wantOpen) {
			t.Errorf("after accepting: open %s, want %d", got, wantOpen)
		}
		if got := cell(t, tb, "saju", chartRoute, "accepted"); got != strconv.Itoa(c.chartDay) {
			t.Errorf("after accepting: accepted %s, want %d", got, c.chartDay)
		}
		// The gate, also on a filtered view, judges by the same acceptances.
		tb.navigate(t, base+"/?refresh=0&service=saju&route="+url.QueryEscape(chartRoute))
		measured := eval[string](t, tb, `document.querySelector("tr[data-criterion=open_mismatch][data-subject="+JSON.stringify(`+jsString(chartRoute)+`)+"]")?.textContent ?? "missing"`)
		if !strings.Contains(measured, fmt.Sprintf("%d open of", wantOpen)) {
			t.Errorf("gate on a filtered view: %q, want %d open", measured, wantOpen)
		}
		tb.navigate(t, routeURL)
		shot := tb.screenshot(t, "ui-route-accepted")
		if os.Getenv("SHADOWCUBE_UPDATE_DOCS") == "1" {
			// The README's picture of serve: this page, as an analyst sees it.
			if err := os.WriteFile(filepath.Join("..", "..", "docs", "serve.png"), shot, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		// The audit table and the YAML export hold it.
		ctx := testenv.Context(t, time.Minute)
		audit, err := st.AcceptAudit(ctx, c.sigDay, 10)
		if err != nil || len(audit) != 1 || audit[0].Action != "accept" || audit[0].By != "alice" || !strings.Contains(audit[0].Reason, "midnight") {
			t.Fatalf("audit of %s: %+v %v", c.sigDay, audit, err)
		}
		acc, err := comparator.LoadAccepted(out)
		if err != nil {
			t.Fatalf("the export does not load as compare reads it: %v", err)
		}
		if e, ok := acc.Match("saju", chartRoute, c.sigDay, nil); !ok || !strings.Contains(e.Reason, "midnight") {
			t.Fatalf("export %s does not accept %s", out, c.sigDay)
		}
		// The audit page lists it.
		tb.navigate(t, base+"/audit")
		if !eval[bool](t, tb, `document.getElementById("audit").textContent.includes("alice")`) {
			t.Error("the audit page does not show alice's acceptance")
		}
		tb.screenshot(t, "ui-audit")
		// Un-accept from the signature page.
		tb.navigate(t, base+"/signature?refresh=0&signature="+url.QueryEscape(c.sigDay))
		ok := eval[bool](t, tb, `(() => { const f = document.querySelector("form.unaccept"); if (!f) return false;
			f.who.value = "bob"; f.reason.value = "the product owner wants 23:30"; f.querySelector("button").click(); return true })()`)
		if !ok {
			t.Fatal("no un-accept form on the signature page")
		}
		waitFor(t, tb, "the un-acceptance", `(document.getElementById("flash")||{}).textContent?.startsWith("unaccepted ")`)
		if state := eval[string](t, tb, `document.getElementById("sig-state").textContent`); state != "open" {
			t.Errorf("after un-accepting, the signature is %q", state)
		}
		acc, err = comparator.LoadAccepted(out)
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := acc.Match("saju", chartRoute, c.sigDay, nil); ok {
			t.Error("the export still accepts the un-accepted signature")
		}
		tb.screenshot(t, "ui-signature-unaccepted")
		tb.noProblems(t, "accept flow")
	})

	t.Run("healthz", func(t *testing.T) {
		resp, err := http.Get(base + "/healthz")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || string(b) != "ok\n" {
			t.Fatalf("healthz: %d %q", resp.StatusCode, b)
		}
	})
}

// TestWebUIReadOnlyWithoutToken: without SHADOWCUBE_UI_TOKEN the pages
// show no accept button and every change is refused with 403.
func TestWebUIReadOnlyWithoutToken(t *testing.T) {
	st, c := seed(t)
	browser := newBrowser(t)
	srv := startUI(t, st, Config{})
	base := "http://" + srv.Addr()
	tb := newTab(t, browser)
	tb.navigate(t, base+"/route?refresh=0&service=saju&route="+url.QueryEscape(chartRoute))
	// Positive progress first: the signatures are there.
	if n := eval[int](t, tb, `document.querySelectorAll("div.ui-sig").length`); n < 3 {
		t.Fatalf("%d signatures shown, want at least 3", n)
	}
	if n := eval[int](t, tb, `document.querySelectorAll("form.accept, form.unaccept, #login-link").length`); n != 0 {
		t.Errorf("read-only UI shows %d accept forms or login links", n)
	}
	if s := eval[string](t, tb, `document.getElementById("auth-state").textContent`); !strings.Contains(s, "read-only") {
		t.Errorf("auth state %q, want read-only", s)
	}
	tb.noProblems(t, "read-only route page")
	for _, path := range []string{"/accept", "/unaccept", "/login"} {
		for _, hdr := range []string{"", "Bearer anything"} {
			req, _ := http.NewRequest("POST", base+path, strings.NewReader(url.Values{"signature": {c.sigDay}, "who": {"x"}, "reason": {"y"}, "token": {"t"}}.Encode()))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			if hdr != "" {
				req.Header.Set("Authorization", hdr)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusForbidden {
				t.Errorf("POST %s (%q) on a read-only UI: %d, want 403", path, hdr, resp.StatusCode)
			}
		}
	}
	if accs, err := st.AcceptedSignatures(testenv.Context(t, time.Minute)); err != nil || len(accs) != 0 {
		t.Fatalf("read-only UI changed the store: %+v %v", accs, err)
	}
}

// TestReportFileInBrowser opens the report file (analyst.WriteHTML) from
// disk: no console error, no request but the file itself (self-contained),
// the same numbers as the figures.
func TestReportFileInBrowser(t *testing.T) {
	st, c := seed(t)
	browser := newBrowser(t)
	ctx := testenv.Context(t, time.Minute)
	if err := st.Accept(ctx, comparator.Acceptance{Signature: c.sigLuck, By: "alice", Reason: "luck start age: table convention, expected"}, ""); err != nil {
		t.Fatal(err)
	}
	srv := startUI(t, st, Config{})
	acc, err := srv.accepted(ctx)
	if err != nil {
		t.Fatal(err)
	}
	fig, err := analyst.Build(ctx, st, analyst.Query{}, analyst.Options{Accepted: acc, Examples: 2})
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "report.html")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := analyst.WriteHTML(f, fig); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	tb := newTab(t, browser)
	fileURL := "file://" + path
	tb.navigate(t, fileURL)
	if got := eval[string](t, tb, `document.querySelector("tr[data-service=saju][data-route="+JSON.stringify(`+jsString(chartRoute)+`)+"] [data-k=pairs]")?.dataset.v ?? "missing"`); got != strconv.Itoa(c.chartPairs()) {
		t.Errorf("report: %s pairs %s, want %d", chartRoute, got, c.chartPairs())
	}
	if !eval[bool](t, tb, `document.body.textContent.includes(`+jsString(pwned)+`)`) || eval[string](t, tb, `typeof window.__pwned`) != "undefined" {
		t.Error("report: the <script> body is not shown as text, or it ran")
	}
	if !eval[bool](t, tb, `document.body.textContent.includes("비교 리포트") && document.body.textContent.includes("신축")`) {
		t.Error("report: Korean text missing")
	}
	png := tb.screenshot(t, "report")
	if len(png) == 0 {
		t.Fatal("empty screenshot")
	}
	for _, r := range tb.requestsSeen() {
		if r != fileURL {
			t.Errorf("report made a request besides its own file: %s", r)
		}
	}
	tb.noProblems(t, "report file")
}

func newClient(t testing.TB) *http.Client {
	t.Helper()
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	return &http.Client{Jar: jar, Timeout: 30 * time.Second}
}

var csrfField = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// csrfOf reads the CSRF token from a page's forms.
func csrfOf(t testing.TB, client *http.Client, u string) string {
	t.Helper()
	resp, err := client.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	m := csrfField.FindSubmatch(b)
	if m == nil {
		t.Fatalf("no CSRF token on %s (status %d)", u, resp.StatusCode)
	}
	return string(m[1])
}
