package cdc

import (
	"context"
	"math/rand/v2"
	"testing"
	"time"
)

// TestAbruptStops interrupts an in-process reader under load at random
// points after it streamed, six times: the replication connection is terminated by the server
// (no goodbye, no final status update), or Run is cancelled and a new Reader
// started at once. The stream, de-duplicated by (commit LSN, index), must
// equal the committed changes in order.
func TestAbruptStops(t *testing.T) {
	e := newEnv(t)
	e.exec(t, "CREATE TABLE load (id int PRIMARY KEY, v int, note text)")
	e.exec(t, "CREATE TABLE txlog (seq int PRIMARY KEY)")
	cfg := e.config("abrupt")
	cfg.RetryMax = 500 * time.Millisecond
	run := e.start(t, cfg)
	waitHeartbeat(t, e.js)
	gen := &loadGen{e: e}
	ctx, stopLoad := context.WithCancel(context.Background())
	loadDone := make(chan struct{})
	go func() { defer close(loadDone); gen.run(ctx, t) }()
	defer func() { stopLoad(); <-loadDone }()
	admin := e.connect(t)
	rng := rand.New(rand.NewPCG(5, 6))
	for round := range 6 {
		// Each fault hits a reader that streams: one that streamed a
		// transaction committed after the previous fault.
		waitStreamedAfter(t, e, gen, 60*time.Second)
		time.Sleep(time.Duration(rng.IntN(800)) * time.Millisecond)
		if round%2 == 0 {
			var n int
			if err := admin.QueryRow(context.Background(), "SELECT count(pg_terminate_backend(active_pid)) FROM pg_replication_slots WHERE slot_name = 'abrupt' AND active_pid IS NOT NULL").Scan(&n); err != nil {
				t.Fatal(err)
			}
			if n != 1 {
				t.Fatalf("round %d: terminated %d walsenders, want the reader's one", round, n)
			}
			t.Logf("round %d: terminated %d walsender(s)", round, n)
		} else {
			run.stop(t)
			run = e.start(t, cfg)
			t.Logf("round %d: cancelled Run, started a new Reader", round)
		}
	}
	time.Sleep(500 * time.Millisecond)
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
