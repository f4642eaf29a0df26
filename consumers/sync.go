package consumers

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/heal7/shadowcube/internal/pgsession"
)

// Config configures the sync stage: every target of the mapping.
type Config struct {
	Mapping    *Mapping
	SourceURL  string            // legacy database, for validating the mapping
	TargetURLs map[string]string // target name -> cube database URL
	Only       []string          // sync only these targets (default all)

	Stream   string
	MaxBatch int           // most source events per target transaction (0: 5000)
	AckWait  time.Duration // JetStream ack wait (0: 5m)
	RetryMax time.Duration // back-off bound of transient failures (0: 5s)

	SequenceInterval time.Duration // how often cube sequences are moved past the values in use (default 30s; sequences.go)
	ReorderWait      time.Duration // how long a transaction waits for a missing earlier one (0: 2m; txn.go)
}

// Sync runs one Applier per target.
type Sync struct {
	cfg       Config
	appliers  []*Applier
	source    *pgxpool.Pool // re-reads of rows with unchanged TOAST values
	pools     []*pgxpool.Pool
	closeOnce sync.Once
	seq       *sequenceSyncer // sequences.go
}

// OpenTargetPool opens a pool to a cube database (or the source database,
// for re-reads) with the pinned session settings.
func OpenTargetPool(ctx context.Context, url string) (*pgxpool.Pool, error) {
	pc, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("parse database URL: %w", err)
	}
	pgsession.Apply(pc.ConnConfig.RuntimeParams)
	pc.MaxConns = 4
	return pgxpool.NewWithConfig(ctx, pc)
}

// ConnectSource connects to the legacy database, or to a cube database for
// reconcile, with the pinned session settings (internal/pgsession).
func ConnectSource(ctx context.Context, url string) (*pgx.Conn, error) {
	cc, err := pgx.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("parse source database URL: %w", err)
	}
	pgsession.Apply(cc.RuntimeParams)
	return pgx.ConnectConfig(ctx, cc)
}

// New connects to every target, validates the mapping against the source
// and target databases, and prepares the appliers.
func New(ctx context.Context, cfg Config, js jetstream.JetStream, log *slog.Logger, reg prometheus.Registerer) (*Sync, error) {
	if cfg.Mapping == nil {
		return nil, errors.New("sync: mapping required")
	}
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if cfg.SourceURL == "" {
		return nil, fmt.Errorf("sync: source database URL required (%s) to validate the mapping", cfg.Mapping.Source.DatabaseURLEnv)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	src, err := ConnectSource(ctx, cfg.SourceURL)
	if err != nil {
		return nil, fmt.Errorf("connect to source database: %w", err)
	}
	defer src.Close(context.Background())
	met := NewMetrics(reg)
	seq, err := newSequenceSyncer(cfg, log, reg)
	if err != nil {
		return nil, err
	}
	s := &Sync{cfg: cfg, seq: seq}
	for _, t := range cfg.Mapping.Targets {
		if len(cfg.Only) > 0 && !contains(cfg.Only, t.Name) {
			continue
		}
		url := cfg.TargetURLs[t.Name]
		if url == "" {
			s.Close()
			return nil, fmt.Errorf("target %s: database URL missing: set %s", t.Name, t.DatabaseURLEnv)
		}
		pool, err := OpenTargetPool(ctx, url)
		if err != nil {
			s.Close()
			return nil, fmt.Errorf("target %s: %w", t.Name, err)
		}
		s.pools = append(s.pools, pool)
		if err := cfg.Mapping.Validate(ctx, t, src, pool); err != nil {
			s.Close()
			return nil, err
		}
		if s.source == nil {
			// re-reads of rows with unchanged TOAST values (reselect.go)
			if s.source, err = OpenTargetPool(ctx, cfg.SourceURL); err != nil {
				s.Close()
				return nil, fmt.Errorf("source database: %w", err)
			}
		}
		fk, err := DecideFK(ctx, pool, t, log)
		if err != nil {
			s.Close()
			return nil, err
		}
		a, err := NewApplier(ApplierConfig{Mapping: cfg.Mapping, Target: t, DB: pool, Source: s.source, FKMode: fk, Stream: cfg.Stream,
			MaxBatch: cfg.MaxBatch, AckWait: cfg.AckWait, RetryMax: cfg.RetryMax, ReorderWait: cfg.ReorderWait}, js, log, met)
		if err != nil {
			s.Close()
			return nil, err
		}
		s.appliers = append(s.appliers, a)
	}
	if len(s.appliers) == 0 {
		s.Close()
		return nil, fmt.Errorf("sync: no target selected (have %d in %s)", len(cfg.Mapping.Targets), cfg.Mapping.File)
	}
	return s, nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// Appliers returns the appliers, one per target.
func (s *Sync) Appliers() []*Applier { return s.appliers }

// Run runs every applier until ctx ends or one fails; it returns the errors.
func (s *Sync) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	errs := make([]error, len(s.appliers))
	wg.Add(1)
	go func() { defer wg.Done(); s.seq.run(ctx, s.appliers) }() // sequence positions (sequences.go)
	for i, a := range s.appliers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := a.Run(ctx); err != nil {
				errs[i] = fmt.Errorf("target %s: %w", a.target, err)
				cancel()
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// Close closes the target pools. Call it after Run returned.
func (s *Sync) Close() {
	s.closeOnce.Do(func() {
		for _, p := range s.pools {
			p.Close()
		}
		if s.source != nil {
			s.source.Close()
		}
	})
}
