package testenv

import (
	"bytes"
	"log/slog"
	"sync"
	"testing"
)

// Logger returns a debug-level logger whose output is kept in memory and
// printed only if t fails: a failing test shows what the component under
// test was doing, a passing one stays quiet.
func Logger(t testing.TB) *slog.Logger {
	t.Helper()
	log, _ := CaptureLogger(t)
	return log
}

// CaptureLogger is Logger plus the buffer it writes to, for tests that check
// what was logged (e.g. that no secret was).
func CaptureLogger(t testing.TB) (*slog.Logger, *Buffer) {
	t.Helper()
	w := &Buffer{}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("log of the components under test:\n%s", w.String())
		}
	})
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug})), w
}

// Buffer is a bytes.Buffer safe to write from one goroutine (a logger, a
// child process's output) while the test reads it.
type Buffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *Buffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *Buffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
