package comparator

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/heal7/shadowcube/internal/testenv"
	"github.com/heal7/shadowcube/schemas"
)

// TestStoreShowSkippedMovedOnOperation: a pair keeps its method, path,
// operation key and request id and is found by id (Store.Pairs, what
// `compare show` prints); skipped requests are stored and counted by reason,
// never as failures; a mismatch whose legacy recheck equals the cube's
// answer is moved-on (counted, not failing); operations of one route get
// their own summary rows and signatures.
func TestStoreShowSkippedMovedOnOperation(t *testing.T) {
	store := openStore(t)
	ctx := testenv.Context(t, time.Minute)
	c, err := New(Config{RepeatCache: -1})
	if err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	mk := func(id, op, legacy, cube string) *schemas.ShadowResult {
		r := result("api", "/graphql", `{"query":"{ user(id: 1) { name } }"}`, legacy, cube)
		r.RequestID, r.Operation, r.ReplayedAt = id, op, at
		r.Request.Method, r.Request.Path = "POST", "/graphql"
		return r
	}
	// 1: a real mismatch on operation GetUser.
	mis := c.Compare(mk("req-mis", "GetUser", `{"name":"a"}`, `{"name":"b"}`))
	// 2: the same difference, but legacy asked again answers like the cube.
	mo := mk("req-moved", "GetUser", `{"name":"a"}`, `{"name":"b"}`)
	mo.LegacyRecheck = &schemas.HTTPResponse{Status: 200, Body: []byte(`{"name":"b"}`)}
	moved := c.Compare(mo)
	// 3: a recheck that still differs leaves the mismatch standing.
	st := mk("req-stands", "GetUser", `{"name":"a"}`, `{"name":"b"}`)
	st.LegacyRecheck = &schemas.HTTPResponse{Status: 200, Body: []byte(`{"name":"c"}`)}
	stands := c.Compare(st)
	// 4: a match on another operation of the same route.
	match := c.Compare(mk("req-match", "ListUsers", `{"n":1}`, `{"n":1}`))
	// 5, 6: skipped by policy.
	sk1 := mk("req-write", "CreateUser", `{}`, ``)
	sk1.Cube, sk1.Skipped = nil, "write"
	sk2 := mk("req-401", "", `{}`, ``)
	sk2.Cube, sk2.Skipped = nil, "legacy-unauthorized"
	s1, s2 := c.Compare(sk1), c.Compare(sk2)

	if mis.Verdict != VerdictMismatch || !mis.Failing() || !strings.Contains(mis.Signature, "/graphql op=GetUser") {
		t.Fatalf("mismatch: %+v", mis)
	}
	if moved.Verdict != VerdictMovedOn || moved.Failing() || !slices.Equal(moved.Causes, []string{CauseMovedOn}) || len(moved.Diffs) != 1 {
		t.Fatalf("moved-on: %+v", moved)
	}
	if stands.Verdict != VerdictMismatch || !stands.Failing() {
		t.Fatalf("recheck differing from the cube: %+v", stands)
	}
	if s1.Verdict != VerdictSkipped || s1.Failing() || s1.Skipped != "write" || s2.Skipped != "legacy-unauthorized" {
		t.Fatalf("skipped: %+v %+v", s1, s2)
	}
	if n, err := store.Save(ctx, []*Outcome{mis, moved, stands, match, s1, s2}); err != nil || n != 6 {
		t.Fatalf("save: %d %v", n, err)
	}
	m, err := NewMetrics(prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range []*Outcome{mis, moved, stands, match, s1, s2} {
		m.Observe(o)
	}
	for _, tc := range []struct {
		c    prometheus.Collector
		want float64
	}{
		{m.skipped.WithLabelValues("api", "/graphql", "write"), 1},
		{m.skipped.WithLabelValues("api", "/graphql", "legacy-unauthorized"), 1},
		{m.compared.WithLabelValues("api", "/graphql", "moved-on"), 1},
		{m.compared.WithLabelValues("api", "/graphql", "mismatch"), 2},
		{m.compared.WithLabelValues("api", "/graphql", "match"), 1},
		{m.matchRatio.WithLabelValues("api", "/graphql"), 0.5}, // match + moved-on of 4 compared; skipped not counted
	} {
		if got := testutil.ToFloat64(tc.c); got != tc.want {
			t.Errorf("metric %v = %v, want %v", tc.c, got, tc.want)
		}
	}
	if got := testutil.CollectAndCount(m.compared); got != 3 {
		t.Errorf("compared series %d, want 3 (no skipped verdict)", got)
	}

	got, err := store.Pairs(ctx, "req-mis")
	if err != nil || len(got) != 1 {
		t.Fatalf("pairs: %+v %v", got, err)
	}
	p := got[0]
	if p.Method != "POST" || p.Path != "/graphql" || p.Operation != "GetUser" || p.Verdict != "mismatch" ||
		!slices.Equal(p.Causes, []string{CauseUnexplained}) {
		t.Fatalf("stored pair %+v", p)
	}
	var diffs []schemas.Diff
	if err := json.Unmarshal(p.Diffs, &diffs); err != nil || len(diffs) != 1 || diffs[0].Path != "$.name" ||
		string(diffs[0].Legacy) != `"a"` || string(diffs[0].Cube) != `"b"` {
		t.Fatalf("stored diffs %s: %v", p.Diffs, err)
	}
	if none, err := store.Pairs(ctx, "no-such-id"); err != nil || len(none) != 0 {
		t.Fatalf("unknown id: %+v %v", none, err)
	}

	sum, err := store.Summary(ctx, 10, AIConfig{}, NoiseConfig{})
	if err != nil {
		t.Fatal(err)
	}
	type row struct {
		op                                           string
		pairs, matches, mismatches, movedOn, skipped int64
	}
	var rows []row
	for _, r := range sum.Routes {
		rows = append(rows, row{r.Operation, r.Pairs, r.Matches, r.Mismatches, r.MovedOn, 0})
	}
	want := []row{{"GetUser", 3, 0, 2, 1, 0}, {"ListUsers", 1, 1, 0, 0, 0}}
	if !slices.Equal(rows, want) {
		t.Fatalf("summary rows %+v, want %+v", rows, want)
	}
	wantSkipped := []SkipCount{{"api", "/graphql", "legacy-unauthorized", 1}, {"api", "/graphql", "write", 1}}
	if !slices.Equal(sum.Skipped, wantSkipped) {
		t.Fatalf("skipped %+v, want %+v", sum.Skipped, wantSkipped)
	}
	if sum.Failing() != 2 {
		t.Fatalf("failing %d, want 2 (moved-on and skipped are not failures)", sum.Failing())
	}
	text := sum.String()
	for _, s := range []string{"api /graphql op=GetUser", "MOVED-ON", "SKIPPED-REASON", "legacy-unauthorized"} {
		if !strings.Contains(text, s) {
			t.Errorf("summary text lacks %q:\n%s", s, text)
		}
	}
}
