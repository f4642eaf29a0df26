package natsx

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/heal7/shadowcube/schemas"
)

// MaxReplicas is the largest replica count JetStream allows for a stream or
// bucket.
const MaxReplicas = 5

// StreamSettings are the operator-tunable limits of a stream.
type StreamSettings struct {
	Retention  string        // limits (default) | interest | workqueue
	Storage    string        // file (default) | memory
	MaxAge     time.Duration // 0 = unlimited
	MaxBytes   int64         // 0 = unlimited
	Replicas   int           // default 1
	Duplicates time.Duration // de-duplication window for Nats-Msg-Id; default 2m
}

// StreamConfig returns the JetStream config of one of the pipeline's streams
// (schemas.StreamLegacyRequests, StreamCDC, StreamShadowResults, StreamDLQ).
func StreamConfig(name string, s StreamSettings) (jetstream.StreamConfig, error) {
	var subject string
	switch name {
	case schemas.StreamLegacyRequests:
		subject = schemas.PrefixLegacyRequest + ".>"
	case schemas.StreamCDC:
		subject = schemas.PrefixCDC + ".>"
	case schemas.StreamShadowResults:
		subject = schemas.PrefixShadowResult + ".>"
	case schemas.StreamDLQ:
		subject = schemas.PrefixDLQ + ".>"
	default:
		return jetstream.StreamConfig{}, fmt.Errorf("unknown stream %q: want one of %s, %s, %s, %s", name,
			schemas.StreamLegacyRequests, schemas.StreamCDC, schemas.StreamShadowResults, schemas.StreamDLQ)
	}
	cfg := jetstream.StreamConfig{
		Name:       name,
		Subjects:   []string{subject},
		MaxAge:     s.MaxAge,
		MaxBytes:   s.MaxBytes,
		Replicas:   s.Replicas,
		Duplicates: s.Duplicates,
		MaxMsgSize: schemas.MaxEventSize,
	}
	if cfg.Replicas == 0 {
		cfg.Replicas = 1
	}
	if s.Replicas < 0 || s.Replicas > MaxReplicas {
		return cfg, fmt.Errorf("stream %s: replicas %d: want 1..%d", name, s.Replicas, MaxReplicas)
	}
	if s.MaxAge < 0 || s.MaxBytes < 0 || s.Duplicates < 0 {
		return cfg, fmt.Errorf("stream %s: max age %s, max bytes %d, duplicates window %s: none may be negative (0 = default)", name, s.MaxAge, s.MaxBytes, s.Duplicates)
	}
	if cfg.MaxBytes == 0 {
		cfg.MaxBytes = -1
	}
	if cfg.Duplicates == 0 {
		cfg.Duplicates = 2 * time.Minute
	}
	switch strings.ToLower(s.Retention) {
	case "", "limits":
		cfg.Retention = jetstream.LimitsPolicy
	case "interest":
		cfg.Retention = jetstream.InterestPolicy
	case "workqueue":
		cfg.Retention = jetstream.WorkQueuePolicy
	default:
		return cfg, fmt.Errorf("stream %s: retention %q: want limits, interest or workqueue", name, s.Retention)
	}
	switch strings.ToLower(s.Storage) {
	case "", "file":
		cfg.Storage = jetstream.FileStorage
	case "memory":
		cfg.Storage = jetstream.MemoryStorage
	default:
		return cfg, fmt.Errorf("stream %s: storage %q: want file or memory", name, s.Storage)
	}
	return cfg, nil
}

// ErrIncompatibleStream means a stream of that name exists with a config that
// JetStream cannot update in place (storage, retention, or subjects owned by
// another stream). Fix it by hand (nats stream edit/rm) after reading the error.
var ErrIncompatibleStream = errors.New("existing stream has an incompatible config")

// EnsureStream creates the stream, or updates it to cfg when it exists. Only
// the stage that writes a stream and owns its settings calls it (tap and
// import: LEGACY_REQUESTS, cdc: CDC, shadow: SHADOW_RESULTS); every other
// stage opens it with StreamForReader, so that a reader's defaults never
// reset the limits the owner set. It is idempotent. A change JetStream cannot apply in place returns an error
// wrapping ErrIncompatibleStream that names the field and both values.
func EnsureStream(ctx context.Context, js jetstream.JetStream, cfg jetstream.StreamConfig) (jetstream.Stream, error) {
	var s jetstream.Stream
	err := apiRetry(ctx, func(ctx context.Context) (err error) {
		s, err = ensureStreamOnce(ctx, js, cfg)
		return err
	})
	return s, err
}

