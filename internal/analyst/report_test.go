package analyst

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/html"

	"github.com/heal7/shadowcube/comparator"
)

func attr(n *html.Node, k string) (string, bool) {
	for _, a := range n.Attr {
		if a.Key == k {
			return a.Val, true
		}
	}
	return "", false
}

// walk calls fn for every element below n.
func walk(n *html.Node, fn func(*html.Node)) {
	for c := n.FirstChild; c != nil; c = c.NextSibling {
		if c.Type == html.ElementNode {
			fn(c)
		}
		walk(c, fn)
	}
}

// dataValues collects the data-k/data-v pairs below n.
func dataValues(n *html.Node) map[string]string {
	out := map[string]string{}
	walk(n, func(e *html.Node) {
		if k, ok := attr(e, "data-k"); ok {
			v, _ := attr(e, "data-v")
			out[k] = v
		}
	})
	return out
}

func readCSV(t *testing.T, path string) []map[string]string {
	t.Helper()
	fh, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	recs, err := csv.NewReader(fh).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	var out []map[string]string
	for _, r := range recs[1:] {
		m := map[string]string{}
		for i, h := range recs[0] {
			m[h] = r[i]
		}
		out = append(out, m)
	}
	return out
}

func sameNumber(t *testing.T, what, a, b string) {
	t.Helper()
	x, err1 := strconv.ParseFloat(a, 64)
	y, err2 := strconv.ParseFloat(b, 64)
	if err1 != nil || err2 != nil || x != y {
		t.Errorf("%s: %q vs %q", what, a, b)
	}
}

func jsonNumber(v any) string {
	switch x := v.(type) {
	case float64:
		return strconv.FormatFloat(x, 'g', -1, 64)
	case json.Number:
		return x.String()
	}
	return "not a number"
}

