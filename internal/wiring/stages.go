package wiring

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/heal7/shadowcube/cdc"
	"github.com/heal7/shadowcube/comparator"
	"github.com/heal7/shadowcube/consumers"
	"github.com/heal7/shadowcube/internal/natsx"
	"github.com/heal7/shadowcube/internal/process"
	"github.com/heal7/shadowcube/internal/redact"
	"github.com/heal7/shadowcube/internal/routes"
	"github.com/heal7/shadowcube/shadow"
)

// CDCEnv is the configuration of `shadowcube cdc`.
type CDCEnv struct {
	SourceDatabaseURL string        `envconfig:"SOURCE_DATABASE_URL" desc:"source (legacy) PostgreSQL URL (required)"`
	Slot              string        `envconfig:"CDC_SLOT" default:"shadowcube" desc:"logical slot name"`
	Publication       string        `envconfig:"CDC_PUBLICATION" default:"shadowcube" desc:"publication name"`
	Tables            string        `envconfig:"CDC_TABLES" desc:"comma list of schema.table to create the publication for when it is missing (empty: FOR ALL TABLES)"`
	Resnapshot        bool          `envconfig:"CDC_RESNAPSHOT" flag:"resnapshot" desc:"drop the slot and copy every table again"`
	IgnoreOrigins     string        `envconfig:"CDC_IGNORE_ORIGINS" desc:"comma list of origins: transactions carrying pg_logical_emit_message(true, 'shadowcube.origin', <origin>) with one of them are dropped (two-way sync loop prevention)"`
	Heartbeat         time.Duration `envconfig:"CDC_HEARTBEAT" min:"1ms" default:"1s" desc:"heartbeat interval"`
	HeartbeatMode     string        `envconfig:"CDC_HEARTBEAT_MODE" default:"table" desc:"table: upsert a row of the heartbeat table (published like any change: consumers' watermarks advance while legacy is idle); message: pg_logical_emit_message(false, ...), only advances the slot; off"`
	HeartbeatTable    string        `envconfig:"CDC_HEARTBEAT_TABLE" default:"shadowcube.heartbeat" desc:"heartbeat table of mode table, created when missing (cdc creates the schema shadowcube; a table in another schema needs that schema to exist)"`
	Window            int           `envconfig:"CDC_WINDOW" min:"1" default:"4096" desc:"events in flight to JetStream at most"`
	PublishTimeout    time.Duration `envconfig:"CDC_PUBLISH_TIMEOUT" min:"1ms" default:"10s" desc:"a publish not acknowledged within it restarts the session from the last durable LSN"`
	StatusInterval    time.Duration `envconfig:"CDC_STATUS_INTERVAL" min:"1ms" default:"1s" desc:"standby status update interval"`
	SpillThreshold    int64         `envconfig:"CDC_SPILL_THRESHOLD" min:"1" default:"16777216" desc:"bytes of one transaction held in memory before spilling to disk"`
	SpillDir          string        `envconfig:"CDC_SPILL_DIR" desc:"directory of spill files (default: the system temp dir)"`
	NoStreaming       bool          `envconfig:"CDC_NO_STREAMING" desc:"true: do not ask pgoutput to stream large in-progress transactions"`
	DecodingWorkMem   string        `envconfig:"CDC_DECODING_WORK_MEM" desc:"logical_decoding_work_mem of the replication session, e.g. 64MB (default: the server setting)"`
	SlotCheck         time.Duration `envconfig:"CDC_SLOT_CHECK" min:"1ms" default:"10s" desc:"interval of slot health and retained-WAL checks"`
	StreamMaxAge      time.Duration `envconfig:"CDC_STREAM_MAX_AGE" min:"0s" default:"0" desc:"retention of the CDC stream (0 = unlimited)"`
	StreamMaxBytes    int64         `envconfig:"CDC_STREAM_MAX_BYTES" min:"0" default:"0" desc:"size limit of the CDC stream (0 = unlimited)"`
	StreamReplicas    int           `envconfig:"CDC_STREAM_REPLICAS" min:"1" max:"5" default:"1" desc:"replicas of the CDC stream"`
	StreamStorage     string        `envconfig:"CDC_STREAM_STORAGE" default:"file" desc:"storage of the CDC stream: file or memory"`
	StreamDuplicates  time.Duration `envconfig:"CDC_STREAM_DUPLICATES" min:"1ms" default:"2m" desc:"de-duplication window of the CDC stream"`
}

