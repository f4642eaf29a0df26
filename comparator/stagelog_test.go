package comparator

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/heal7/shadowcube/internal/testenv"
	"github.com/heal7/shadowcube/schemas"
)

// TestConsumerLogsStageOnce: the process sets the stage attribute on the
// logger it passes (cmd/shadowcube's setup, or the demo for each stage); the
// consumer's own lines must not add a second one.
func TestConsumerLogsStageOnce(t *testing.T) {
	ctx := testenv.Context(t, 2*time.Minute)
	s, err := OpenStore(ctx, StoreConfig{DatabaseURL: testenv.Postgres(t).NewDatabase(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	_, js := testenv.StartNATS(t).Connect(t)
	log, logs := testenv.CaptureLogger(t)
	cons, err := NewConsumer(ConsumerConfig{MaxWait: 100 * time.Millisecond}, Deps{JetStream: js, Comparator: sajuComparator(t), Store: s, Logger: log.With("stage", "compare")})
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- cons.Run(runCtx) }()
	defer func() { stop(); <-done }()
	testenv.WaitConsumer(t, ctx, js, schemas.StreamShadowResults, "comparator")
	if _, err := js.Publish(ctx, schemas.ShadowResultSubject("saju", "r"), []byte("not json")); err != nil {
		t.Fatal(err)
	}
	var line string
	for line == "" {
		for l := range strings.Lines(logs.String()) {
			if strings.Contains(l, "undecodable shadow result") {
				line = l
			}
		}
		select {
		case <-ctx.Done():
			t.Fatalf("no log line for the undecodable result:\n%s", logs.String())
		case <-time.After(20 * time.Millisecond):
		}
	}
	if n := strings.Count(line, "stage="); n != 1 {
		t.Fatalf("log line carries stage %d times, want once:\n%s", n, line)
	}
}
