package consumers

import (
	"context"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/heal7/shadowcube/schemas"
)

// pos is a position in the source: commit LSN plus index (snapshot rows) or
// wholeTx for a whole stream transaction.
type pos struct {
	LSN schemas.LSN
	Idx int64
}

const wholeTx = math.MaxInt32

func (p pos) less(q pos) bool { return p.LSN < q.LSN || p.LSN == q.LSN && p.Idx < q.Idx }

func (p pos) String() string {
	if p.Idx == wholeTx {
		return p.LSN.String()
	}
	return fmt.Sprintf("%s#%d", p.LSN, p.Idx)
}

const checkpointDDL = `
CREATE SCHEMA IF NOT EXISTS shadowcube;
CREATE TABLE IF NOT EXISTS shadowcube.applied (
  target      text NOT NULL,
  slot        text NOT NULL,
  lsn         pg_lsn NOT NULL DEFAULT '0/0',
  idx         bigint NOT NULL DEFAULT 0,
  commit_time timestamptz,
  applied_at  timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (target, slot)
)`

// EnsureCheckpoint creates shadowcube.applied and the target's row.
func EnsureCheckpoint(ctx context.Context, db DB, target, slot string) error {
	for attempt := 1; ; attempt++ {
		_, err := db.Exec(ctx, checkpointDDL)
		if err == nil {
			break
		}
		// concurrent CREATE ... IF NOT EXISTS (two targets in one database)
		// may race on the catalog: the loser retries and finds it created
		var pe *pgconn.PgError
		if attempt == 3 || !errors.As(err, &pe) || (pe.Code != "23505" && pe.Code != "42P07") {
			return fmt.Errorf("create shadowcube.applied: %w", err)
		}
	}
	if _, err := db.Exec(ctx, `INSERT INTO shadowcube.applied (target, slot) VALUES ($1, $2) ON CONFLICT DO NOTHING`, target, slot); err != nil {
		return fmt.Errorf("create checkpoint row of %s/%s: %w", target, slot, err)
	}
	return nil
}

// Checkpoint is the position stored in a target's shadowcube.applied row.
type Checkpoint struct {
	LSN        schemas.LSN
	Index      int64 // snapshot row index, or MaxInt32 after a whole stream transaction
	CommitTime time.Time
}

// ReadCheckpoint returns the target's checkpoint for slot (zero when none).
func ReadCheckpoint(ctx context.Context, db DB, target, slot string) (Checkpoint, error) {
	var lsn string
	var cp Checkpoint
	var ct *time.Time
	err := db.QueryRow(ctx, `SELECT lsn::text, idx, commit_time FROM shadowcube.applied WHERE target = $1 AND slot = $2`, target, slot).Scan(&lsn, &cp.Index, &ct)
	if errors.Is(err, pgx.ErrNoRows) {
		return Checkpoint{}, nil
	}
	if err != nil {
		return Checkpoint{}, fmt.Errorf("read checkpoint of %s/%s: %w", target, slot, err)
	}
	if cp.LSN, err = schemas.ParseLSN(lsn); err != nil {
		return Checkpoint{}, err
	}
	if ct != nil {
		cp.CommitTime = *ct
	}
	return cp, nil
}

// lockCheckpoint locks the target's checkpoint row in tx and returns its
// position. In the same statement it writes the origin message
// (pg_logical_emit_message with the source slot) that lets a CDC reading the
// target recognise, and skip, the changes the applier makes.
func lockCheckpoint(ctx context.Context, tx pgx.Tx, target, slot string) (pos, error) {
	var lsnText string
	var idx int64
	err := tx.QueryRow(ctx, `SELECT pg_logical_emit_message(true, 'shadowcube.origin', $3)::text, lsn::text, idx
FROM shadowcube.applied WHERE target = $1 AND slot = $2 FOR UPDATE`, target, slot, slot).Scan(new(string), &lsnText, &idx)
	if err != nil {
		return pos{}, fmt.Errorf("read checkpoint: %w", err)
	}
	lsn, err := schemas.ParseLSN(lsnText)
	if err != nil {
		return pos{}, err
	}
	return pos{lsn, idx}, nil
}

// queueAdvance queues the statement moving the checkpoint to p (commit time
// ct; zero keeps the stored one) into b, to commit with the changes.
func queueAdvance(b *pgx.Batch, target, slot string, p pos, ct time.Time) {
	var ctArg any
	if !ct.IsZero() {
		ctArg = ct
	}
	b.Queue(`UPDATE shadowcube.applied SET lsn = $3::pg_lsn, idx = $4, commit_time = coalesce($5, commit_time), applied_at = now()
WHERE target = $1 AND slot = $2`, target, slot, p.LSN.String(), p.Idx, ctArg)
}