// Config checks e and builds the reader's configuration; startup is
// SHADOWCUBE_STARTUP_TIMEOUT.
func (e *CDCEnv) Config(startup time.Duration) (cdc.Config, error) {
	if err := StorageValue("SHADOWCUBE_CDC_STREAM_STORAGE", e.StreamStorage); err != nil {
		return cdc.Config{}, err
	}
	if e.SourceDatabaseURL == "" {
		return cdc.Config{}, &process.EnvError{Var: "SHADOWCUBE_SOURCE_DATABASE_URL", Msg: "required: the legacy PostgreSQL URL, e.g. postgres://user@host:5432/db"}
	}
	return cdc.Config{
		DatabaseURL: e.SourceDatabaseURL, Slot: e.Slot, Publication: e.Publication,
		Tables: SplitList(e.Tables), Resnapshot: e.Resnapshot, IgnoreOrigins: SplitList(e.IgnoreOrigins),
		Heartbeat: e.Heartbeat, HeartbeatMode: e.HeartbeatMode, HeartbeatTable: e.HeartbeatTable,
		Window: e.Window, PublishTimeout: e.PublishTimeout, StatusInterval: e.StatusInterval,
		SpillThreshold: e.SpillThreshold, SpillDir: e.SpillDir, NoStreaming: e.NoStreaming,
		DecodingWorkMem: e.DecodingWorkMem, SlotCheck: e.SlotCheck, StartupTimeout: startup,
		Stream: cdc.StreamSettings{MaxAge: e.StreamMaxAge, MaxBytes: e.StreamMaxBytes, Replicas: e.StreamReplicas,
			Storage: e.StreamStorage, Duplicates: e.StreamDuplicates},
	}, nil
}

// NewCDC builds the cdc stage of p on conn.
func NewCDC(p *Process, conn *natsx.Conn, cfg cdc.Config) (*cdc.Reader, error) {
	return cdc.New(cfg, cdc.Deps{JetStream: conn.JS, Logger: p.Log, Registerer: p.Reg})
}

// SyncEnv is the configuration of `shadowcube sync` (and the mapping of
// reconcile and dlq replay).
type SyncEnv struct {
	MappingFile string        `envconfig:"MAPPING_FILE" flag:"mapping" desc:"mapping file (required)"`
	Targets     []string      `envconfig:"SYNC_TARGETS" flag:"target" desc:"sync only these targets (flag repeatable; variable: comma list)"`
	MaxBatch    int           `envconfig:"SYNC_MAX_BATCH" flag:"max-batch" min:"1" default:"5000" desc:"most source events per target transaction"`
	AckWait     time.Duration `envconfig:"SYNC_ACK_WAIT" min:"1s" default:"5m" desc:"JetStream ack wait of the consumers"`
	RetryMax    time.Duration `envconfig:"SYNC_RETRY_MAX" min:"1ms" default:"5s" desc:"longest back-off between retries of a transient failure"`
	SeqInterval time.Duration `envconfig:"SYNC_SEQUENCE_INTERVAL" flag:"sequence-interval" min:"1s" default:"30s" desc:"how often cube sequences are moved past the values in use"`
	Sequences   bool          `flag:"sequences" desc:"move the cube sequences past the values in use once, print them and exit"`
}

// Mapping is a loaded mapping file with the database URLs it names.
type Mapping struct {
	*consumers.Mapping
	SourceURL  string
	TargetURLs map[string]string // target name → URL ("" when its variable is unset)
}

