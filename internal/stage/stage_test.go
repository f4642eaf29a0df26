package stage

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// run is a minimal stage Run: works until its context ends.
func run(l *Life, ctx context.Context) error {
	ctx, end, err := l.Begin(ctx, "test")
	if err != nil {
		return err
	}
	defer end()
	<-ctx.Done()
	return nil
}

func TestLifeCloseStopsRunAndIsIdempotent(t *testing.T) {
	var l Life
	done := make(chan error, 1)
	go func() { done <- run(&l, context.Background()) }()
	for !l.Started() {
		time.Sleep(time.Millisecond)
	}
	if err := run(&l, context.Background()); err == nil || !strings.Contains(err.Error(), "run called twice") {
		t.Fatalf("second Run: %v", err)
	}
	released := 0
	release := func() error { released++; return errors.New("release failed") }
	if err := l.Close(release); err == nil || err.Error() != "release failed" {
		t.Fatalf("Close: %v", err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run after Close: %v", err)
		}
	default:
		t.Fatal("Close returned before Run did")
	}
	if err := l.Close(release); err == nil || released != 1 {
		t.Fatalf("second Close: err %v, released %d times, want the first error and 1", err, released)
	}
	if err := run(&l, context.Background()); !errors.Is(err, ErrClosed) {
		t.Fatalf("Run after Close: %v, want ErrClosed", err)
	}
}

func TestLifeCloseWithoutRun(t *testing.T) {
	var l Life
	if err := l.Close(nil); err != nil {
		t.Fatal(err)
	}
	if err := run(&l, context.Background()); !errors.Is(err, ErrClosed) {
		t.Fatalf("Run after Close: %v", err)
	}
}

func TestRegisterConflictIsAnError(t *testing.T) {
	reg := prometheus.NewRegistry()
	newC := func() prometheus.Collector {
		return prometheus.NewCounter(prometheus.CounterOpts{Name: "shadowcube_test_total", Help: "x"})
	}
	if err := Register(reg, "test", newC()); err != nil {
		t.Fatal(err)
	}
	err := Register(reg, "test", newC())
	var are prometheus.AlreadyRegisteredError
	if !errors.As(err, &are) || !strings.Contains(err.Error(), "one test per registry") {
		t.Fatalf("second registration: %v", err)
	}
	if err := Register(nil, "test", newC()); err != nil {
		t.Fatalf("nil registerer: %v", err)
	}
}
