package testenv

import (
	"testing"
	"time"

	"go.uber.org/goleak"
)

// leakPatience bounds VerifyNone's wait. goleak's own retries give up after
// about half a second, which a loaded 2-core machine can exceed while
// connections close.
const leakPatience = 30 * time.Second

// VerifyNone is the goroutine-leak check of the tests: it fails t when
// goleak finds goroutines the options do not ignore, after waiting up to 30s
// for them to end (it returns as soon as none is left).
//
// Take goleak.IgnoreCurrent() before starting what must not leak, so the
// shared PostgreSQL cluster and other earlier goroutines do not count. An
// embedded NATS server runs in the test's process and keeps goroutines for
// its streams and consumers: close the test's connections and Shutdown the
// server before the check (Start it again after, if the test goes on).
func VerifyNone(t testing.TB, opts ...goleak.Option) {
	t.Helper()
	deadline := time.Now().Add(leakPatience)
	for {
		err := goleak.Find(opts...)
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("goroutines left after %s: %v", leakPatience, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
