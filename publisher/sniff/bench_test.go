package sniff

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/heal7/shadowcube/internal/testenv"
	"github.com/heal7/shadowcube/publisher"
)

var benchPayload = []byte(`{"day_pillar":"庚子","month_pillar":"戊寅","year_pillar":"戊辰","hour_pillar":"丙子","score":0.93}`)

func fastLegacy(b *testing.B) (*httptest.Server, int) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Write(benchPayload)
	}))
	b.Cleanup(up.Close)
	u, _ := url.Parse(up.URL)
	port, _ := strconv.Atoi(u.Port())
	return up, port
}

// load sends n requests from conc workers back to back through one
// keep-alive client and returns the CPU the whole process used per request.
func load(b *testing.B, base string, n, conc int) float64 {
	b.Helper()
	tr := &http.Transport{MaxIdleConnsPerHost: conc}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr}
	var next, failed atomic.Int64
	var wg sync.WaitGroup
	c0 := testenv.ProcessCPU()
	for range conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := next.Add(1); i <= int64(n); i = next.Add(1) {
				req, _ := http.NewRequest("GET", base+"/api/saju/chart/"+strconv.FormatInt(i%97, 10), nil)
				req.Header.Set("X-User-Id", "user-"+strconv.FormatInt(i%1000, 10))
				resp, err := client.Do(req)
				if err != nil {
					failed.Add(1)
					continue
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		}()
	}
	wg.Wait()
	if failed.Load() > 0 {
		b.Fatalf("%d requests failed", failed.Load())
	}
	return float64(testenv.ProcessCPU()-c0) / float64(time.Microsecond) / float64(n)
}