// LoadMapping loads the mapping file and reads the database URLs its
// database_url_env fields name: the one way sync, reconcile, dlq replay
// and sync --sequences get their mapping.
func LoadMapping(path string) (*Mapping, error) {
	if path == "" {
		return nil, &process.EnvError{Var: "SHADOWCUBE_MAPPING_FILE", Msg: "required (or --mapping FILE): the mapping file"}
	}
	m, err := consumers.LoadMapping(path)
	if err != nil {
		return nil, err
	}
	src := os.Getenv(m.Source.DatabaseURLEnv)
	if src == "" {
		return nil, &process.EnvError{Var: m.Source.DatabaseURLEnv, Msg: "required by " + path + ": the legacy (source) PostgreSQL URL"}
	}
	urls := map[string]string{}
	for _, t := range m.Targets {
		urls[t.Name] = os.Getenv(t.DatabaseURLEnv)
	}
	return &Mapping{Mapping: m, SourceURL: src, TargetURLs: urls}, nil
}

// CheckTargets rejects target names the mapping does not have, listing the
// known ones: a typo must never sync or compare nothing.
func (m *Mapping) CheckTargets(only []string) error {
	var known []string
	for _, t := range m.Targets {
		known = append(known, t.Name)
	}
	for _, name := range only {
		if m.Target(name) == nil {
			return &FlagError{Flag: "target", Value: name, Msg: fmt.Sprintf("no such target in %s (known: %s)", m.File, strings.Join(known, ", "))}
		}
	}
	return nil
}

// Connect connects to the source and to target t with the pinned session
// settings (internal/pgsession), validates the mapping against both and
// calls f; both connections are closed after.
func (m *Mapping) Connect(ctx context.Context, t *consumers.Target, f func(src, dst *pgx.Conn) error) error {
	if m.TargetURLs[t.Name] == "" {
		return &process.EnvError{Var: t.DatabaseURLEnv, Msg: "required: database URL of target " + t.Name}
	}
	src, err := consumers.ConnectSource(ctx, m.SourceURL)
	if err != nil {
		return fmt.Errorf("connect to source database: %w", err)
	}
	defer src.Close(context.Background())
	dst, err := consumers.ConnectSource(ctx, m.TargetURLs[t.Name])
	if err != nil {
		return fmt.Errorf("connect to target %s: %w", t.Name, err)
	}
	defer dst.Close(context.Background())
	if err := m.Validate(ctx, t, src, dst); err != nil {
		return err
	}
	return f(src, dst)
}

// Selected lists the targets of only (all when empty).
func (m *Mapping) Selected(only []string) []*consumers.Target {
	var out []*consumers.Target
	for _, t := range m.Targets {
		if len(only) == 0 || slices.Contains(only, t.Name) {
			out = append(out, t)
		}
	}
	return out
}

// NewSync builds the sync stage of p on conn for the targets in only (all
// when empty).
func NewSync(p *Process, conn *natsx.Conn, e *SyncEnv, m *Mapping) (*consumers.Sync, error) {
	return consumers.New(consumers.Config{Mapping: m.Mapping, SourceURL: m.SourceURL, TargetURLs: m.TargetURLs, Only: e.Targets,
		MaxBatch: e.MaxBatch, AckWait: e.AckWait, RetryMax: e.RetryMax, SequenceInterval: e.SeqInterval},
		consumers.Deps{JetStream: conn.JS, Logger: p.Log, Registerer: p.Reg})
}

