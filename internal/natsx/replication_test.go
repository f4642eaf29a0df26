package natsx_test

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/heal7/shadowcube/internal/natsx"
	"github.com/heal7/shadowcube/internal/testenv"
	"github.com/heal7/shadowcube/schemas"
)

var allStreams = []string{schemas.StreamLegacyRequests, schemas.StreamCDC, schemas.StreamShadowResults, schemas.StreamDLQ}

// TestStreamSettingsReachConfig: replicas, storage, max age and max bytes of
// every stream reach its JetStream config; out-of-range values are errors
// naming the stream and the setting.
func TestStreamSettingsReachConfig(t *testing.T) {
	for _, name := range allStreams {
		cfg, err := natsx.StreamConfig(name, natsx.StreamSettings{Replicas: 3, Storage: "memory", MaxAge: 72 * time.Hour, MaxBytes: 1 << 30})
		if err != nil {
			t.Fatal(err)
		}
		if cfg.Replicas != 3 || cfg.Storage != jetstream.MemoryStorage || cfg.MaxAge != 72*time.Hour || cfg.MaxBytes != 1<<30 {
			t.Errorf("%s: %+v", name, cfg)
		}
		for _, bad := range []struct {
			s    natsx.StreamSettings
			want string
		}{
			{natsx.StreamSettings{Replicas: 6}, "replicas 6: want 1..5"},
			{natsx.StreamSettings{Replicas: -1}, "replicas -1"},
			{natsx.StreamSettings{Storage: "disk"}, `storage "disk"`},
			{natsx.StreamSettings{MaxAge: -time.Second}, "negative"},
			{natsx.StreamSettings{MaxBytes: -1}, "negative"},
		} {
			if _, err := natsx.StreamConfig(name, bad.s); err == nil || !strings.Contains(err.Error(), bad.want) || !strings.Contains(err.Error(), name) {
				t.Errorf("%s %+v: error %v, want one naming %s and %q", name, bad.s, err, name, bad.want)
			}
		}
	}
	kv := natsx.KVSettings{Replicas: 3, Storage: "memory", MaxBytes: 1 << 20}.Apply(jetstream.KeyValueConfig{Bucket: "b"})
	if kv.Replicas != 3 || kv.Storage != jetstream.MemoryStorage || kv.MaxBytes != 1<<20 {
		t.Errorf("KV settings: %+v", kv)
	}
	if err := (natsx.KVSettings{Replicas: 7, Storage: "tape", MaxBytes: -2}).Validate("KV"); err == nil ||
		!strings.Contains(err.Error(), "replicas 7") || !strings.Contains(err.Error(), `storage "tape"`) || !strings.Contains(err.Error(), "max bytes -2") {
		t.Errorf("KV validate: %v", err)
	}
	if err := natsx.SetSharedSettings(natsx.KVSettings{}, natsx.StreamSettings{Replicas: 9}); err == nil {
		t.Error("DLQ replicas 9 accepted")
	}
}