// sniffing runs a Sniffer on lo for port until the returned stop is called.
func sniffing(b *testing.B, s *sink, port int) (*Sniffer, func()) {
	b.Helper()
	sn, err := New(Config{Port: port}, Deps{Capturer: s.c})
	if err != nil {
		b.Fatal(err)
	}
	live, err := OpenLive("lo", port, nil, 0)
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- sn.Run(ctx, live) }()
	return sn, func() {
		cancel()
		if err := <-done; err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkP1Sniff: the CPU sniff spends per captured request (packet ring,
// reassembly, HTTP parsing, capture and publish, the JetStream server
// included) next to what the tap spends on capture per request (tap minus a
// bare reverse proxy, same legacy, same run); and the latency sniff adds to
// users' requests over direct (paired rounds with and without sniff).
func BenchmarkP1Sniff(b *testing.B) {
	n, rounds := 20000, 5
	if testing.Short() {
		n, rounds = 2000, 3
	}
	legacy, port := fastLegacy(b)
	up, _ := url.Parse(legacy.URL)
	cfg := publisher.Config{QueueSize: 1 << 15}

	// the tap's capture CPU: tap minus bare proxy
	tapSink := newSink(b, cfg)
	tap, err := publisher.NewTap(tapSink.c, publisher.TapConfig{Upstream: legacy.URL})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { tap.Close() })
	tapSrv := httptest.NewServer(tap)
	b.Cleanup(tapSrv.Close)
	bp := httputil.NewSingleHostReverseProxy(up)
	bp.Transport, _ = publisher.NewTransport(false, publisher.UpstreamTLS{})
	bareSrv := httptest.NewServer(bp)
	b.Cleanup(bareSrv.Close)

	// sniff's CPU: direct with sniff minus direct without
	sniffSink := newSink(b, cfg)
	// sniff's own share: the same with every path unmatched and skipped
	// (packets, reassembly, HTTP parsing, the capture decision; no event)
	skipCfg := cfg
	skipCfg.Unmatched = publisher.UnmatchedSkip
	skipSink := newSink(b, skipCfg)
	var direct, sniffed, watched, bare, tapped []float64
	var published, packets int64
	for range rounds {
		direct = append(direct, load(b, legacy.URL, n, 8))
		sn, stop := sniffing(b, sniffSink, port)
		c0 := testenv.ProcessCPU()
		load(b, legacy.URL, n, 8)
		waitFor(b, time.Minute, func() bool { return sn.Stats().Published == int64(n) }, func() string {
			return fmt.Sprintf("sniff published %+v of %d", sn.Stats(), n)
		})
		sniffSink.flush(b)
		sniffed = append(sniffed, float64(testenv.ProcessCPU()-c0)/float64(time.Microsecond)/float64(n))
		stop()
		published += sn.Stats().Published
		packets += sn.Stats().Packets
		sn2, stop2 := sniffing(b, skipSink, port)
		c0 = testenv.ProcessCPU()
		load(b, legacy.URL, n, 8)
		waitFor(b, time.Minute, func() bool { return sn2.Stats().Exchanges == int64(n) }, func() string {
			return fmt.Sprintf("sniff (nothing captured) read %+v of %d", sn2.Stats(), n)
		})
		watched = append(watched, float64(testenv.ProcessCPU()-c0)/float64(time.Microsecond)/float64(n))
		stop2()
		bare = append(bare, load(b, bareSrv.URL, n, 8))
		c0 = testenv.ProcessCPU()
		load(b, tapSrv.URL, n, 8)
		tapSink.flush(b)
		tapped = append(tapped, float64(testenv.ProcessCPU()-c0)/float64(time.Microsecond)/float64(n))
	}
	if st := sniffSink.c.Stats(); st.Published != published || st.Dropped != 0 {
		b.Fatalf("sniff capturer %+v, want %d published, none dropped", st, published)
	}
	sniffUS := testenv.Median(sniffed) - testenv.Median(direct)
	tapUS := testenv.Median(tapped) - testenv.Median(bare)
	fmt.Printf("bench P1 sniff CPU per captured request: %.1f cpu-µs | limit %.1f cpu-µs (the tap's capture: tap %.1f − bare proxy %.1f) | ratio %.2f | target 0.25\n",
		sniffUS, tapUS, testenv.Median(tapped), testenv.Median(bare), sniffUS/tapUS)
	// The difference above is small next to the noise of a shared machine;
	// what a tap deployment costs per request is the proxy hop and the
	// capture together, which sniff replaces.
	fmt.Printf("bench P1 sniff CPU per captured request next to the tap's whole cost: %.1f cpu-µs | limit %.1f cpu-µs (tap: proxy hop + capture, %d packets/request seen by sniff) | ratio %.2f | target 0.25\n",
		sniffUS, testenv.Median(tapped), packets/max(published, 1), sniffUS/testenv.Median(tapped))

	ownUS := testenv.Median(watched) - testenv.Median(direct)
	fmt.Printf("bench P1 sniff CPU per request read, nothing published (packets, reassembly, parsing, decision): %.1f cpu-µs | limit %.1f cpu-µs (the tap's whole cost) | ratio %.2f | target 0.25 (the rest of sniff's figure is the capture and publish path it shares with the tap)\n",
		ownUS, testenv.Median(tapped), ownUS/testenv.Median(tapped))

	// latency added to users' requests: one user at a time, rounds with and
	// without sniff alternating
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 1}}
	one := func(k int) []float64 {
		lat := make([]float64, 0, k)
		for i := range k {
			t := time.Now()
			resp, err := client.Get(legacy.URL + "/api/saju/chart/" + strconv.Itoa(i%97))
			if err != nil {
				b.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			lat = append(lat, float64(time.Since(t))/float64(time.Millisecond))
		}
		return lat
	}
	k := n / 10
	var without, with []float64
	for range rounds {
		without = append(without, testenv.Median(one(k)))
		_, stop := sniffing(b, sniffSink, port)
		with = append(with, testenv.Median(one(k)))
		stop()
	}
	diffs := make([]float64, len(with))
	for i := range with {
		diffs[i] = with[i] - without[i]
	}
	fmt.Printf("bench P1 sniff added p50 latency over direct: %.3f ms | limit %.3f ms (direct p50) | ratio %.2f | target 0.05 ms (median of %d paired rounds; differences from %.3f to %.3f ms)\n",
		testenv.Median(diffs), testenv.Median(without), testenv.Median(diffs)/testenv.Median(without), rounds, slices.Min(diffs), slices.Max(diffs))
}