// ShadowEnv is the configuration of `shadowcube shadow`.
type ShadowEnv struct {
	// The tap's privacy rules, applied to the cubes' answers.
	redact.Env

	RoutesFile      string        `envconfig:"ROUTES_FILE" flag:"routes" desc:"routes file (required)"`
	Durable         string        `envconfig:"SHADOW_DURABLE" flag:"durable" default:"shadow" desc:"base name of the per-service durable consumers shared by replayers"`
	MaxInFlight     int           `envconfig:"SHADOW_MAX_IN_FLIGHT" flag:"max-in-flight" min:"1" default:"256" desc:"requests of one service handled at once by this process"`
	MaxAckPending   int           `envconfig:"SHADOW_MAX_ACK_PENDING" min:"0" default:"0" desc:"unacknowledged requests of one service over all processes (0: 4 × max in flight)"`
	Concurrency     int           `envconfig:"SHADOW_CONCURRENCY" flag:"concurrency" min:"1" default:"16" desc:"replays in flight per target when the service sets none"`
	Timeout         time.Duration `envconfig:"SHADOW_TIMEOUT" flag:"timeout" min:"1ms" default:"5s" desc:"per-request timeout when the service sets none"`
	FreshnessWait   time.Duration `envconfig:"SHADOW_FRESHNESS_WAIT" flag:"freshness-wait" min:"1ms" default:"10s" desc:"longest wait for a cube's sync watermark when the service sets none"`
	BreakerFailures int           `envconfig:"SHADOW_BREAKER_FAILURES" flag:"breaker-failures" min:"1" default:"5" desc:"consecutive failures that open a target's breaker"`
	BreakerOpen     time.Duration `envconfig:"SHADOW_BREAKER_OPEN" flag:"breaker-open" min:"1ms" default:"5s" desc:"how long an open breaker rejects replays"`
	BreakerProbes   int           `envconfig:"SHADOW_BREAKER_PROBES" min:"1" default:"1" desc:"probes a half-open breaker lets through"`
	MaxBodyBytes    int64         `envconfig:"SHADOW_MAX_BODY_BYTES" min:"1" default:"1048576" desc:"cap of a replayed answer's body; longer ones are cut and marked truncated"`
	AckWait         time.Duration `envconfig:"SHADOW_ACK_WAIT" min:"0s" default:"0" desc:"ack wait of the consumers (0: longest freshness wait + 2 × longest timeout + 30s)"`
	ResultsMaxAge   time.Duration `envconfig:"SHADOW_RESULTS_MAX_AGE" min:"0s" default:"0" desc:"retention of the SHADOW_RESULTS stream (0 = unlimited)"`
	ResultsMaxBytes int64         `envconfig:"SHADOW_RESULTS_MAX_BYTES" min:"0" default:"0" desc:"size limit of the SHADOW_RESULTS stream (0 = unlimited)"`
	ResultsReplicas int           `envconfig:"SHADOW_RESULTS_REPLICAS" min:"1" max:"5" default:"1" desc:"replicas of the SHADOW_RESULTS stream"`
	ResultsStorage  string        `envconfig:"SHADOW_RESULTS_STORAGE" default:"file" desc:"storage of the SHADOW_RESULTS stream: file or memory"`
	// CubeErrorAttempts: on which delivery a healthy cube's transport error
	// or 502/503/504 is recorded (earlier ones are replayed again).
	CubeErrorAttempts int `envconfig:"SHADOW_CUBE_ERROR_ATTEMPTS" default:"3" min:"1" max:"100" desc:"delivery on which a healthy cube's transport error or 502/503/504 is recorded as its answer (earlier ones are replayed again)"`

	Fused bool          `flag:"compare" desc:"compare and store the pairs in this process (fused replay + compare; the compare command's environment)"`
	Since string        `flag:"since" desc:"replay the requests captured from this time (RFC 3339) and exit"`
	Until string        `flag:"until" desc:"with --since: up to this capture time (RFC 3339; default now)"`
	Pace  string        `flag:"pace" default:"recorded" desc:"with --since: recorded, Nx (e.g. 10x) or max"`
	Loop  bool          `flag:"loop" desc:"with --since: repeat the window until stopped"`
	Skew  time.Duration `flag:"skew" default:"1m" desc:"with --since: how long after capture a request may have been stored"`
}