// TestExportsAgree: the HTML (its rendered data-v values), the CSV files and
// the JSON document carry the same numbers for every route figure, cause,
// path and the gate's verdict.
func TestExportsAgree(t *testing.T) {
	st := openStore(t)
	now := time.Now().UTC()
	seed(t, st, seedSpec{service: "saju", route: "/api/saju/chart", kind: comparator.KindSaju, at: now, hours: 4, pairs: 700,
		open: 23, accepted: 11, errors: 7, noise: 5, stale: 9})
	seed(t, st, seedSpec{service: "ai", route: "/api/ai/analyze", kind: comparator.KindAI, at: now, hours: 2, pairs: 300, aiLegacyOK: 270, aiCubeOK: 240})
	f, err := Build(ctxT(t), st, Query{Since: now.Add(-24 * time.Hour)}, Options{Criteria: DefaultCriteria(), Now: fixedNow(now)})
	if err != nil {
		t.Fatal(err)
	}
	if len(f.Services) != 2 || f.Services[1].Routes[0].Stats.Pairs != 700 || f.Services[1].Routes[0].Stats.Open != 23 {
		t.Fatalf("figures: %+v", f.Services)
	}
	var hb, jb bytes.Buffer
	if err := WriteHTML(&hb, f); err != nil {
		t.Fatal(err)
	}
	if err := WriteJSON(&jb, f); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := WriteCSV(dir, f); err != nil {
		t.Fatal(err)
	}
	doc, err := html.Parse(&hb)
	if err != nil {
		t.Fatal(err)
	}
	var js map[string]any
	if err := json.Unmarshal(jb.Bytes(), &js); err != nil {
		t.Fatal(err)
	}
	// JSON: route → stats object.
	jsonStats := map[string]map[string]any{}
	jsonRoutes := map[string]map[string]any{}
	for _, s := range js["services"].([]any) {
		for _, r := range s.(map[string]any)["routes"].([]any) {
			rm := r.(map[string]any)
			jsonStats[rm["route"].(string)] = rm["stats"].(map[string]any)
			jsonRoutes[rm["route"].(string)] = rm
		}
	}
	csvRoutes := map[string]map[string]string{}
	for _, r := range readCSV(t, filepath.Join(dir, "routes.csv")) {
		csvRoutes[r["route"]] = r
	}
	// JSON paths of each data-k of the routes table.
	jsonPath := map[string][]string{
		"pairs": {"pairs"}, "match_rate": {"match_rate"}, "match_ci_lo": {"match_ci", "lo"}, "match_ci_hi": {"match_ci", "hi"},
		"mismatches": {"mismatches"}, "accepted": {"accepted"}, "open": {"open"}, "open_rate": {"open_rate"},
		"open_ci_lo": {"open_ci", "lo"}, "open_ci_hi": {"open_ci", "hi"}, "noise_only": {"noise_only"}, "moved_on": {"moved_on"},
		"cube_errors": {"cube_errors"}, "error_rate": {"error_rate"}, "stale": {"stale"}, "stale_share": {"stale_share"}, "skipped": {"skipped"},
		"legacy_p50_ms": {"legacy_latency", "p50_ms"}, "legacy_p95_ms": {"legacy_latency", "p95_ms"},
		"cube_p50_ms": {"cube_latency", "p50_ms"}, "cube_p95_ms": {"cube_latency", "p95_ms"},
	}
	rows := 0
	walk(doc, func(n *html.Node) {
		route, ok := attr(n, "data-route")
		if !ok || n.Data != "tr" {
			return
		}
		rows++
		vals := dataValues(n)
		if len(vals) != len(jsonPath) {
			t.Errorf("route %s: HTML row has %d figures, want %d", route, len(vals), len(jsonPath))
		}
		for k, p := range jsonPath {
			var v any = jsonStats[route]
			for _, step := range p {
				v = v.(map[string]any)[step]
			}
			sameNumber(t, route+" "+k+" html/json", vals[k], jsonNumber(v))
			sameNumber(t, route+" "+k+" html/csv", vals[k], csvRoutes[route][k])
		}
	})
	if rows != 2 {
		t.Fatalf("HTML routes table rows: %d, want 2", rows)
	}
	// Causes and paths of the saju route.
	var sajuSection *html.Node
	walk(doc, func(n *html.Node) {
		if r, ok := attr(n, "data-route"); ok && n.Data == "section" && r == "/api/saju/chart" {
			sajuSection = n
		}
	})
	if sajuSection == nil {
		t.Fatal("no section of the saju route")
	}
	htmlCauses, htmlPaths := map[string]map[string]string{}, map[string]map[string]string{}
	walk(sajuSection, func(n *html.Node) {
		if c, ok := attr(n, "data-cause"); ok {
			htmlCauses[c] = dataValues(n)
		}
		if p, ok := attr(n, "data-path"); ok && n.Data == "tr" {
			htmlPaths[p] = dataValues(n)
		}
	})
	csvCauses := readCSV(t, filepath.Join(dir, "causes.csv"))
	jsonCauses := jsonRoutes["/api/saju/chart"]["causes"].([]any)
	if len(htmlCauses) != 2 || len(csvCauses) != 2 || len(jsonCauses) != 2 {
		t.Fatalf("causes: html %v csv %v json %v; want zi-hour and unexplained", htmlCauses, csvCauses, jsonCauses)
	}
	for i, c := range csvCauses {
		jc := jsonCauses[i].(map[string]any)
		h := htmlCauses[c["cause"]]
		if jc["cause"] != c["cause"] || h == nil {
			t.Fatalf("cause %d: csv %v json %v html %v", i, c, jc, h)
		}
		for _, k := range []string{"count", "open", "share"} {
			sameNumber(t, c["cause"]+" "+k+" html/csv", h[k], c[k])
			sameNumber(t, c["cause"]+" "+k+" html/json", h[k], jsonNumber(jc[k]))
		}
	}
	csvPaths := readCSV(t, filepath.Join(dir, "paths.csv"))
	if len(csvPaths) != 3 || len(htmlPaths) != 3 {
		t.Fatalf("paths: csv %v html %v; want 3", csvPaths, htmlPaths)
	}
	for _, p := range csvPaths {
		h := htmlPaths[p["path"]]
		sameNumber(t, p["path"]+" pairs", h["pairs"], p["pairs"])
		sameNumber(t, p["path"]+" share", h["share"], p["share"])
	}
	if p := htmlPaths["$.pillars.day"]; p["pairs"] != "23" {
		t.Errorf("$.pillars.day differs in %s pairs, want the 23 open zi-hour mismatches", p["pairs"])
	}
	// The gate's verdict.
	var htmlVerdicts []string
	walk(doc, func(n *html.Node) {
		if k, _ := attr(n, "data-k"); k == "gate_verdict" {
			v, _ := attr(n, "data-v")
			htmlVerdicts = append(htmlVerdicts, v)
		}
	})
	var csvVerdicts []string
	for _, g := range readCSV(t, filepath.Join(dir, "gate_groups.csv")) {
		if g["group"] == "volume" {
			csvVerdicts = append(csvVerdicts, g["verdict"])
		}
	}
	var jsonVerdicts []string
	for _, v := range js["gate"].(map[string]any)["services"].([]any) {
		jsonVerdicts = append(jsonVerdicts, v.(map[string]any)["verdict"].(string))
	}
	if strings.Join(htmlVerdicts, "|") != strings.Join(jsonVerdicts, "|") || strings.Join(csvVerdicts, "|") != strings.Join(jsonVerdicts, "|") ||
		len(jsonVerdicts) != 2 || jsonVerdicts[0] != "no-go: not enough samples" {
		t.Fatalf("gate verdicts: html %v csv %v json %v", htmlVerdicts, csvVerdicts, jsonVerdicts)
	}
	for _, name := range CSVFiles {
		if _, err := os.Stat(filepath.Join(dir, name)); err != nil {
			t.Errorf("csv export: %v", err)
		}
	}
}