// TestReplicationOnCluster: on a 3-node cluster, every stream the owner
// ensures is R3 with the owner's limits; the DLQ and the shared KV bucket
// are created with the shared settings; a reader (StreamForReader,
// KVForReader, a dead-letter writer after the settings changed) never
// changes any of them.
func TestReplicationOnCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a 3-node NATS cluster")
	}
	cl := testenv.StartNATSCluster(t, 3)
	_, js := cl.Connect(t)
	ctx := testenv.Context(t, 2*time.Minute)
	t.Cleanup(func() { natsx.SetSharedSettings(natsx.KVSettings{}, natsx.StreamSettings{}) })
	if err := natsx.SetSharedSettings(natsx.KVSettings{Replicas: 3, MaxBytes: 1 << 20}, natsx.StreamSettings{Replicas: 3, MaxAge: time.Hour}); err != nil {
		t.Fatal(err)
	}
	for _, name := range allStreams[:3] {
		cfg, err := natsx.StreamConfig(name, natsx.StreamSettings{Replicas: 3, MaxAge: 48 * time.Hour, MaxBytes: 1 << 28})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := natsx.EnsureStream(ctx, js, cfg); err != nil {
			t.Fatal(err)
		}
	}
	d := schemas.DeadLetter{Stage: schemas.StageShadow, Reason: "test", Error: "x", FailedAt: time.Now()}
	if err := natsx.PublishDeadLetter(ctx, js, &d, ""); err != nil {
		t.Fatal(err)
	}
	if _, err := natsx.KVForReader(ctx, js, natsx.SharedKVConfig()); err != nil {
		t.Fatal(err)
	}
	check := func(when string) {
		t.Helper()
		for _, name := range allStreams {
			s, err := js.Stream(ctx, name)
			if err != nil {
				t.Fatal(err)
			}
			got := s.CachedInfo().Config
			wantAge, wantBytes := 48*time.Hour, int64(1<<28)
			if name == schemas.StreamDLQ {
				wantAge, wantBytes = time.Hour, -1
			}
			if got.Replicas != 3 || got.MaxAge != wantAge || got.MaxBytes != wantBytes {
				t.Errorf("%s: %s: replicas %d, max age %s, max bytes %d; want 3, %s, %d", when, name, got.Replicas, got.MaxAge, got.MaxBytes, wantAge, wantBytes)
			}
			if leader, err := testenv.StreamLeader(ctx, js, name); err != nil || leader == "" {
				t.Errorf("%s: %s: %v", when, name, err)
			}
		}
		kv, err := js.KeyValue(ctx, schemas.KVBucket)
		if err != nil {
			t.Fatal(err)
		}
		st, err := kv.Status(ctx)
		if err != nil {
			t.Fatal(err)
		}
		cfg := st.(*jetstream.KeyValueBucketStatus).StreamInfo().Config
		if cfg.Replicas != 3 || cfg.MaxBytes != 1<<20 || st.History() != 5 {
			t.Errorf("%s: KV bucket: replicas %d, max bytes %d, history %d", when, cfg.Replicas, cfg.MaxBytes, st.History())
		}
	}
	check("after the owners")
	// Readers, and a process started with other (default) shared settings.
	if err := natsx.SetSharedSettings(natsx.KVSettings{}, natsx.StreamSettings{}); err != nil {
		t.Fatal(err)
	}
	for _, name := range allStreams {
		if _, err := natsx.StreamForReader(ctx, js, name); err != nil {
			t.Fatal(err)
		}
	}
	if err := natsx.PublishDeadLetter(ctx, js, &d, ""); err != nil {
		t.Fatal(err)
	}
	if _, err := natsx.KVForReader(ctx, js, natsx.SharedKVConfig()); err != nil {
		t.Fatal(err)
	}
	check("after the readers")
}

// TestEnsureRetriesThroughLostQuorum: while a 3-node cluster has lost its
// quorum (two nodes down), the Ensure*/ForReader helpers get no answer or
// "temporarily unavailable"; they retry each bounded attempt and succeed
// once the nodes are back, instead of failing (or waiting out the caller's
// whole deadline on one unanswered request).
func TestEnsureRetriesThroughLostQuorum(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a 3-node NATS cluster")
	}
	cl := testenv.StartNATSCluster(t, 3)
	nc, js := cl.Connect(t)
	ctx := testenv.Context(t, 3*time.Minute)
	cfg, _ := natsx.StreamConfig(schemas.StreamLegacyRequests, natsx.StreamSettings{Replicas: 3})
	if _, err := natsx.EnsureStream(ctx, js, cfg); err != nil {
		t.Fatal(err)
	}
	cl.Nodes[1].Stop()
	cl.Nodes[2].Stop()
	// the client is on the remaining node
	for deadline := time.Now().Add(time.Minute); nc.ConnectedUrl() != "nats://127.0.0.1:"+strconv.Itoa(cl.Nodes[0].ClientPort); {
		if time.Now().After(deadline) {
			t.Fatalf("client not reconnected to %s: on %q", cl.Nodes[0].Name, nc.ConnectedUrl())
		}
		time.Sleep(50 * time.Millisecond)
	}
	before := natsx.APIRetries()
	callCtx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	errs := make(chan error, 3)
	go func() {
		_, err := natsx.EnsureConsumer(callCtx, js, schemas.StreamLegacyRequests, jetstream.ConsumerConfig{Durable: "quorum-test", AckPolicy: jetstream.AckExplicitPolicy})
		errs <- err
	}()
	go func() { _, err := natsx.StreamForReader(callCtx, js, schemas.StreamCDC); errs <- err }()
	go func() { _, err := natsx.KVForReader(callCtx, js, natsx.SharedKVConfig()); errs <- err }()
	// The fault hits: every call had an attempt fail transiently (or is
	// still waiting on its first) before the nodes come back.
	for deadline := time.Now().Add(time.Minute); natsx.APIRetries() < before+3; {
		select {
		case err := <-errs:
			t.Fatalf("a call returned while the cluster had no quorum: %v", err)
		default:
		}
		if time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if natsx.APIRetries() == before {
		t.Fatal("no attempt failed while the cluster had no quorum")
	}
	cl.Nodes[1].Start(t)
	cl.Nodes[2].Start(t)
	for range 3 {
		if err := <-errs; err != nil {
			t.Errorf("after the nodes came back: %v", err)
		}
	}
	t.Logf("retried attempts: %d", natsx.APIRetries()-before)
}
