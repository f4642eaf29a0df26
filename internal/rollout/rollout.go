package rollout

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/heal7/shadowcube/consumers"
	"github.com/heal7/shadowcube/internal/natsx"
	"github.com/heal7/shadowcube/publisher"
	"github.com/heal7/shadowcube/schemas"
)

// Config says where a service's rollout lives: its flag and tap reports (KV),
// the two sync directions (mappings and their databases).
type Config struct {
	Service string
	JS      jetstream.JetStream

	Forward *consumers.Mapping // legacy → cube (source.side: legacy)
	Reverse *consumers.Mapping // cube → legacy (source.side: cube)
	// ForwardTarget and ReverseTarget name the mapping targets of this
	// service (default: each mapping's first target).
	ForwardTarget, ReverseTarget string
	LegacyURL, CubeURL           string

	// Bounds of the drill's waits (0: the defaults below).
	FlagWait     time.Duration // every live tap applies 0% (default 5s; the taps see a flag change within 1s)
	InFlightWait time.Duration // no request at the cube (default 30s)
	CatchUpWait  time.Duration // reverse sync past the cube's WAL position (default 60s)
	Settle       time.Duration // reconcile's wait for in-flight rows (default 20s)
	// TapStale is how old a tap report may be and still count as a live tap
	// (default 5s).
	TapStale time.Duration
	// Gate, when set, gives the gate verdict of the service for status
	// (another package decides it); nil shows "gate: not available".
	Gate func(ctx context.Context, service string) (string, error)
	// Now is the clock (default time.Now).
	Now func() time.Time
}

func (c *Config) defaults() error {
	var errs []error
	if err := publisher.ValidServiceName(c.Service); err != nil {
		errs = append(errs, fmt.Errorf("service: %w", err))
	}
	if c.JS == nil {
		errs = append(errs, errors.New("rollout: a JetStream connection is required"))
	}
	if c.Forward == nil || c.Forward.Reverse() {
		errs = append(errs, errors.New("rollout: the forward mapping (source.side: legacy) is required"))
	}
	if c.Reverse == nil || !c.Reverse.Reverse() {
		errs = append(errs, errors.New("rollout: the reverse mapping (source.side: cube) is required"))
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	if c.ForwardTarget == "" {
		c.ForwardTarget = c.Forward.Targets[0].Name
	}
	if c.ReverseTarget == "" {
		c.ReverseTarget = c.Reverse.Targets[0].Name
	}
	if c.Forward.Target(c.ForwardTarget) == nil {
		errs = append(errs, fmt.Errorf("forward mapping %s has no target %q", c.Forward.File, c.ForwardTarget))
	}
	if c.Reverse.Target(c.ReverseTarget) == nil {
		errs = append(errs, fmt.Errorf("reverse mapping %s has no target %q", c.Reverse.File, c.ReverseTarget))
	}
	if c.LegacyURL == "" || c.CubeURL == "" {
		errs = append(errs, errors.New("rollout: the legacy and cube database URLs are required"))
	}
	for _, d := range []struct {
		name string
		v    *time.Duration
		def  time.Duration
	}{{"FlagWait", &c.FlagWait, 5 * time.Second}, {"InFlightWait", &c.InFlightWait, 30 * time.Second},
		{"CatchUpWait", &c.CatchUpWait, 60 * time.Second}, {"Settle", &c.Settle, 20 * time.Second}, {"TapStale", &c.TapStale, 5 * time.Second}} {
		if *d.v < 0 {
			errs = append(errs, fmt.Errorf("rollout: %s %s: must be positive (0: default %s)", d.name, *d.v, d.def))
		}
		if *d.v == 0 {
			*d.v = d.def
		}
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return errors.Join(errs...)
}

// kv opens the shared bucket.
func (c *Config) kv(ctx context.Context) (jetstream.KeyValue, error) {
	return natsx.KVForReader(ctx, c.JS, natsx.SharedKVConfig())
}

// watermark reads a sync target's watermark (zero when none yet).
func watermark(ctx context.Context, kv jetstream.KeyValue, target string) (schemas.Watermark, error) {
	e, err := kv.Get(ctx, schemas.WatermarkKey(target))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return schemas.Watermark{}, nil
	}
	if err != nil {
		return schemas.Watermark{}, fmt.Errorf("read watermark of %s: %w", target, err)
	}
	return schemas.DecodeWatermark(e.Value())
}

// ReconcileKey is the KV key where the drill records its last reconcile of
// a service (status shows it).
func ReconcileKey(service string) string { return "rollout-reconcile." + schemas.EscapeToken(service) }

// ReconcileRecord is the last reconcile of both directions.
type ReconcileRecord struct {
	At                 time.Time `json:"at"`
	ForwardDifferences int       `json:"forward_differences"`
	ReverseDifferences int       `json:"reverse_differences"`
	ForwardRows        int64     `json:"forward_rows"`
	ReverseRows        int64     `json:"reverse_rows"`
}

func readReconcile(ctx context.Context, kv jetstream.KeyValue, service string) (*ReconcileRecord, error) {
	e, err := kv.Get(ctx, ReconcileKey(service))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", ReconcileKey(service), err)
	}
	var r ReconcileRecord
	if err := json.Unmarshal(e.Value(), &r); err != nil {
		return nil, fmt.Errorf("decode %s: %w", ReconcileKey(service), err)
	}
	return &r, nil
}

