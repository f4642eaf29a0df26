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
	"github.com/heal7/shadowcube/internal/stage"
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
	cfg      Config
	js       jetstream.JetStream
	log      *slog.Logger
	met      *Metrics
	seq      *sequenceSyncer // sequences.go
	life     stage.Life
	mu       sync.Mutex // guards appliers, source and pools (set by Run, closed by Close)
	appliers []*Applier
	source   *pgxpool.Pool // re-reads of rows with unchanged TOAST values
	pools    []*pgxpool.Pool
	tune     func(*ApplierConfig) // tests: adjust each applier's settings
}

// Deps are what the sync stage uses and does not own.
type Deps struct {
	JetStream  jetstream.JetStream   // required
	Logger     *slog.Logger          // nil: discard
	Registerer prometheus.Registerer // nil: metrics not registered
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

// New validates cfg and registers the metrics; it does no I/O. Run
// connects to the source and every target, validates the mapping against
// them and applies.
func New(cfg Config, deps Deps) (*Sync, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if deps.JetStream == nil {
		return nil, errors.New("sync: a JetStream handle is required")
	}
	log := deps.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	met, err := NewMetrics(deps.Registerer)
	if err != nil {
		return nil, err
	}
	seq, err := newSequenceSyncer(cfg, log, deps.Registerer)
	if err != nil {
		return nil, err
	}
	return &Sync{cfg: cfg, js: deps.JetStream, log: log, met: met, seq: seq}, nil
}

// open connects to every selected target, validates the mapping against the
// source and target databases, and prepares the appliers.
func (s *Sync) open(ctx context.Context) error {
	cfg, log := s.cfg, s.log
	src, err := ConnectSource(ctx, cfg.SourceURL)
	if err != nil {
		return fmt.Errorf("connect to source database: %w", err)
	}
	defer src.Close(context.Background())
	// Connections are handed to s as soon as they are open (Close closes
	// them), without holding s.mu across the I/O.
	keep := func(p *pgxpool.Pool, source bool) {
		s.mu.Lock()
		defer s.mu.Unlock()
		if source {
			s.source = p
		} else {
			s.pools = append(s.pools, p)
		}
	}
	var source *pgxpool.Pool
	var appliers []*Applier
	for _, t := range cfg.Mapping.Targets {
		if len(cfg.Only) > 0 && !contains(cfg.Only, t.Name) {
			continue
		}
		url := cfg.TargetURLs[t.Name]
		if url == "" {
			return fmt.Errorf("target %s: database URL missing: set %s", t.Name, t.DatabaseURLEnv)
		}
		pool, err := OpenTargetPool(ctx, url)
		if err != nil {
			return fmt.Errorf("target %s: %w", t.Name, err)
		}
		keep(pool, false)
		if err := cfg.Mapping.Validate(ctx, t, src, pool); err != nil {
			return err
		}
		if source == nil {
			// re-reads of rows with unchanged TOAST values (reselect.go)
			if source, err = OpenTargetPool(ctx, cfg.SourceURL); err != nil {
				return fmt.Errorf("source database: %w", err)
			}
			keep(source, true)
		}
		fk, err := DecideFK(ctx, pool, t, log)
		if err != nil {
			return err
		}
		ac := ApplierConfig{Mapping: cfg.Mapping, Target: t, DB: pool, Source: source, FKMode: fk, Stream: cfg.Stream,
			MaxBatch: cfg.MaxBatch, AckWait: cfg.AckWait, RetryMax: cfg.RetryMax, ReorderWait: cfg.ReorderWait}
		if s.tune != nil {
			s.tune(&ac)
		}
		a, err := NewApplier(ac, s.js, log, s.met)
		if err != nil {
			return err
		}
		appliers = append(appliers, a)
	}
	if len(appliers) == 0 {
		return fmt.Errorf("sync: no target selected (have %d in %s)", len(cfg.Mapping.Targets), cfg.Mapping.File)
	}
	s.mu.Lock()
	s.appliers = appliers
	s.mu.Unlock()
	return nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// Appliers returns the appliers, one per selected target, once Run has
// connected (nil before).
func (s *Sync) Appliers() []*Applier {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.appliers
}

// Run connects (see open), then runs every applier until ctx ends or one
// fails; it returns the errors. Set-up errors (a target unreachable, the
// mapping not matching the databases) are returned at once. On ctx end each
// applier finishes the target transaction it is in and returns nil.
func (s *Sync) Run(ctx context.Context) error {
	ctx, end, err := s.life.Begin(ctx, "sync")
	if err != nil {
		return err
	}
	defer end()
	if err := s.open(ctx); err != nil {
		return err
	}
	appliers := s.Appliers()
	s.log.Info("sync running", "targets", len(appliers))
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	errs := make([]error, len(appliers))
	if !s.cfg.Mapping.Reverse() { // reverse sync never moves legacy's sequences (mapping_reverse.go)
		wg.Add(1)
		go func() { defer wg.Done(); s.seq.run(ctx, appliers) }() // sequence positions (sequences.go)
	}
	for i, a := range appliers {
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

// Close stops a running Run, waits for it, and closes the database pools.
// Idempotent.
func (s *Sync) Close() error {
	return s.life.Close(func() error {
		s.mu.Lock()
		defer s.mu.Unlock()
		for _, p := range s.pools {
			p.Close()
		}
		if s.source != nil {
			s.source.Close()
		}
		return nil
	})
}
