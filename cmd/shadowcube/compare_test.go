package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/heal7/shadowcube/comparator"
	"github.com/heal7/shadowcube/internal/testenv"
	"github.com/heal7/shadowcube/schemas"
)

// TestCompareNumericSettings: out-of-range numbers are errors naming the
// flag or variable and the range (exit 2), never replaced by defaults;
// `compare summary` checks the AI and noise settings as `compare` does.
func TestCompareNumericSettings(t *testing.T) {
	cases := []struct {
		name string
		env  map[string]string
		args []string
		want string
	}{
		{"batch flag", nil, []string{"compare", "--batch", "-4", "--routes", "x.yaml"}, "--batch -4: must be at least 1"},
		{"batch flag zero", nil, []string{"compare", "--batch", "0", "--routes", "x.yaml"}, "--batch 0: must be at least 1"},
		{"batch env", map[string]string{"SHADOWCUBE_COMPARE_BATCH": "-3"}, []string{"compare", "--routes", "x.yaml"}, `SHADOWCUBE_COMPARE_BATCH="-3": out of range: must be at least 1`},
		{"ai drop", map[string]string{"SHADOWCUBE_COMPARE_AI_MAX_DROP": "-0.1"}, []string{"compare", "--routes", "x.yaml"}, `SHADOWCUBE_COMPARE_AI_MAX_DROP="-0.1": out of range: must be greater than 0 and less than 1`},
		{"summary ai drop", map[string]string{"SHADOWCUBE_COMPARE_AI_MAX_DROP": "1.5"}, []string{"compare", "summary"}, `SHADOWCUBE_COMPARE_AI_MAX_DROP="1.5": out of range: must be greater than 0 and less than 1`},
		{"summary limit", nil, []string{"compare", "summary", "--limit", "-1"}, "--limit -1: must be at least 1"},
		{"repeat cache", map[string]string{"SHADOWCUBE_COMPARE_REPEAT_CACHE": "-5"}, []string{"compare", "--routes", "x.yaml"}, `SHADOWCUBE_COMPARE_REPEAT_CACHE="-5": out of range: must be at least -1`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("SHADOWCUBE_STORE_DATABASE_URL", "postgres://127.0.0.1:1/none")
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			var out, errb bytes.Buffer
			code := run(context.Background(), tc.args, &out, &errb)
			if code != 2 || !strings.Contains(errb.String(), tc.want) {
				t.Fatalf("exit %d, stderr %q; want 2 and %q", code, errb.String(), tc.want)
			}
		})
	}
}

// TestCompareShow: `compare show <id>` prints the stored verdict, method,
// path, operation, causes and diffs of that request; an unknown id exits 1
// naming it.
func TestCompareShow(t *testing.T) {
	url := testenv.Postgres(t).NewDatabase(t)
	ctx := testenv.Context(t, time.Minute)
	store, err := comparator.OpenStore(ctx, comparator.StoreConfig{DatabaseURL: url})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	c, err := comparator.New(comparator.Config{RepeatCache: -1})
	if err != nil {
		t.Fatal(err)
	}
	res := &schemas.ShadowResult{V: schemas.Version, RequestID: "01HX-show-me", Service: "api", Route: "/graphql", Operation: "GetUser",
		Request: schemas.RequestEvent{Method: "POST", Path: "/graphql", CapturedAt: time.Now()},
		Legacy:  schemas.HTTPResponse{Status: 200, Body: []byte(`{"name":"kim"}`)},
		Cube:    &schemas.HTTPResponse{Status: 200, Body: []byte(`{"name":"lee"}`)}, ReplayedAt: time.Now()}
	if _, err := store.Save(ctx, []*comparator.Outcome{c.Compare(res)}); err != nil {
		t.Fatal(err)
	}
	t.Setenv("SHADOWCUBE_STORE_DATABASE_URL", url)
	var out, errb bytes.Buffer
	if code := run(ctx, []string{"compare", "show", "01HX-show-me"}, &out, &errb); code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	for _, want := range []string{"01HX-show-me", "POST /graphql", "operation  GetUser", "verdict    mismatch", "causes     unexplained",
		`diff       $.name changed: legacy "kim", cube "lee"`} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
	out.Reset()
	errb.Reset()
	if code := run(ctx, []string{"compare", "show", "no-such-request"}, &out, &errb); code != 1 || !strings.Contains(errb.String(), `"no-such-request"`) {
		t.Fatalf("unknown id: exit %d, stderr %q", code, errb.String())
	}
}
