package shadow

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/heal7/shadowcube/internal/natsx"
	"github.com/heal7/shadowcube/schemas"
)

// watermarks follows the sync watermarks of every cube target through one KV
// watcher and lets any number of in-flight requests wait on them.
type watermarks struct {
	log *slog.Logger
	// waiting counts the waits blocked now; rewaits the times a blocked
	// wait saw a change that did not release it (tests wait on both).
	waiting, rewaits atomic.Int64

	mu      sync.Mutex
	marks   map[string]time.Time // KV key → CommitTime
	changed chan struct{}        // closed and replaced on every update
}

func newWatermarks(log *slog.Logger) *watermarks {
	return &watermarks{log: log, marks: map[string]time.Time{}, changed: make(chan struct{})}
}

// set records a watermark; watermarks only move forward.
func (w *watermarks) set(key string, commit time.Time) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !commit.After(w.marks[key]) {
		return
	}
	w.marks[key] = commit
	close(w.changed)
	w.changed = make(chan struct{})
}

func (w *watermarks) get(key string) (time.Time, <-chan struct{}) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.marks[key], w.changed
}

// wait blocks until the watermark under key reaches t, max has passed, or
// ctx ends. It returns the last watermark seen and whether the wait expired
// (stale). The error is ctx's.
func (w *watermarks) wait(ctx context.Context, key string, t time.Time, max time.Duration) (mark time.Time, stale bool, err error) {
	mark, changed := w.get(key)
	if !mark.Before(t) {
		return mark, false, nil
	}
	if max <= 0 {
		return mark, true, nil
	}
	timer := time.NewTimer(max)
	defer timer.Stop()
	w.waiting.Add(1)
	defer w.waiting.Add(-1)
	for {
		select {
		case <-changed:
			mark, changed = w.get(key)
			if !mark.Before(t) {
				return mark, false, nil
			}
			w.rewaits.Add(1)
		case <-timer.C:
			mark, _ = w.get(key)
			return mark, mark.Before(t), nil
		case <-ctx.Done():
			mark, _ = w.get(key)
			return mark, true, ctx.Err()
		}
	}
}

// openKV opens the pipeline's KV bucket, creating it (with default settings)
// only when no other stage has.
func openKV(ctx context.Context, js jetstream.JetStream) (jetstream.KeyValue, error) {
	return natsx.KVForReader(ctx, js, natsx.SharedKVConfig())
}

// follow feeds every watermark update of the bucket into w until ctx ends.
// The watcher restarts (after a pause) if it fails.
func (w *watermarks) follow(ctx context.Context, kv jetstream.KeyValue) {
	for ctx.Err() == nil {
		err := w.followOnce(ctx, kv)
		if ctx.Err() != nil {
			return
		}
		w.log.Warn("watermark watcher stopped; restarting", "err", err)
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
}

func (w *watermarks) followOnce(ctx context.Context, kv jetstream.KeyValue) error {
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	watcher, err := kv.Watch(wctx, "sync-watermark.>", jetstream.IgnoreDeletes())
	if err != nil {
		return fmt.Errorf("watch %s: %w", schemas.KVBucket, err)
	}
	defer watcher.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case e, ok := <-watcher.Updates():
			if !ok {
				return errors.New("watch updates closed")
			}
			if e == nil { // end of the initial values
				continue
			}
			wm, err := schemas.DecodeWatermark(e.Value())
			if err != nil {
				w.log.Warn("undecodable watermark ignored", "key", e.Key(), "err", err)
				continue
			}
			w.set(e.Key(), wm.CommitTime)
		}
	}
}
