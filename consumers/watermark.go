package consumers

import (
	"context"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/heal7/shadowcube/internal/natsx"
	"github.com/heal7/shadowcube/schemas"
)

func (a *Applier) openKV(ctx context.Context) jetstream.KeyValue {
	kv, err := natsx.KVForReader(ctx, a.js, natsx.SharedKVConfig())
	if err != nil {
		a.log.Warn("watermark KV bucket unavailable; will retry", "bucket", schemas.KVBucket, "err", err)
		return nil
	}
	return kv
}

func (a *Applier) setWatermark(p pos, ct time.Time) {
	a.wmMu.Lock()
	defer a.wmMu.Unlock()
	if ct.IsZero() {
		ct = a.wm.CommitTime
	}
	a.wm = schemas.Watermark{Target: a.target, Slot: a.slot, LSN: p.LSN, CommitTime: ct, AppliedAt: time.Now().UTC()}
	a.wmDirty = true
}

// Watermark returns the last applied position (zero before the first batch).
func (a *Applier) Watermark() schemas.Watermark {
	a.wmMu.Lock()
	defer a.wmMu.Unlock()
	return a.wm
}

func (a *Applier) watermarkLoop(ctx context.Context, kv jetstream.KeyValue) {
	t := time.NewTicker(a.cfg.Watermark)
	defer t.Stop()
	depthEvery := 0
	for {
		select {
		case <-ctx.Done():
			a.flushWatermark(kv)
			return
		case <-t.C:
		}
		if kv == nil {
			kv = a.openKV(ctx)
		}
		a.flushWatermark(kv)
		a.wmMu.Lock()
		ct := a.wm.CommitTime
		a.wmMu.Unlock()
		if !ct.IsZero() {
			a.met.lag.WithLabelValues(a.target).Set(max(0, time.Since(ct).Seconds()))
			a.met.watermark.WithLabelValues(a.target).Set(float64(ct.UnixNano()) / 1e9)
		}
		if depthEvery--; depthEvery <= 0 {
			depthEvery = int(10 * time.Second / a.cfg.Watermark)
			if n, err := DLQDepth(ctx, a.js); err == nil {
				if n > 0 {
					n -= a.pruneObsoleteDLQ(ctx)
				}
				a.met.dlqDepth.Set(float64(n))
			}
		}
	}
}

func (a *Applier) flushWatermark(kv jetstream.KeyValue) {
	if kv == nil {
		return
	}
	a.wmMu.Lock()
	wm, dirty := a.wm, a.wmDirty
	a.wmDirty = false
	a.wmMu.Unlock()
	if !dirty {
		return
	}
	data, err := wm.Encode()
	if err != nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if _, err := kv.Put(ctx, schemas.WatermarkKey(a.target), data); err != nil {
		a.log.Warn("publish watermark failed", "lsn", wm.LSN.String(), "err", err)
		a.wmMu.Lock()
		a.wmDirty = true
		a.wmMu.Unlock()
	}
}
