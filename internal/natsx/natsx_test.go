package natsx_test

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/heal7/shadowcube/internal/natsx"
	"github.com/heal7/shadowcube/internal/testenv"
	"github.com/heal7/shadowcube/schemas"
)

func TestMain(m *testing.M) { os.Exit(testenv.Run(m)) }

func TestEnsureStreamIdempotentAndUpdates(t *testing.T) {
	n := testenv.StartNATS(t)
	_, js := n.Connect(t)
	ctx := testenv.Context(t, time.Minute)
	for _, name := range []string{schemas.StreamLegacyRequests, schemas.StreamCDC, schemas.StreamShadowResults, schemas.StreamDLQ} {
		cfg, err := natsx.StreamConfig(name, natsx.StreamSettings{MaxAge: time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i < 2; i++ { // second call is a no-op
			if _, err := natsx.EnsureStream(ctx, js, cfg); err != nil {
				t.Fatalf("ensure %s (call %d): %v", name, i+1, err)
			}
		}
	}
	// A changed limit is applied in place.
	cfg, _ := natsx.StreamConfig(schemas.StreamCDC, natsx.StreamSettings{MaxAge: 2 * time.Hour, MaxBytes: 1 << 30, Duplicates: 5 * time.Minute})
	s, err := natsx.EnsureStream(ctx, js, cfg)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.Config.MaxAge != 2*time.Hour || info.Config.MaxBytes != 1<<30 || info.Config.Duplicates != 5*time.Minute {
		t.Fatalf("update not applied: %+v", info.Config)
	}
	// Publishing to the pipeline's subjects lands in the right stream.
	ack, err := js.Publish(ctx, schemas.ChangeSubject("heal7", "public", "saju_records"), []byte("{}"))
	if err != nil || ack.Stream != schemas.StreamCDC {
		t.Fatalf("publish to CDC subject: %+v, %v", ack, err)
	}
}

func TestEnsureStreamIncompatible(t *testing.T) {
	n := testenv.StartNATS(t)
	_, js := n.Connect(t)
	ctx := testenv.Context(t, time.Minute)
	mem, _ := natsx.StreamConfig(schemas.StreamDLQ, natsx.StreamSettings{Storage: "memory"})
	if _, err := natsx.EnsureStream(ctx, js, mem); err != nil {
		t.Fatal(err)
	}
	file, _ := natsx.StreamConfig(schemas.StreamDLQ, natsx.StreamSettings{})
	_, err := natsx.EnsureStream(ctx, js, file)
	if !errors.Is(err, natsx.ErrIncompatibleStream) || !strings.Contains(err.Error(), "storage") {
		t.Fatalf("want ErrIncompatibleStream naming storage, got %v", err)
	}
}

func TestStreamConfigRejectsBadSettings(t *testing.T) {
	for _, tc := range []struct {
		name string
		s    natsx.StreamSettings
		want string
	}{
		{"NOPE", natsx.StreamSettings{}, "unknown stream"},
		{schemas.StreamCDC, natsx.StreamSettings{Retention: "forever"}, "retention"},
		{schemas.StreamCDC, natsx.StreamSettings{Storage: "tape"}, "storage"},
	} {
		if _, err := natsx.StreamConfig(tc.name, tc.s); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("StreamConfig(%s, %+v) = %v, want error mentioning %q", tc.name, tc.s, err, tc.want)
		}
	}
}

func TestConnectEmbeddedAndConsumer(t *testing.T) {
	ctx := testenv.Context(t, time.Minute)
	conn, err := natsx.Connect(ctx, natsx.Config{DataDir: t.TempDir()}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if !conn.Embedded() || !strings.HasPrefix(conn.ClientURL(), "nats://127.0.0.1:") {
		t.Fatalf("embedded = %v, url %s", conn.Embedded(), conn.ClientURL())
	}
	cfg, _ := natsx.StreamConfig(schemas.StreamShadowResults, natsx.StreamSettings{})
	if _, err := natsx.EnsureStream(ctx, conn.JS, cfg); err != nil {
		t.Fatal(err)
	}
	cc := jetstream.ConsumerConfig{Durable: "compare", AckPolicy: jetstream.AckExplicitPolicy, MaxAckPending: 100}
	if _, err := natsx.EnsureConsumer(ctx, conn.JS, schemas.StreamShadowResults, cc); err != nil {
		t.Fatal(err)
	}
	cc.MaxAckPending = 200 // an update of an updatable field
	c, err := natsx.EnsureConsumer(ctx, conn.JS, schemas.StreamShadowResults, cc)
	if err != nil {
		t.Fatal(err)
	}
	if c.CachedInfo().Config.MaxAckPending != 200 {
		t.Fatalf("consumer not updated: %+v", c.CachedInfo().Config)
	}
	if _, err := natsx.EnsureConsumer(ctx, conn.JS, schemas.StreamShadowResults, jetstream.ConsumerConfig{}); err == nil {
		t.Fatal("consumer without durable name accepted")
	}
	conn.Close()
	conn.Close() // idempotent
}

func TestConnectUnreachable(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := natsx.Connect(ctx, natsx.Config{URL: "nats://127.0.0.1:1"}, nil)
	if err == nil || !strings.Contains(err.Error(), "127.0.0.1:1") || !strings.Contains(err.Error(), "SHADOWCUBE_NATS_URL") {
		t.Fatalf("want a clear error naming the address and the variable, got %v", err)
	}
}
