package demo

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/heal7/shadowcube/internal/testenv"
)

// TestGeneratorMix checks the realistic mix and the edge-case kinds.
func TestGeneratorMix(t *testing.T) {
	cfg := DefaultGenConfig()
	cfg.EdgeShare = 0.4
	g, err := NewGenerator(cfg)
	if err != nil {
		t.Fatal(err)
	}
	n := 4000
	kinds := map[string]int{}
	lunar, unknown, leap := 0, 0, 0
	users := map[string]int{}
	tt := NewTermTable()
	for i := 0; i < n; i++ {
		gen := g.Next()
		r := gen.Request
		kinds[gen.Kind]++
		users[r.UserID]++
		b, err := r.ParseBirth()
		if err != nil {
			t.Fatalf("generated invalid request %+v: %v", r, err)
		}
		if r.Calendar == "lunar" {
			lunar++
			if r.LeapMonth {
				leap++
			}
		}
		if !b.HourKnown {
			unknown++
		}
		sd, _ := solarDate(b)
		wall := time.Date(sd.Year(), sd.Month(), sd.Day(), b.Hour, b.Minute, 0, 0, time.UTC)
		switch gen.Kind {
		case KindRealistic:
			if y := sd.Year(); y < 1930 || y > 2011 {
				t.Errorf("realistic birth in %d", y)
			}
		case KindJie:
			// NearJie reads the wall clock as UTC+9; the generator used the
			// Asia/Seoul wall clock (up to 1 h 30 min apart in 1948–61 and 1987–88).
			if !tt.NearJie(wall, 4*time.Hour+31*time.Minute) {
				t.Errorf("edge-jie birth %v is not near a jie term", wall)
			}
		case KindZi:
			if b.Hour != 23 && b.Hour != 0 {
				t.Errorf("edge-zi birth at %02d:%02d", b.Hour, b.Minute)
			}
		case KindKST830:
			if y := sd.Year(); y < 1954 || y > 1961 {
				t.Errorf("edge-1954-1961 birth in %d", y)
			}
		case KindDST1987:
			if y := sd.Year(); y < 1987 || y > 1988 {
				t.Errorf("edge-1987-1988 birth in %d", y)
			}
		}
	}
	real := kinds[KindRealistic]
	if real < n*55/100 || real > n*65/100 {
		t.Errorf("realistic share %d of %d, want ~60%%", real, n)
	}
	for _, k := range []string{KindJie, KindZi, KindKST830, KindDST1987} {
		if kinds[k] < n/15 {
			t.Errorf("kind %s: %d of %d", k, kinds[k], n)
		}
	}
	if lunar < real*7/100 || lunar > real*13/100 {
		t.Errorf("lunar %d of %d realistic, want ~10%%", lunar, real)
	}
	if unknown < real*3/100 || unknown > real*7/100 {
		t.Errorf("unknown hour %d of %d realistic, want ~5%%", unknown, real)
	}
	if len(users) < n/4 || !strings.HasPrefix(g.Next().Request.UserID, "u-") {
		t.Errorf("%d distinct users in %d requests: not a realistic population", len(users), n)
	}
	t.Logf("kinds %v, lunar %d (leap %d), unknown hour %d, %d users", kinds, lunar, leap, unknown, len(users))
	// Same seed, same sequence.
	a, _ := NewGenerator(cfg)
	b, _ := NewGenerator(cfg)
	for i := 0; i < 50; i++ {
		if x, y := a.Next(), b.Next(); x.Request.BirthDate != y.Request.BirthDate || x.Request.UserID != y.Request.UserID {
			t.Fatalf("generator not deterministic at %d", i)
		}
	}
}

// TestRunLoad drives real HTTP servers (legacy saju + legacy AI) at a
// bounded rate and checks what arrived and the summary.
func TestRunLoad(t *testing.T) {
	defer testenv.VerifyNone(t, goleak.IgnoreCurrent()) // RunLoad's workers all end
	saju, err := NewLegacySaju(SajuConfig{})
	if err != nil {
		t.Fatal(err)
	}
	ai, err := NewLegacyAI(AIConfig{ErrorRate: DefaultLegacyAIErrorRate})
	if err != nil {
		t.Fatal(err)
	}
	var seen struct {
		sync.Mutex
		users, truth, shadow int
	}
	wrap := func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			seen.Lock()
			if strings.HasPrefix(r.Header.Get(HeaderUserID), "u-") {
				seen.users++
			}
			if r.Header.Get(HeaderTruthLabel) != "" {
				seen.truth++
			}
			if r.Header.Get(HeaderShadow) == "1" {
				seen.shadow++
			}
			seen.Unlock()
			h.ServeHTTP(w, r) // concurrently: the race detector watches lunar-go and the handlers
		})
	}
	sajuSrv := httptest.NewServer(wrap(saju))
	defer sajuSrv.Close()
	aiSrv := httptest.NewServer(wrap(ai))
	defer aiSrv.Close()
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	gen := DefaultGenConfig()
	gen.EdgeShare = 0.2
	start := time.Now()
	sum, err := RunLoad(context.Background(), LoadConfig{SajuURL: sajuSrv.URL, AIURL: aiSrv.URL, Rate: 200, Count: 100, Concurrency: 4, Gen: gen, DryRun: true, Client: client})
	if err != nil {
		t.Fatal(err)
	}
	if el := time.Since(start); el < 450*time.Millisecond {
		t.Errorf("100 births at 200/s took %s, want ~0.5 s", el)
	}
	if sum.Births != 100 || sum.Routes["/api/saju/chart"].Status[200] != 100 || sum.Routes["/api/ai/analyze"].Status[200] != 100 {
		t.Errorf("summary %+v %+v %+v", sum, sum.Routes["/api/saju/chart"], sum.Routes["/api/ai/analyze"])
	}
	if seen.users != 200 || seen.truth != 100 || seen.shadow != 200 {
		t.Errorf("headers seen: user ids %d, truth labels %d, dry-run %d; want 200, 100, 200", seen.users, seen.truth, seen.shadow)
	}
	if sum.AICorrect < 90 {
		t.Errorf("legacy AI right on %d of 100", sum.AICorrect)
	}
	var out bytes.Buffer
	sum.Print(&out)
	for _, want := range []string{"loadgen: 100 births", "kind realistic", "POST /api/saju/chart", "sent 100: 100×200", "AI truth labels"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("summary lacks %q:\n%s", want, out.String())
		}
	}
	t.Logf("\n%s", out.String())

	// Duration-bounded run against a dead target: counted, not fatal.
	sum, err = RunLoad(context.Background(), LoadConfig{SajuURL: "http://127.0.0.1:1", Duration: 200 * time.Millisecond, Rate: 50, Gen: gen, Client: client})
	if err != nil {
		t.Fatal(err)
	}
	if rs := sum.Routes["/api/saju/chart"]; rs == nil || rs.Transport == 0 || rs.Transport != rs.Sent || sum.FirstError == "" {
		t.Errorf("dead target: %+v", sum)
	}
	if _, err := RunLoad(context.Background(), LoadConfig{SajuURL: sajuSrv.URL, Gen: gen}); err == nil {
		t.Errorf("a run without duration or count was accepted")
	}
}