// Window reads the window replay flags; nil without --since. changed says
// which flags were given (a window flag without --since is an error).
func (e *ShadowEnv) Window(changed func(string) bool) (*shadow.Window, error) {
	if !changed("since") {
		for _, name := range []string{"until", "pace", "loop", "skew"} {
			if changed(name) {
				return nil, fmt.Errorf("shadow: --%s needs --since (a window replay)", name)
			}
		}
		return nil, nil
	}
	w := &shadow.Window{Loop: e.Loop, Skew: e.Skew}
	var err error
	if w.Since, err = time.Parse(time.RFC3339Nano, e.Since); err != nil {
		return nil, fmt.Errorf("shadow: --since %q: want an RFC 3339 time such as 2026-11-29T14:00:00Z", e.Since)
	}
	if e.Until != "" && e.Until != "now" {
		if w.Until, err = time.Parse(time.RFC3339Nano, e.Until); err != nil {
			return nil, fmt.Errorf("shadow: --until %q: want an RFC 3339 time such as 2026-11-29T15:00:00Z", e.Until)
		}
		if w.Until.Before(w.Since) {
			return nil, fmt.Errorf("shadow: --until %s is before --since %s", e.Until, e.Since)
		}
	}
	if w.Pace, err = shadow.ParsePace(e.Pace); err != nil {
		return nil, fmt.Errorf("shadow: --%w", err)
	}
	if e.Skew <= 0 {
		return nil, fmt.Errorf("shadow: --skew %v: must be positive", e.Skew)
	}
	return w, nil
}

// Config checks e, loads the routes file and the redaction rules and
// builds the replayer's configuration.
func (e *ShadowEnv) Config() (shadow.Config, error) {
	if e.RoutesFile == "" {
		return shadow.Config{}, &process.EnvError{Var: "SHADOWCUBE_ROUTES_FILE", Msg: "required: the routes file (or --routes FILE)"}
	}
	if err := StorageValue("SHADOWCUBE_SHADOW_RESULTS_STORAGE", e.ResultsStorage); err != nil {
		return shadow.Config{}, err
	}
	rf, err := routes.Load(e.RoutesFile)
	if err != nil {
		return shadow.Config{}, err
	}
	rules, err := redact.New(e.Env.Config())
	if err != nil {
		return shadow.Config{}, &process.EnvError{Var: "SHADOWCUBE_TAP_REDACT_*", Msg: err.Error()}
	}
	return shadow.Config{
		Redact: rules, Routes: rf, Durable: e.Durable, MaxInFlight: e.MaxInFlight, MaxAckPending: e.MaxAckPending,
		Timeout: e.Timeout, Concurrency: e.Concurrency, FreshnessWait: e.FreshnessWait,
		Breaker:      shadow.BreakerConfig{Failures: e.BreakerFailures, OpenFor: e.BreakerOpen, Probes: e.BreakerProbes},
		MaxBodyBytes: e.MaxBodyBytes, AckWait: e.AckWait, CubeErrorAttempts: e.CubeErrorAttempts,
		Results: shadow.StreamSettings{MaxAge: e.ResultsMaxAge, MaxBytes: e.ResultsMaxBytes,
			Replicas: e.ResultsReplicas, Storage: e.ResultsStorage},
		LookupEnv: os.LookupEnv,
	}, nil
}

// NewShadow builds the shadow stage of p on conn.
func NewShadow(p *Process, conn *natsx.Conn, cfg shadow.Config) (*shadow.Replayer, error) {
	return shadow.New(cfg, shadow.Deps{JetStream: conn.JS, Logger: p.Log, Registerer: p.Reg})
}

// NewShadowStage builds the shadow stage of e: with e.Fused (shadow
// --compare) the replayer compares and stores in process, with the compare
// command's settings (SHADOWCUBE_STORE_DATABASE_URL, SHADOWCUBE_COMPARE_*)
// and the same routes file, still publishing every result.
func NewShadowStage(ctx context.Context, p *Process, conn *natsx.Conn, e *ShadowEnv, cfg shadow.Config) (*shadow.Replayer, error) {
	if e.Fused {
		var ce CompareEnv
		if err := Load(&ce, nil); err != nil {
			return nil, err
		}
		ce.RoutesFile = e.RoutesFile
		if err := ce.Check(); err != nil {
			return nil, err
		}
		cmp, err := ce.Comparator()
		if err != nil {
			return nil, err
		}
		sink, _, err := NewFused(ctx, p, conn, &ce, cmp)
		if err != nil {
			return nil, err
		}
		cfg.Sink = sink
	}
	return NewShadow(p, conn, cfg)
}