func ensureStreamOnce(ctx context.Context, js jetstream.JetStream, cfg jetstream.StreamConfig) (jetstream.Stream, error) {
	existing, err := js.Stream(ctx, cfg.Name)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		s, err := js.CreateStream(ctx, cfg)
		if err != nil {
			if errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
				return ensureStreamOnce(ctx, js, cfg)
			}
			return nil, fmt.Errorf("create stream %s (subjects %v): %w", cfg.Name, cfg.Subjects, err)
		}
		return s, nil
	}
	if err != nil {
		return nil, fmt.Errorf("look up stream %s: %w", cfg.Name, err)
	}
	have := existing.CachedInfo().Config
	if have.Storage != cfg.Storage {
		return nil, fmt.Errorf("stream %s: storage is %s, shadowcube wants %s: %w", cfg.Name, have.Storage, cfg.Storage, ErrIncompatibleStream)
	}
	if have.Retention != cfg.Retention {
		return nil, fmt.Errorf("stream %s: retention is %s, shadowcube wants %s: %w", cfg.Name, have.Retention, cfg.Retention, ErrIncompatibleStream)
	}
	if streamUpToDate(have, cfg) {
		return existing, nil
	}
	s, err := js.UpdateStream(ctx, cfg)
	if transient(context.Background(), err) { // retried by apiRetry
		return nil, fmt.Errorf("update stream %s: %w", cfg.Name, err)
	}
	if err != nil {
		return nil, fmt.Errorf("update stream %s from %+v: %w: %w", cfg.Name, have, ErrIncompatibleStream, err)
	}
	return s, nil
}

// StreamForReader opens one of the pipeline's streams for a stage that does
// not own its settings: a reader (shadow reads LEGACY_REQUESTS, sync reads
// CDC, compare reads SHADOW_RESULTS) or a writer of a stream nobody
// configures (every stage dead-letters into DLQ). A missing stream is
// created with default limits (DLQ: with the settings of
// SetSharedSettings), so a reader may start before the owner; an existing
// stream is returned as it is, never updated.
func StreamForReader(ctx context.Context, js jetstream.JetStream, name string) (jetstream.Stream, error) {
	var s jetstream.Stream
	err := apiRetry(ctx, func(ctx context.Context) (err error) {
		s, err = streamForReaderOnce(ctx, js, name)
		return err
	})
	return s, err
}

func streamForReaderOnce(ctx context.Context, js jetstream.JetStream, name string) (jetstream.Stream, error) {
	s, err := js.Stream(ctx, name)
	if err == nil {
		return s, nil
	}
	if !errors.Is(err, jetstream.ErrStreamNotFound) {
		return nil, fmt.Errorf("look up stream %s: %w", name, err)
	}
	var cfg jetstream.StreamConfig
	if name == schemas.StreamDLQ {
		cfg, err = DLQStreamConfig()
	} else {
		cfg, err = StreamConfig(name, StreamSettings{})
	}
	if err != nil {
		return nil, err
	}
	s, err = js.CreateStream(ctx, cfg)
	if errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
		s, err = js.Stream(ctx, name) // created meanwhile by its owner or another reader
	}
	if err != nil {
		return nil, fmt.Errorf("create stream %s (subjects %v): %w", name, cfg.Subjects, err)
	}
	return s, nil
}

func streamUpToDate(have, want jetstream.StreamConfig) bool {
	return slices.Equal(have.Subjects, want.Subjects) && have.MaxAge == want.MaxAge &&
		have.MaxBytes == want.MaxBytes && have.Replicas == want.Replicas &&
		have.Duplicates == want.Duplicates && have.MaxMsgSize == want.MaxMsgSize
}

