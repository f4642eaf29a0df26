package wiring

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestGroupJoinsErrorsAndStopsInOrder: a failing stage stops the others,
// Stop returns its error, and stop functions run newest first, after every
// goroutine returned.
func TestGroupJoinsErrorsAndStopsInOrder(t *testing.T) {
	g := NewGroup(context.Background())
	var mu sync.Mutex
	var order []string
	note := func(s string) { mu.Lock(); order = append(order, s); mu.Unlock() }
	g.OnStop(func() { note("first registered") })
	g.OnStop(func() { note("second registered") })
	g.Go("worker", func(ctx context.Context) error {
		<-ctx.Done()
		note("worker returned")
		return nil
	})
	g.Go("broken", func(context.Context) error { return errors.New("boom") })
	select {
	case <-g.Context().Done():
	case <-time.After(30 * time.Second):
		t.Fatal("a failing stage did not stop the group")
	}
	err := g.Stop()
	if err == nil || err.Error() != "broken: boom" {
		t.Fatalf("Stop = %v, want broken: boom", err)
	}
	want := "worker returned,second registered,first registered"
	if got := strings.Join(order, ","); got != want {
		t.Fatalf("order %s, want %s", got, want)
	}
	if err := g.Stop(); err == nil {
		t.Fatal("second Stop lost the error")
	}
}

// TestServeDrainsWithinTimeout: on ctx end an in-flight request is let
// finish (within the shutdown timeout) before Serve returns, and the
// listener takes no new connections.
func TestServeDrainsWithinTimeout(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	started, release := make(chan struct{}), make(chan struct{})
	h := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		close(started)
		<-release
		io.WriteString(w, "done")
	})
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- Serve(ctx, ln, h, 30*time.Second) }()
	got := make(chan string, 1)
	go func() {
		resp, err := http.Get("http://" + ln.Addr().String())
		if err != nil {
			got <- err.Error()
			return
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		got <- string(b)
	}()
	<-started
	cancel()
	select {
	case err := <-served:
		t.Fatalf("Serve returned (%v) while a request was in flight", err)
	case <-time.After(200 * time.Millisecond):
	}
	close(release)
	if s := <-got; s != "done" {
		t.Fatalf("in-flight request got %q", s)
	}
	if err := <-served; err != nil {
		t.Fatalf("Serve = %v after a graceful stop", err)
	}
	if _, err := http.Get("http://" + ln.Addr().String()); err == nil {
		t.Fatal("the listener still accepts after Serve returned")
	}
}

// TestServeShutdownBound: a request that never ends holds the stop only
// for the shutdown timeout.
func TestServeShutdownBound(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	started, release := make(chan struct{}), make(chan struct{})
	defer close(release)
	h := http.HandlerFunc(func(http.ResponseWriter, *http.Request) { close(started); <-release })
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- Serve(ctx, ln, h, 300*time.Millisecond) }()
	go http.Get("http://" + ln.Addr().String())
	<-started
	t0 := time.Now()
	cancel()
	select {
	case err := <-served:
		if err == nil || !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Serve = %v, want the shutdown deadline", err)
		}
		if d := time.Since(t0); d < 300*time.Millisecond {
			t.Fatalf("Serve returned after %s, before the timeout", d)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Serve did not return after its shutdown timeout")
	}
}
