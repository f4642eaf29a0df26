package demo

import (
	"encoding/json"
	"math"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestTruthLabel(t *testing.T) {
	cases := []struct {
		p    [4]string
		want string
	}{
		// 戊辰 甲寅 庚子 戊子: earth 3 (戊 辰 戊), wood 2, water 2, metal 1.
		{[4]string{"戊辰", "甲寅", "庚子", "戊子"}, "earth"},
		// 甲寅 丙寅 甲子 丙寅: wood 5.
		{[4]string{"甲寅", "丙寅", "甲子", "丙寅"}, "wood"},
		// Tie earth 3 (辰 戊 戌) / water 3 (子 壬 子): the day master 壬 (water) wins.
		{[4]string{"甲辰", "戊子", "壬子", "庚戌"}, "water"},
		// Tie metal 2 / water 2 / earth 2 / wood 1 / fire 1 -> day master 庚 metal.
		{[4]string{"壬辰", "丁未", "庚子", "甲申"}, "metal"},
		// Unknown hour: six characters, 丙午 丙午 丙午 = fire 6.
		{[4]string{"丙午", "甲午", "丙午", ""}, "fire"},
	}
	for _, c := range cases {
		ch, err := ChartFromPillars(c.p[0], c.p[1], c.p[2], c.p[3])
		if err != nil {
			t.Fatal(err)
		}
		if got := TruthLabel(ch); got != c.want {
			t.Errorf("TruthLabel(%v) = %s, want %s (counts %v)", c.p, got, c.want, ch.Elements())
		}
		if p := (Model{}).Predict(ch); p.Label != c.want || p.Confidence < 0.5 || p.Confidence > 1 {
			t.Errorf("perfect model on %v = %+v", c.p, p)
		}
	}
}

// TestAIAccuracyGap measures the legacy and cube models against the truth
// label on charts of 5000 generated births: the accuracy drop equals the
// configured difference of error rates (±1 pp), for a 2 pp and an 8 pp drop.
func TestAIAccuracyGap(t *testing.T) {
	n := 5000
	if testing.Short() {
		n = 1000
	}
	g, err := NewGenerator(DefaultGenConfig())
	if err != nil {
		t.Fatal(err)
	}
	var charts []Chart
	for _, req := range sortedRequests(g, n) {
		b, err := req.ParseBirth()
		if err != nil {
			t.Fatal(err)
		}
		ch, err := Compute(b, LegacyConventions)
		if err != nil {
			t.Fatal(err)
		}
		charts = append(charts, ch)
	}
	acc := func(m Model) float64 {
		ok := 0
		for _, ch := range charts {
			if m.Predict(ch).Label == TruthLabel(ch) {
				ok++
			}
		}
		return float64(ok) / float64(len(charts))
	}
	legacy := acc(Model{ErrorRate: DefaultLegacyAIErrorRate})
	for _, cubeRate := range []float64{DefaultAICubeErrorRate, 0.11} {
		cube := acc(Model{ErrorRate: cubeRate})
		drop := 100 * (legacy - cube)
		want := 100 * (cubeRate - DefaultLegacyAIErrorRate)
		t.Logf("legacy accuracy %.2f%%, cube (error rate %.2f) %.2f%%: drop %.2f pp (configured %.0f pp)", 100*legacy, cubeRate, 100*cube, drop, want)
		if math.Abs(drop-want) > 1 {
			t.Errorf("drop %.2f pp, configured %.0f pp", drop, want)
		}
	}
	if math.Abs(100*(1-legacy)-100*DefaultLegacyAIErrorRate) > 1 {
		t.Errorf("legacy accuracy %.2f%%, want about %.0f%%", 100*legacy, 100*(1-DefaultLegacyAIErrorRate))
	}
}

func TestAIService(t *testing.T) {
	legacy, err := NewLegacyAI(AIConfig{ErrorRate: DefaultLegacyAIErrorRate})
	if err != nil {
		t.Fatal(err)
	}
	cube, err := NewAICube(AIConfig{ErrorRate: DefaultAICubeErrorRate})
	if err != nil {
		t.Fatal(err)
	}
	_, sajuCube := pair(t)
	doc := chart(t, sajuCube, ChartRequest{BirthDate: "1988-02-15", BirthTime: strp("23:30"), Gender: "male"}) // Hangul
	hanja := map[string]any{"pillars": map[string]any{"year": "戊辰", "month": "甲寅", "day": "庚子", "hour": "戊子"}}
	for _, svc := range []*AIService{legacy, cube} {
		var labels []string
		for _, body := range []any{doc, hanja} {
			code, out := do(t, svc, "POST", "/api/ai/analyze", body, map[string]string{HeaderTruthLabel: "earth"})
			var r AnalyzeResponse
			if code != 200 || json.Unmarshal(out, &r) != nil || r.RequestID == "" || r.Text == "" || r.Confidence <= 0 || r.Confidence > 1 {
				t.Fatalf("%s: %d %s", svc.Name(), code, out)
			}
			labels = append(labels, r.Label)
		}
		if labels[0] != labels[1] || labels[0] != "earth" {
			t.Errorf("%s labels Hangul/Hanja %v, want earth for both", svc.Name(), labels)
		}
		if got := testutil.ToFloat64(svc.m.truth.WithLabelValues("true")); got != 2 {
			t.Errorf("%s truth metric correct=%v, want 2", svc.Name(), got)
		}
		for body, field := range map[string]string{
			`{"pillars":`: "body",
			`{}`:          "pillars",
			`{"pillars":{"year":"戊辰","month":"甲寅","day":"庚丑"}}`:            "pillars.day",
			`{"pillars":{"year":"XX","month":"甲寅","day":"庚子"}}`:            "pillars.year",
			`{"pillars":{"year":"戊辰","month":"甲寅","day":"庚子","hour":"z"}}`: "pillars.hour",
		} {
			code, out := do(t, svc, "POST", "/api/ai/analyze", body, nil)
			var e ErrorResponse
			if code != 400 || json.Unmarshal(out, &e) != nil || e.Field != field {
				t.Errorf("%s %s: %d %s, want 400 naming %s", svc.Name(), body, code, out, field)
			}
		}
	}
	if _, err := NewAICube(AIConfig{ErrorRate: 1.5}); err == nil || !strings.Contains(err.Error(), "1.5") {
		t.Errorf("error rate 1.5 accepted: %v", err)
	}
}
