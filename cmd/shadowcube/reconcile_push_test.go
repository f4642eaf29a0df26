package main

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"

	"github.com/heal7/shadowcube/internal/testenv"
)

// TestReconcilePushesFigures: with --pushgateway, reconcile pushes each
// target's figures (the alert rules' input, since nothing scrapes a one-shot
// command) grouped by target: a clean run pushes 0 differences, a run after
// the cube drifted pushes the differences it found and exits 1.
func TestReconcilePushesFigures(t *testing.T) {
	pg := testenv.Postgres(t)
	src, dst := pg.NewDatabase(t), pg.NewDatabase(t)
	ctx := testenv.Context(t, 2*time.Minute)
	for _, u := range []string{src, dst} {
		c := testenv.Connect(t, u)
		if _, err := c.Exec(ctx, `CREATE TABLE items (id int PRIMARY KEY, v text); INSERT INTO items SELECT g, 'v' || g FROM generate_series(1, 50) g`); err != nil {
			t.Fatal(err)
		}
	}
	mapping := filepath.Join(t.TempDir(), "mapping.yaml")
	if err := os.WriteFile(mapping, []byte("source: {database_url_env: PUSH_TEST_SRC, slot: s1}\ntargets:\n  - name: cube\n    database_url_env: PUSH_TEST_DST\n    tables:\n      - source: public.items\n        key: [id]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PUSH_TEST_SRC", src)
	t.Setenv("PUSH_TEST_DST", dst)

	type pushed struct {
		method, path string
		families     prometheus.GathererFunc // the pushed families, read with testenv.Metric
	}
	var mu sync.Mutex
	var pushes []pushed
	gw := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		dec := expfmt.NewDecoder(bytes.NewReader(body), expfmt.ResponseFormat(r.Header))
		var fams []*dto.MetricFamily
		for {
			var mf dto.MetricFamily
			if err := dec.Decode(&mf); err != nil {
				break
			}
			fams = append(fams, &mf)
		}
		mu.Lock()
		pushes = append(pushes, pushed{r.Method, r.URL.Path, func() ([]*dto.MetricFamily, error) { return fams, nil }})
		mu.Unlock()
		w.WriteHeader(http.StatusOK)
	}))
	defer gw.Close()

	run1 := func(wantCode int) pushed {
		t.Helper()
		var out, errb bytes.Buffer
		before := time.Now()
		code := run(context.Background(), []string{"reconcile", "--mapping", mapping, "--pushgateway", gw.URL}, &out, &errb)
		if code != wantCode {
			t.Fatalf("reconcile exit %d, want %d; stdout %q stderr %q", code, wantCode, out.String(), errb.String())
		}
		mu.Lock()
		defer mu.Unlock()
		if len(pushes) == 0 {
			t.Fatalf("nothing pushed; stderr %q", errb.String())
		}
		p := pushes[len(pushes)-1]
		pushes = nil
		if p.method != http.MethodPut || p.path != "/metrics/job/shadowcube_reconcile/target/cube" {
			t.Fatalf("pushed %s %s, want PUT to the job's group of target cube", p.method, p.path)
		}
		if at := testenv.Metric(t, p.families, "shadowcube_reconcile_last_run_timestamp_seconds"); at < float64(before.Unix())-1 {
			t.Fatalf("last run time %v is before the run started (%v)", at, before.Unix())
		}
		return p
	}

	p := run1(0)
	if d, n, f := testenv.Metric(t, p.families, "shadowcube_reconcile_differences"), testenv.Metric(t, p.families, "shadowcube_reconcile_tables"), testenv.Metric(t, p.families, "shadowcube_reconcile_failed"); d != 0 || n != 1 || f != 0 {
		t.Fatalf("clean run pushed differences %v, tables %v, failed %v; want 0, 1, 0", d, n, f)
	}

	c := testenv.Connect(t, dst)
	if _, err := c.Exec(ctx, `UPDATE items SET v = 'drift' WHERE id IN (3, 7); DELETE FROM items WHERE id = 9`); err != nil {
		t.Fatal(err)
	}
	p = run1(1)
	if d, f := testenv.Metric(t, p.families, "shadowcube_reconcile_differences"), testenv.Metric(t, p.families, "shadowcube_reconcile_failed"); d != 3 || f != 0 {
		t.Fatalf("run after drift pushed differences %v, failed %v; want 3, 0", d, f)
	}
	if !strings.Contains(p.path, "target/cube") {
		t.Fatalf("path %s", p.path)
	}
}
