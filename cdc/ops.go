package cdc

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// opsLoop writes heartbeats and watches the slot's health until ctx ends. A
// lost or missing slot cancels the run with a fatal cause.
func (r *Reader) opsLoop(ctx context.Context, cancel context.CancelCauseFunc) {
	var conn *pgx.Conn
	defer func() {
		if conn != nil {
			conn.Close(context.Background())
		}
	}()
	hb := time.NewTicker(r.cfg.Heartbeat)
	defer hb.Stop()
	check := time.NewTicker(r.cfg.SlotCheck)
	defer check.Stop()
	missing := 0
	for {
		select {
		case <-ctx.Done():
			return
		case <-hb.C:
			if r.cfg.HeartbeatMode == HeartbeatOff || !r.sourceReady.Load() {
				continue
			}
		case <-check.C:
			if !r.slotReady.Load() {
				continue
			}
			if conn == nil {
				conn = r.opsConn(ctx)
				if conn == nil {
					continue
				}
			}
			err := r.checkSlot(ctx, conn)
			if errors.Is(err, ErrSlotLost) {
				// Re-check once: the slot may be between sessions.
				missing++
				if missing >= 2 {
					cancel(fatal(err))
					return
				}
				continue
			}
			missing = 0
			if err != nil {
				r.log.Warn("slot check failed", "err", err)
				conn.Close(context.Background())
				conn = nil
			}
			continue
		}
		if conn == nil {
			conn = r.opsConn(ctx)
			if conn == nil {
				continue
			}
		}
		if err := r.beat(ctx, conn); err != nil {
			if ctx.Err() == nil {
				r.log.Warn("heartbeat failed", "err", err)
			}
			conn.Close(context.Background())
			conn = nil
		}
	}
}

func (r *Reader) opsConn(ctx context.Context) *pgx.Conn {
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	conn, err := r.connect(cctx)
	if err != nil {
		if ctx.Err() == nil {
			r.log.Warn("heartbeat connection failed", "err", err)
		}
		return nil
	}
	return conn
}

func (r *Reader) beat(ctx context.Context, conn *pgx.Conn) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	var err error
	switch r.cfg.HeartbeatMode {
	case HeartbeatTable:
		_, err = conn.Exec(ctx, "INSERT INTO "+r.heartbeatIdent()+" (slot, beat_at) VALUES ($1, now()) ON CONFLICT (slot) DO UPDATE SET beat_at = excluded.beat_at", r.cfg.Slot)
	case HeartbeatMessage:
		_, err = conn.Exec(ctx, "SELECT pg_logical_emit_message(false, 'shadowcube.heartbeat', $1::text)", r.cfg.Slot)
	}
	return err
}

// checkSlot reads the slot's health into metrics; ErrSlotLost when it is
// invalidated or gone.
func (r *Reader) checkSlot(ctx context.Context, conn *pgx.Conn) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	var walStatus *string
	var retained *int64
	err := conn.QueryRow(ctx, `SELECT wal_status, (pg_current_wal_lsn() - restart_lsn)::int8
		FROM pg_replication_slots WHERE slot_name = $1`, r.cfg.Slot).Scan(&walStatus, &retained)
	if errors.Is(err, pgx.ErrNoRows) {
		return fmt.Errorf("%w: slot %s disappeared while streaming; changes may be lost: restart with --resnapshot to copy every table again", ErrSlotLost, r.cfg.Slot)
	}
	if err != nil {
		return fmt.Errorf("read slot %s: %w", r.cfg.Slot, err)
	}
	if retained != nil {
		r.m.retainedBytes.Set(float64(*retained))
	}
	if walStatus != nil && *walStatus == "lost" {
		return fmt.Errorf("%w: slot %s was invalidated (wal_status = lost, max_slot_wal_keep_size exceeded): restart with --resnapshot to copy every table again", ErrSlotLost, r.cfg.Slot)
	}
	if walStatus != nil && *walStatus == "unreserved" {
		r.log.Warn("slot is about to lose WAL (wal_status = unreserved): the reader is too far behind", "slot", r.cfg.Slot)
	}
	return nil
}