// CompareEnv is the configuration of `shadowcube compare` and of the
// commands that read the mismatch store.
type CompareEnv struct {
	RoutesFile   string        `envconfig:"ROUTES_FILE" flag:"routes" desc:"routes file (required)"`
	StoreURL     string        `envconfig:"STORE_DATABASE_URL" desc:"PostgreSQL of the mismatch store (required)"`
	Schema       string        `envconfig:"COMPARE_SCHEMA" default:"shadowcube_compare" desc:"schema of the mismatch store"`
	Durable      string        `envconfig:"COMPARE_DURABLE" flag:"durable" default:"comparator" desc:"durable consumer name shared by comparators"`
	Batch        int           `envconfig:"COMPARE_BATCH" flag:"batch" default:"256" min:"1" desc:"pairs fetched and stored per transaction"`
	AckWait      time.Duration `envconfig:"COMPARE_ACK_WAIT" min:"1ms" default:"60s" desc:"redelivery after this long without an ack"`
	AcceptedFile string        `envconfig:"COMPARE_ACCEPTED_FILE" flag:"accepted" desc:"accepted-signatures YAML file (none)"`
	NoiseOff     bool          `envconfig:"COMPARE_NOISE_DISABLED" desc:"true: no noise suppression"`
	NoiseRel     float64       `envconfig:"COMPARE_NOISE_MIN_RELATIVE" min:">0" max:"<1" default:"0.2" desc:"noise rule: (cube-diff rate - noise rate) / their sum must exceed it"`
	NoiseAbs     float64       `envconfig:"COMPARE_NOISE_MIN_ABSOLUTE" min:">0" max:"<1" default:"0.0003" desc:"noise rule: cube-diff rate - noise rate must exceed it"`
	RepeatCache  int           `envconfig:"COMPARE_REPEAT_CACHE" default:"10000" min:"-1" desc:"recent answers kept to learn noise from repeated requests (-1: off)"`
	RepeatWindow time.Duration `envconfig:"COMPARE_REPEAT_WINDOW" min:"0s" default:"2s" desc:"captures within it count as repeats when no sync watermark tells"`
	AIMaxDrop    float64       `envconfig:"COMPARE_AI_MAX_DROP" min:">0" max:"<1" default:"0.05" desc:"AI rollback rule: allowed accuracy drop of the cube"`
	AIAlpha      float64       `envconfig:"COMPARE_AI_ALPHA" min:">0" max:"<1" default:"0.05" desc:"AI rollback rule: significance level of the two-proportion test"`
	AIMinSamples int64         `envconfig:"COMPARE_AI_MIN_SAMPLES" default:"30" min:"1" desc:"AI rollback rule: labelled samples needed before judging"`
	Longitude    float64       `envconfig:"COMPARE_SAJU_LONGITUDE" min:"-180" max:"180" default:"126.978" desc:"longitude of local mean time for saju attribution (not 0)"`
}

// Check rejects what the bounds tags cannot say.
func (e *CompareEnv) Check() error {
	if e.Longitude == 0 {
		return &process.EnvError{Var: "SHADOWCUBE_COMPARE_SAJU_LONGITUDE", Value: "0", Msg: "must be in [-180, 180], not 0"}
	}
	if e.StoreURL == "" {
		return &process.EnvError{Var: "SHADOWCUBE_STORE_DATABASE_URL", Msg: "required: the mismatch store's PostgreSQL URL"}
	}
	return nil
}

// Noise is the noise rule of e.
func (e *CompareEnv) Noise() comparator.NoiseConfig {
	return comparator.NoiseConfig{Disabled: e.NoiseOff, MinRelative: e.NoiseRel, MinAbsolute: e.NoiseAbs}
}

// AI is the AI rollback rule of e.
func (e *CompareEnv) AI() comparator.AIConfig {
	return comparator.AIConfig{MaxDrop: e.AIMaxDrop, Alpha: e.AIAlpha, MinSamples: e.AIMinSamples}
}

// OpenStore opens (and migrates) the mismatch store of e: the one way every
// command reaches it.
func (e *CompareEnv) OpenStore(ctx context.Context) (*comparator.Store, error) {
	if err := e.Check(); err != nil {
		return nil, err
	}
	return comparator.OpenStore(ctx, comparator.StoreConfig{DatabaseURL: e.StoreURL, Schema: e.Schema})
}

