package cdc

import (
	"context"
	"testing"
	"time"

	"github.com/heal7/shadowcube/internal/testenv"
)

// TestIdleSlotAdvances: with no change in the source database but WAL written
// by another database of the same server, the slot's confirmed_flush_lsn
// must follow the server's WAL (no WAL pinned by an idle reader), in every
// heartbeat mode: the default (table), message and off; nothing but
// heartbeats is published, and only the default mode publishes those.
func TestIdleSlotAdvances(t *testing.T) {
	for _, mode := range []string{"", HeartbeatMessage, HeartbeatOff} {
		name := mode
		if name == "" {
			name = "default"
		}
		t.Run(name, func(t *testing.T) {
			e := newEnv(t)
			other := testenv.Connect(t, testenv.Postgres(t).NewDatabase(t))
			e.exec(t, "CREATE TABLE quiet (id int PRIMARY KEY)")
			cfg := e.config("idle_" + name)
			cfg.HeartbeatMode = mode
			run := e.start(t, cfg)
			waitSlot(t, e, cfg.Slot)
			ctx := context.Background()
			if _, err := other.Exec(ctx, "CREATE TABLE noise (v text); INSERT INTO noise SELECT repeat('x', 100) FROM generate_series(1, 20000)"); err != nil {
				t.Fatal(err)
			}
			target := walLSN(t, e)
			deadline := time.Now().Add(30 * time.Second)
			for e.confirmedFlush(t, cfg.Slot) < target {
				if time.Now().After(deadline) {
					t.Fatalf("confirmed_flush_lsn %s did not reach %s within 30s while idle", e.confirmedFlush(t, cfg.Slot), target)
				}
				// WAL keeps moving on a busy server; keepalives carry it.
				time.Sleep(100 * time.Millisecond)
			}
			run.stop(t)
			if n := subjectCount(t, e.js, "cdc.>"); n != 0 {
				t.Fatalf("%d events published by an idle source", n)
			}
			beats := len(readAll(t, e.js, heartbeatSubject))
			if (mode == "") != (beats > 0) {
				t.Fatalf("mode %s published %d heartbeat events", name, beats)
			}
		})
	}
}
