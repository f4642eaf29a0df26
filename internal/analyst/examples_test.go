package analyst

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/heal7/shadowcube/comparator"
	"github.com/heal7/shadowcube/schemas"
)

// TestExamplesKeepAnswers: an example keeps the request (method, path,
// redacted body) and both answers (status, selected headers, bodies capped
// at 256 KiB, marked truncated); a signature keeps at most
// StoreConfig.Examples; a redelivered pair adds none.
func TestExamplesKeepAnswers(t *testing.T) {
	st := openStore(t)
	ctx := ctxT(t)
	now := time.Now().UTC()
	big := `{"text":"` + strings.Repeat("가", 100_000) + `"}` // 300 KB
	var outs []*comparator.Outcome
	var answers []*schemas.ShadowResult
	for i := range 7 {
		o := &comparator.Outcome{RequestID: fmt.Sprintf("ex-%d", i), Service: "docs", Route: "/api/doc", Kind: "json",
			Verdict: comparator.VerdictMismatch, Severity: schemas.SeverityMajor, Causes: []string{comparator.CauseUnexplained},
			Diffs: []schemas.Diff{{Path: "$.text", Kind: schemas.DiffChanged}}, ReplayedAt: now, ComparedAt: now,
			LegacyStatus: 200, CubeStatus: 201}
		o.Signature = comparator.Signature("docs", "/api/doc", []string{"$.text"}, o.Causes)
		res := &schemas.ShadowResult{RequestID: o.RequestID, Service: "docs", Route: "/api/doc",
			Request: schemas.RequestEvent{Method: "POST", Path: "/api/doc/7", Body: []byte("user=kim&password=hunter2"),
				Headers: http.Header{"Content-Type": {"application/x-www-form-urlencoded"}}},
			Legacy: schemas.HTTPResponse{Status: 200, Body: []byte(`{"text":"a"}`),
				Headers: http.Header{"Content-Type": {"application/json"}, "Set-Cookie": {"sid=secret"}}},
			Cube: &schemas.HTTPResponse{Status: 201, Body: []byte(big), Headers: http.Header{"Content-Type": {"application/json"}, "Etag": {`"v2"`}}}}
		outs, answers = append(outs, o), append(answers, res)
	}
	if n, err := st.SaveWithAnswers(ctx, outs, answers); err != nil || n != 7 {
		t.Fatalf("save: %d, %v", n, err)
	}
	if n, err := st.SaveWithAnswers(ctx, outs[:1], answers[:1]); err != nil || n != 0 {
		t.Fatalf("redelivery: %d, %v", n, err)
	}
	f, err := Build(ctx, st, Query{Service: "docs"}, Options{Now: fixedNow(now)})
	if err != nil {
		t.Fatal(err)
	}
	sig := f.Services[0].Routes[0].Signatures[0]
	if sig.Count != 7 || len(sig.Examples) != comparator.DefaultExamples {
		t.Fatalf("signature: %d pairs, %d examples; want 7 and %d", sig.Count, len(sig.Examples), comparator.DefaultExamples)
	}
	e := sig.Examples[0]
	if e.Method != "POST" || e.Path != "/api/doc/7" || strings.Contains(e.Request, "hunter2") || !strings.Contains(e.Request, "user=kim") {
		t.Errorf("request: %s %s %q (the password must be redacted)", e.Method, e.Path, e.Request)
	}
	if e.Legacy.Status != 200 || e.Legacy.Headers["Content-Type"][0] != "application/json" || e.Legacy.Headers["Set-Cookie"] != nil {
		t.Errorf("legacy answer: %d %v (Set-Cookie must not be kept)", e.Legacy.Status, e.Legacy.Headers)
	}
	if e.Cube.Status != 201 || e.Cube.Headers["Etag"][0] != `"v2"` || !e.Cube.Truncated || len(e.Cube.Body) > comparator.ExampleBodyCap {
		t.Errorf("cube answer: %d %v truncated=%v, %d bytes (cap %d)", e.Cube.Status, e.Cube.Headers, e.Cube.Truncated, len(e.Cube.Body), comparator.ExampleBodyCap)
	}
	if !strings.HasPrefix(e.Cube.Body, `{"text":"가가`) {
		t.Errorf("cut cube body not shown as text: %.40q", e.Cube.Body)
	}
	if len(e.DiffPaths) != 1 || e.DiffPaths[0] != "$.text" {
		t.Errorf("diff paths %v", e.DiffPaths)
	}
}