// Comparator loads the routes and accepted files and builds the comparator.
func (e *CompareEnv) Comparator() (*comparator.Comparator, error) {
	if e.RoutesFile == "" {
		return nil, &process.EnvError{Var: "SHADOWCUBE_ROUTES_FILE", Msg: "required: the routes file (or --routes FILE)"}
	}
	rf, err := routes.Load(e.RoutesFile)
	if err != nil {
		return nil, err
	}
	var acc *comparator.Accepted
	if e.AcceptedFile != "" {
		if acc, err = comparator.LoadAccepted(e.AcceptedFile); err != nil {
			return nil, err
		}
	}
	c, err := comparator.New(comparator.Config{
		Routes: RouteRules(rf), Noise: e.Noise(), AI: e.AI(), Accepted: acc, RepeatCache: e.RepeatCache, RepeatWindow: e.RepeatWindow,
		Saju: comparator.SajuConfig{Longitude: e.Longitude},
	})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", e.RoutesFile, err)
	}
	return c, nil
}

// NewCompare builds the compare stage of p: it opens the store (closed
// with p), seeds the comparator with the store's noise and AI counts (so a
// restart keeps what it learnt), and returns the consumer.
func NewCompare(ctx context.Context, p *Process, conn *natsx.Conn, e *CompareEnv, cmp *comparator.Comparator) (*comparator.Consumer, *comparator.Store, error) {
	deps, err := compareDeps(ctx, p, conn, e, cmp)
	if err != nil {
		return nil, nil, err
	}
	cons, err := comparator.NewConsumer(comparator.ConsumerConfig{Durable: e.Durable, Batch: e.Batch, AckWait: e.AckWait}, deps)
	return cons, deps.Store, err
}

// NewFused builds the in-process compare sink of shadow --compare, on the
// same store and seeding as NewCompare; it is closed with p, after the
// replayer that feeds it.
func NewFused(ctx context.Context, p *Process, conn *natsx.Conn, e *CompareEnv, cmp *comparator.Comparator) (*comparator.Fused, *comparator.Store, error) {
	deps, err := compareDeps(ctx, p, conn, e, cmp)
	if err != nil {
		return nil, nil, err
	}
	deps.Logger = p.Base.With("stage", "compare")
	f, err := comparator.NewFused(comparator.FusedConfig{Batch: e.Batch}, deps)
	if err != nil {
		return nil, nil, err
	}
	p.OnClose(func() { f.Close() })
	return f, deps.Store, nil
}

// compareDeps opens the store (closed with p) and seeds cmp from it.
func compareDeps(ctx context.Context, p *Process, conn *natsx.Conn, e *CompareEnv, cmp *comparator.Comparator) (comparator.Deps, error) {
	store, err := e.OpenStore(ctx)
	if err != nil {
		return comparator.Deps{}, err
	}
	p.OnClose(func() { store.Close() })
	if err := store.Seed(ctx, cmp); err != nil {
		return comparator.Deps{}, err
	}
	return comparator.Deps{JetStream: conn.JS, Comparator: cmp, Store: store, Logger: p.Log, Registerer: p.Reg}, nil
}

// RouteRules turns the routes file's compare sections into comparator rules.
func RouteRules(f *routes.File) []comparator.RouteRules {
	var out []comparator.RouteRules
	for _, s := range f.Services {
		for _, r := range s.Routes {
			c := r.Compare
			out = append(out, comparator.RouteRules{Service: s.Name, Route: r.Route, Rules: comparator.Rules{
				Kind: c.Kind, Ignore: c.Ignore, Tolerance: c.Tolerance, Unordered: c.Unordered, Headers: c.Headers,
				Presence: c.Presence, Normalize: comparator.StringNorm{
					Trim:          slices.Contains(c.Normalize, routes.NormTrim),
					CollapseSpace: slices.Contains(c.Normalize, routes.NormCollapseSpace),
					FoldCase:      slices.Contains(c.Normalize, routes.NormFoldCase),
				},
				Label: c.Label, Score: c.Score, TruthHeader: c.TruthHeader,
			}})
		}
	}
	return out
}
