package comparator

import (
	"fmt"
	"math/rand/v2"
	"strings"
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

// TestNoiseByOperation: on one endpoint, a field that is noise in one
// operation (its legacy instances disagree) is still a real difference in
// another operation; signatures name the operation.
func TestNoiseByOperation(t *testing.T) {
	c, err := New(Config{})
	if err != nil {
		t.Fatal(err)
	}
	reported := 0
	for i := 0; i < 200; i++ {
		a := result("api", "/graphql", `{"query":"a"}`, fmt.Sprintf(`{"x":%d}`, i), fmt.Sprintf(`{"x":%d}`, i+1))
		a.Operation = "Feed"
		a.Secondary = &schemas.HTTPResponse{Status: 200, Body: []byte(fmt.Sprintf(`{"x":%d}`, i+2))}
		c.Compare(a)
		b := result("api", "/graphql", `{"query":"b"}`, `{"x":1}`, `{"x":1}`)
		b.Operation = "GetUser"
		b.Secondary = &schemas.HTTPResponse{Status: 200, Body: []byte(`{"x":1}`)}
		if i%10 == 0 {
			b.Cube.Body = []byte(`{"x":2}`)
		}
		o := c.Compare(b)
		if len(o.Diffs) > 0 {
			reported++
			if !strings.Contains(o.Signature, "/graphql op=GetUser") {
				t.Fatalf("signature %q lacks the operation", o.Signature)
			}
		}
	}
	if reported != 20 {
		t.Errorf("GetUser differences reported %d, want 20 (Feed's noise must not hide them)", reported)
	}
	_, _, feed := c.NoiseState("api", "/graphql op=Feed")
	if len(feed) != 1 || !feed[0].IsNoise {
		t.Errorf("Feed noise state %+v", feed)
	}
}
