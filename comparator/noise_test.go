package comparator

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/heal7/shadowcube/schemas"
)

// TestNoiseNotLearnedAcrossLegacyWrites: no secondary; five requests
// repeat every 100 s while legacy data changes every 100 s (a write
// between every two captures of a request), so their legacy answers differ
// in "v". Each capture is also replayed twice within half a second with no
// write between (a random "token" differs: real noise). The cube answers a
// wrong "v" on every 7th request. The token must be learned as noise, "v"
// never, and every planted difference is reported. (Before: repeats up to
// 5 minutes apart taught "v" as noise and the planted differences were
// suppressed.)
func TestNoiseNotLearnedAcrossLegacyWrites(t *testing.T) {
	c, err := New(Config{})
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(3, 4))
	base := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	const n = 400
	planted, reported := 0, 0
	version := 0
	lastWrite := base.Add(-time.Hour)
	for i := 0; i < n; i++ {
		at := base.Add(time.Duration(i) * 20 * time.Second)
		if i%5 == 0 { // a legacy write, applied to the cube before the next replay
			version++
			lastWrite = at.Add(-time.Second)
		}
		req := fmt.Sprintf(`{"q":%d}`, i%5)
		for twin := 0; twin < 2; twin++ {
			cubeV := version
			if twin == 0 && i%7 == 3 {
				cubeV = version + 100
				planted++
			}
			r := result("svc", "/r", req, fmt.Sprintf(`{"v":%d,"token":"%d"}`, version, rng.Int()), fmt.Sprintf(`{"v":%d,"token":"%d"}`, cubeV, rng.Int()))
			r.Request.CapturedAt = at.Add(time.Duration(twin) * 400 * time.Millisecond)
			r.Freshness = schemas.Freshness{Target: "cube", Watermark: lastWrite}
			o := c.Compare(r)
			for _, d := range o.Diffs {
				if d.Path == "$.v" {
					reported++
				}
			}
		}
	}
	if planted == 0 || reported != planted {
		t.Errorf("planted differences on $.v: %d, reported %d", planted, reported)
	}
	reqs, base2, paths := c.NoiseState("svc", "/r")
	var vNoise, tokenIsNoise bool
	for _, p := range paths {
		switch p.Path {
		case "$.v":
			vNoise = p.Noise > 0 || p.IsNoise
		case "$.token":
			tokenIsNoise = p.IsNoise
		}
	}
	if vNoise {
		t.Errorf("$.v learned as noise: %+v", paths)
	}
	if !tokenIsNoise {
		t.Errorf("$.token not learned as noise from repeats with no write between: %+v", paths)
	}
	// Baselines: the second of each twin (same watermark, 400 ms apart)
	// and repeats of a request replayed at the same watermark (none here:
	// a write lies between every two of them).
	if reqs != 2*n || base2 != n {
		t.Errorf("requests %d baselines %d, want %d and %d", reqs, base2, 2*n, n)
	}
}

// TestNoisePrefersSecondary: with a secondary configured, repeats are not
// used even when a secondary call failed (the secondary is the baseline).
func TestNoisePrefersSecondary(t *testing.T) {
	c, err := New(Config{})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 4; i++ {
		r := result("svc", "/r", `{"q":1}`, fmt.Sprintf(`{"a":%d}`, i), `{"a":0}`)
		r.SecondaryError = "secondary: connection refused"
		if o := c.Compare(r); o.Noise.Baseline || o.Noise.FromRepeats {
			t.Fatalf("repeat used as baseline with a secondary configured: %+v", o.Noise)
		}
	}
	_, base, _ := c.NoiseState("svc", "/r")
	if base != 0 {
		t.Fatalf("baselines %d, want 0", base)
	}
}
