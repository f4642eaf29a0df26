package natsx

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/heal7/shadowcube/schemas"
)

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
	ctx, cancel := withDefaultTimeout(ctx)
	defer cancel()
	existing, err := js.Stream(ctx, cfg.Name)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		s, err := js.CreateStream(ctx, cfg)
		if err != nil {
			if errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
				return EnsureStream(ctx, js, cfg)
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
	if err != nil {
		return nil, fmt.Errorf("update stream %s from %+v: %w: %w", cfg.Name, have, ErrIncompatibleStream, err)
	}
	return s, nil
}

// StreamForReader opens one of the pipeline's streams for a stage that does
// not own its settings: a reader (shadow reads LEGACY_REQUESTS, sync reads
// CDC, compare reads SHADOW_RESULTS) or a writer of a stream nobody
// configures (every stage dead-letters into DLQ). A missing stream is
// created with default limits, so a reader may start before the owner; an
// existing stream is returned as it is, never updated.
func StreamForReader(ctx context.Context, js jetstream.JetStream, name string) (jetstream.Stream, error) {
	ctx, cancel := withDefaultTimeout(ctx)
	defer cancel()
	s, err := js.Stream(ctx, name)
	if err == nil {
		return s, nil
	}
	if !errors.Is(err, jetstream.ErrStreamNotFound) {
		return nil, fmt.Errorf("look up stream %s: %w", name, err)
	}
	cfg, err := StreamConfig(name, StreamSettings{})
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
	ctx, cancel := withDefaultTimeout(ctx)
	defer cancel()
	c, err := js.CreateOrUpdateConsumer(ctx, stream, cfg)
	if err != nil {
		return nil, fmt.Errorf("ensure consumer %s on stream %s: %w", cfg.Durable, stream, err)
	}
	return c, nil
}

// EnsureKV creates a key-value bucket or updates it to cfg: for the owner
// of a bucket only (cdc's state bucket). Stages that share a bucket use
// KVForReader.
func EnsureKV(ctx context.Context, js jetstream.JetStream, cfg jetstream.KeyValueConfig) (jetstream.KeyValue, error) {
	ctx, cancel := withDefaultTimeout(ctx)
	defer cancel()
	kv, err := js.CreateOrUpdateKeyValue(ctx, cfg)
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
	ctx, cancel := withDefaultTimeout(ctx)
	defer cancel()
	kv, err := js.KeyValue(ctx, cfg.Bucket)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		kv, err = js.CreateKeyValue(ctx, cfg)
		if errors.Is(err, jetstream.ErrBucketExists) {
			kv, err = js.KeyValue(ctx, cfg.Bucket)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("open KV bucket %s: %w", cfg.Bucket, err)
	}
	return kv, nil
}

// SharedKVConfig is the config of the shadowcube KV bucket (schemas.KVBucket)
// that sync (watermarks) and flags write and shadow and tap read. Every stage
// creates it, when missing, with this one config (KVForReader), so the
// bucket is the same whichever stage starts first.
func SharedKVConfig() jetstream.KeyValueConfig {
	return jetstream.KeyValueConfig{Bucket: schemas.KVBucket, History: 5}
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
