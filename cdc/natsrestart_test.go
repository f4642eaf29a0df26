package cdc

import (
	"context"
	"testing"
	"time"
)

// TestNATSRestart restarts the NATS server twice under load: the reader
// reconnects, re-publishes from its durable position, and the stream,
// de-duplicated by (commit LSN, index), equals the committed changes.
func TestNATSRestart(t *testing.T) {
	e := newEnv(t)
	e.exec(t, "CREATE TABLE load (id int PRIMARY KEY, v int, note text)")
	e.exec(t, "CREATE TABLE txlog (seq int PRIMARY KEY)")
	cfg := e.config("natsr")
	cfg.PublishTimeout = 2 * time.Second
	cfg.RetryMax = time.Second
	run := e.start(t, cfg)
	waitHeartbeat(t, e.js)
	gen := &loadGen{e: e}
	ctx, stopLoad := context.WithCancel(context.Background())
	loadDone := make(chan struct{})
	go func() { defer close(loadDone); gen.run(ctx, t) }()
	defer func() { stopLoad(); <-loadDone }()
	for range 2 {
		time.Sleep(time.Second)
		e.nats.Restart(t)
		t.Logf("NATS restarted with %d transactions committed", len(gen.committed()))
	}
	time.Sleep(time.Second)
	stopLoad()
	<-loadDone
	want := gen.committed()
	last := want[len(want)-1].seq
	deadline := time.Now().Add(60 * time.Second)
	for {
		if _, ok := streamedSeqs(t, e)[last]; ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("last transaction %d not streamed within 60s", last)
		}
		time.Sleep(200 * time.Millisecond)
	}
	run.stop(t)
	compareStream(t, e, want, 0)
}
