package testenv

import (
	"io"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// ProcessCPU is the user+system CPU time this process has used: the
// benchmarks report CPU per operation next to rates, the view of a
// comparison that suffers least from other load on a shared machine.
func ProcessCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// Median returns the median of xs (the upper one of an even count); xs is
// not modified.
func Median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	return s[len(s)/2]
}

// RawHTTP is the limit of the replay benchmarks: n requests, built by
// newReq from their index (1..n), sent from conc goroutines through one
// plain keep-alive client, each answer read to the end. It returns
// requests/s and fails tb on any error.
func RawHTTP(tb testing.TB, n, conc int, newReq func(i int64) *http.Request) float64 {
	tb.Helper()
	tr := &http.Transport{MaxIdleConns: conc * 2, MaxIdleConnsPerHost: conc * 2}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr}
	var next, failed atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for range conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1)
				if i > int64(n) {
					return
				}
				resp, err := client.Do(newReq(i))
				if err != nil {
					failed.Add(1)
					continue
				}
				if _, err := io.Copy(io.Discard, resp.Body); err != nil {
					failed.Add(1)
				}
				resp.Body.Close()
			}
		}()
	}
	wg.Wait()
	if f := failed.Load(); f > 0 {
		tb.Fatalf("raw HTTP loop: %d requests failed", f)
	}
	return float64(n) / time.Since(start).Seconds()
}