// reconcile compares one direction (source → target through m), waiting up
// to settle for rows in flight.
func reconcile(ctx context.Context, m *consumers.Mapping, target, srcURL, dstURL string, settle time.Duration) ([]consumers.TableReport, error) {
	src, err := consumers.ConnectSource(ctx, srcURL)
	if err != nil {
		return nil, fmt.Errorf("connect to the source of %s: %w", m.File, err)
	}
	defer src.Close(context.Background())
	dst, err := consumers.ConnectSource(ctx, dstURL)
	if err != nil {
		return nil, fmt.Errorf("connect to target %s: %w", target, err)
	}
	defer dst.Close(context.Background())
	t := m.Target(target)
	if err := m.Validate(ctx, t, src, dst); err != nil {
		return nil, err
	}
	// each side writes its own id range, so the other side's sequences are
	// not expected past them: sequences are the forward sync's business
	return consumers.Reconcile(ctx, consumers.ReconcileConfig{Mapping: m, Target: t, Source: src, Dest: dst, Settle: settle, SkipSequences: true})
}

// conflictCounts reads the conflicts recorded in a database by winner
// (zero when the table does not exist yet).
func conflictCounts(ctx context.Context, url string) (map[string]int64, error) {
	conn, err := consumers.ConnectSource(ctx, url)
	if err != nil {
		return nil, err
	}
	defer conn.Close(context.Background())
	var exists bool
	if err := conn.QueryRow(ctx, `SELECT to_regclass('shadowcube.sync_conflicts') IS NOT NULL`).Scan(&exists); err != nil {
		return nil, err
	}
	out := map[string]int64{}
	if !exists {
		return out, nil
	}
	rows, err := conn.Query(ctx, `SELECT winner, count(*) FROM shadowcube.sync_conflicts GROUP BY winner`)
	if err != nil {
		return nil, err
	}
	for rows.Next() {
		var w string
		var n int64
		if err := rows.Scan(&w, &n); err != nil {
			return nil, err
		}
		out[w] = n
	}
	return out, rows.Err()
}

// markCube reads the cube database's WAL position now and, when the cdc
// heartbeat table exists there, commits a heartbeat of the reverse slot right
// after: a transaction past that position that reverse sync applies (and
// checkpoints) at once, instead of waiting for cdc's next heartbeat when the
// cube is idle.
func markCube(ctx context.Context, url, slot string) (schemas.LSN, error) {
	conn, err := consumers.ConnectSource(ctx, url)
	if err != nil {
		return 0, fmt.Errorf("connect to the cube database: %w", err)
	}
	defer conn.Close(context.Background())
	var s string
	var beat bool
	if err := conn.QueryRow(ctx, `SELECT pg_current_wal_lsn()::text, to_regclass('shadowcube.heartbeat') IS NOT NULL`).Scan(&s, &beat); err != nil {
		return 0, fmt.Errorf("read the cube database's WAL position: %w", err)
	}
	if beat {
		if _, err := conn.Exec(ctx, `INSERT INTO shadowcube.heartbeat (slot, beat_at) VALUES ($1, now()) ON CONFLICT (slot) DO UPDATE SET beat_at = excluded.beat_at`, slot); err != nil {
			return 0, fmt.Errorf("heartbeat in the cube database: %w", err)
		}
	}
	return schemas.ParseLSN(s)
}

// dlqDepth is the number of messages held in the DLQ stream (-1: no stream).
func dlqDepth(ctx context.Context, js jetstream.JetStream) (int64, error) {
	s, err := js.Stream(ctx, schemas.StreamDLQ)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return -1, nil
	}
	if err != nil {
		return 0, fmt.Errorf("read stream %s: %w", schemas.StreamDLQ, err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		return 0, fmt.Errorf("read stream %s: %w", schemas.StreamDLQ, err)
	}
	return int64(info.State.Msgs), nil
}