// EnsureConsumer creates or updates a durable consumer on stream. cfg.Durable
// must be set: shadowcube's consumers survive restarts.
func EnsureConsumer(ctx context.Context, js jetstream.JetStream, stream string, cfg jetstream.ConsumerConfig) (jetstream.Consumer, error) {
	if cfg.Durable == "" {
		return nil, fmt.Errorf("ensure consumer on %s: durable name required", stream)
	}
	var c jetstream.Consumer
	err := apiRetry(ctx, func(ctx context.Context) (err error) {
		c, err = js.CreateOrUpdateConsumer(ctx, stream, cfg)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("ensure consumer %s on stream %s: %w", cfg.Durable, stream, err)
	}
	return c, nil
}

// EnsureKV creates a key-value bucket or updates it to cfg: for the owner
// of a bucket only (cdc's state bucket). Stages that share a bucket use
// KVForReader.
func EnsureKV(ctx context.Context, js jetstream.JetStream, cfg jetstream.KeyValueConfig) (jetstream.KeyValue, error) {
	var kv jetstream.KeyValue
	err := apiRetry(ctx, func(ctx context.Context) (err error) {
		kv, err = js.CreateOrUpdateKeyValue(ctx, cfg)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("ensure KV bucket %s: %w", cfg.Bucket, err)
	}
	return kv, nil
}

// KVForReader opens a key-value bucket, creating it with cfg only when it is
// missing; an existing bucket is never updated (the shared shadowcube bucket
// is written by sync and flags and read by shadow and tap: no stage resets
// another's history setting).
func KVForReader(ctx context.Context, js jetstream.JetStream, cfg jetstream.KeyValueConfig) (jetstream.KeyValue, error) {
	var kv jetstream.KeyValue
	err := apiRetry(ctx, func(ctx context.Context) (err error) {
		kv, err = js.KeyValue(ctx, cfg.Bucket)
		if errors.Is(err, jetstream.ErrBucketNotFound) {
			kv, err = js.CreateKeyValue(ctx, cfg)
			if errors.Is(err, jetstream.ErrBucketExists) {
				kv, err = js.KeyValue(ctx, cfg.Bucket)
			}
		}
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("open KV bucket %s: %w", cfg.Bucket, err)
	}
	return kv, nil
}

// KVSettings are the operator-tunable settings of a key-value bucket.
type KVSettings struct {
	Replicas int    // default 1, at most MaxReplicas
	Storage  string // file (default) | memory
	MaxBytes int64  // 0 = unlimited
}

// Validate names the setting that is out of range; what names the bucket or
// its variables in the message.
func (s KVSettings) Validate(what string) error {
	var errs []error
	if s.Replicas < 0 || s.Replicas > MaxReplicas {
		errs = append(errs, fmt.Errorf("%s: replicas %d: want 1..%d", what, s.Replicas, MaxReplicas))
	}
	if s.MaxBytes < 0 {
		errs = append(errs, fmt.Errorf("%s: max bytes %d: must not be negative (0 = unlimited)", what, s.MaxBytes))
	}
	switch strings.ToLower(s.Storage) {
	case "", "file", "memory":
	default:
		errs = append(errs, fmt.Errorf("%s: storage %q: want file or memory", what, s.Storage))
	}
	return errors.Join(errs...)
}

// Apply sets the replicas, storage and size limit of cfg from s (zero
// fields keep JetStream's defaults: 1 replica, file storage, unlimited).
func (s KVSettings) Apply(cfg jetstream.KeyValueConfig) jetstream.KeyValueConfig {
	cfg.Replicas = max(s.Replicas, 1)
	cfg.MaxBytes = s.MaxBytes
	if cfg.MaxBytes == 0 {
		cfg.MaxBytes = -1
	}
	cfg.Storage = jetstream.FileStorage
	if strings.EqualFold(s.Storage, "memory") {
		cfg.Storage = jetstream.MemoryStorage
	}
	return cfg
}

// shared holds the process-wide settings of the stream and the bucket that
// several stages write and none owns: DLQ (every stage dead-letters) and the
// shadowcube KV bucket (sync writes watermarks, flags writes rollout flags,
// shadow and tap read). The command sets them once at start-up
// (SetSharedSettings); every stage that finds them missing creates them
// with these settings, and no stage updates them, so two processes with
// different settings never fight over them.
var shared struct {
	mu  sync.Mutex
	kv  KVSettings
	dlq StreamSettings
}

// SetSharedSettings sets the settings the DLQ stream and the shared KV bucket
// are created with when a stage finds them missing (see shared). It
// validates both first and changes nothing on an error.
func SetSharedSettings(kv KVSettings, dlq StreamSettings) error {
	err := kv.Validate("KV bucket " + schemas.KVBucket)
	if _, derr := StreamConfig(schemas.StreamDLQ, dlq); derr != nil {
		err = errors.Join(err, derr)
	}
	if err != nil {
		return err
	}
	shared.mu.Lock()
	defer shared.mu.Unlock()
	shared.kv, shared.dlq = kv, dlq
	return nil
}

func sharedSettings() (KVSettings, StreamSettings) {
	shared.mu.Lock()
	defer shared.mu.Unlock()
	return shared.kv, shared.dlq
}

// SharedKVConfig is the config of the shadowcube KV bucket (schemas.KVBucket)
// that sync (watermarks) and flags write and shadow and tap read. Every stage
// creates it, when missing, with this one config (KVForReader), so the
// bucket is the same whichever stage starts first; its replicas, storage and
// size come from SetSharedSettings.
func SharedKVConfig() jetstream.KeyValueConfig {
	kv, _ := sharedSettings()
	return kv.Apply(jetstream.KeyValueConfig{Bucket: schemas.KVBucket, History: 5})
}

// DLQStreamConfig is the config stream DLQ is created with when a dead-letter
// writer finds it missing (settings from SetSharedSettings).
func DLQStreamConfig() (jetstream.StreamConfig, error) {
	_, dlq := sharedSettings()
	return StreamConfig(schemas.StreamDLQ, dlq)
}

// APIAttemptTimeout bounds one attempt of a JetStream API call of the
// Ensure*/ *ForReader helpers. A request that reaches a stream or the
// meta leader during an election can go unanswered; without a bound of its
// own it would wait for the caller's whole deadline.
const APIAttemptTimeout = 10 * time.Second

// apiRetries counts retried attempts (read by tests).
var apiRetries atomic.Int64

// apiRetry runs op, each attempt bounded by APIAttemptTimeout, and retries
// a transient failure (see transient) with back-off until ctx ends (30s
// when ctx has no deadline). The last error is returned.
func apiRetry(ctx context.Context, op func(ctx context.Context) error) error {
	ctx, cancel := withDefaultTimeout(ctx)
	defer cancel()
	delay := 100 * time.Millisecond
	for {
		actx, acancel := context.WithTimeout(ctx, APIAttemptTimeout)
		err := op(actx)
		acancel()
		if err == nil || !transient(ctx, err) {
			return err
		}
		apiRetries.Add(1)
		select {
		case <-ctx.Done():
			return err
		case <-time.After(delay):
		}
		delay = min(2*delay, 2*time.Second)
	}
}

// transient says whether err is what a JetStream cluster answers while it
// elects a leader or a node restarts: no answer within the attempt's
// bound, no responders, or "temporarily unavailable" (503). ctx is the
// caller's: its own end is never transient.
func transient(ctx context.Context, err error) bool {
	if err == nil || ctx.Err() != nil || errors.Is(err, ErrIncompatibleStream) {
		return false
	}
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout) || errors.Is(err, nats.ErrNoResponders) ||
		errors.Is(err, jetstream.ErrJetStreamNotEnabled) || errors.Is(err, jetstream.ErrNoStreamResponse) {
		return true
	}
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) && apiErr.Code == 503
}

// withDefaultTimeout adds a 30s deadline only when the caller set none.
func withDefaultTimeout(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, 30*time.Second)
}

// PullExpiry bounds each pull request of the consumers. The client's
// continuous Messages iterator can lose track of its outstanding pull
// request (nats.go 1.55: seen as a stall with messages waiting and no pull
// on the server) and only recovers after two missed heartbeats, each half
// the expiry: 30 s at the default expiry, 5 s at this one. The sync applier
// fetches with this bound instead, which cannot stall that way.
const PullExpiry = 5 * time.Second