// TestReportEscapesBodies: a request or answer body holding <script> is
// shown as text: the page has no script element at all, and the text is
// there; the page is self-contained (no external reference) and declares
// UTF-8 with a Korean-capable font stack.
func TestReportEscapesBodies(t *testing.T) {
	st := openStore(t)
	now := time.Now().UTC()
	evil := `{"note":"<script>alert('x')</script>","이름":"</pre><img src=x onerror=alert(1)>"}`
	seed(t, st, seedSpec{service: "saju", route: "/api/saju/chart", kind: comparator.KindSaju, at: now, pairs: 20, open: 4, body: evil})
	f, err := Build(ctxT(t), st, Query{}, Options{Now: fixedNow(now), Criteria: DefaultCriteria()})
	if err != nil {
		t.Fatal(err)
	}
	if n := len(f.Services[0].Routes[0].Signatures); n != 1 || len(f.Services[0].Routes[0].Signatures[0].Examples) != 4 {
		t.Fatalf("signatures %+v: want one with 4 examples", f.Services[0].Routes[0].Signatures)
	}
	var b bytes.Buffer
	if err := WriteHTML(&b, f); err != nil {
		t.Fatal(err)
	}
	page := b.String()
	doc, err := html.Parse(strings.NewReader(page))
	if err != nil {
		t.Fatal(err)
	}
	var text strings.Builder
	var collect func(*html.Node)
	collect = func(n *html.Node) {
		if n.Type == html.TextNode {
			text.WriteString(n.Data)
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			collect(c)
		}
	}
	collect(doc)
	walk(doc, func(n *html.Node) {
		switch n.Data {
		case "script", "img", "link", "iframe":
			t.Errorf("page has a <%s> element: a body was not escaped", n.Data)
		}
		for _, a := range n.Attr {
			if a.Key == "src" || a.Key == "href" || strings.HasPrefix(a.Key, "on") {
				t.Errorf("<%s %s=%q>: reference or handler in the page", n.Data, a.Key, a.Val)
			}
		}
	})
	if !strings.Contains(text.String(), `"<script>alert('x')</script>"`) || !strings.Contains(text.String(), "<img src=x onerror=alert(1)>") {
		t.Fatal("the bodies' text is not shown")
	}
	// The differing paths are marked on both sides.
	marked := 0
	walk(doc, func(n *html.Node) {
		if c, _ := attr(n, "class"); c == "d" {
			marked++
		}
	})
	if marked == 0 {
		t.Error("no differing line marked in the side-by-side view")
	}
	for _, want := range []string{`<meta charset="utf-8">`, `lang="ko"`, `"Noto Sans KR"`, "비교 리포트", "<svg"} {
		if !strings.Contains(page, want) {
			t.Errorf("page lacks %s", want)
		}
	}
}

// TestBodyLines: pretty-printed JSON lines carry the comparator's paths and
// the differing subtrees are marked.
func TestBodyLines(t *testing.T) {
	lines := bodyLines([]byte(`{"pillars":{"day":"庚子","year":"戊辰"},"luck":[{"p":"乙卯"},{"p":"丙辰"}],"a b":1}`), []string{"$.pillars.day", "$.luck[1].p"})
	var marked []string
	for _, l := range lines {
		if l.Diff {
			marked = append(marked, l.Path)
		}
	}
	if strings.Join(marked, " ") != "$.luck[1].p $.pillars.day" {
		t.Fatalf("marked %v; lines %+v", marked, lines)
	}
	if lines[1].Path != "$['a b']" {
		t.Fatalf("quoted key path %q", lines[1].Path)
	}
	whole := bodyLines([]byte("not json\nline 2"), []string{"body"})
	if len(whole) != 2 || !whole[0].Diff || !whole[1].Diff {
		t.Fatalf("non-JSON body: %+v", whole)
	}
}

// TestQueryValues: a query survives its URL form; bad parameters are
// errors naming them.
func TestQueryValues(t *testing.T) {
	now := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	q := Query{Since: now.Add(-7 * 24 * time.Hour), Until: now, Service: "saju", Route: "/api/saju/chart", Cause: "zi-hour",
		Signature: "saju:/api/saju/chart:$.pillars.day:zi-hour", Verdict: "mismatch"}
	got, err := ParseQuery(q.Values(), now)
	if err != nil || got != q {
		t.Fatalf("round trip: %+v, %v; want %+v", got, err, q)
	}
	got, err = ParseQuery(map[string][]string{"since": {"7d"}, "until": {"2h"}}, now)
	if err != nil || !got.Since.Equal(q.Since) || !got.Until.Equal(now.Add(-2*time.Hour)) {
		t.Fatalf("relative: %+v, %v", got, err)
	}
	for _, bad := range []map[string][]string{{"since": {"yesterday"}}, {"until": {"-3h"}}, {"verdict": {"bad"}}, {"since": {"1h"}, "until": {"2h"}}} {
		if _, err := ParseQuery(bad, now); err == nil {
			t.Errorf("%v: no error", bad)
		}
	}
}
