package natsx_test

import (
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/heal7/shadowcube/internal/natsx"
	"github.com/heal7/shadowcube/internal/testenv"
	"github.com/heal7/shadowcube/schemas"
)

// TestStreamForReader: a reader creates a missing stream with default
// limits, and never changes an existing one; the owner's EnsureStream
// then sets its limits.
func TestStreamForReader(t *testing.T) {
	srv := testenv.StartNATS(t)
	_, js := srv.Connect(t)
	ctx := testenv.Context(t, time.Minute)
	s, err := natsx.StreamForReader(ctx, js, schemas.StreamCDC)
	if err != nil {
		t.Fatal(err)
	}
	if got := s.CachedInfo().Config; got.MaxAge != 0 || got.Subjects[0] != "cdc.>" {
		t.Fatalf("created by a reader: %+v", got)
	}
	owner, _ := natsx.StreamConfig(schemas.StreamCDC, natsx.StreamSettings{MaxAge: time.Hour})
	if _, err := natsx.EnsureStream(ctx, js, owner); err != nil {
		t.Fatal(err)
	}
	s, err = natsx.StreamForReader(ctx, js, schemas.StreamCDC)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil || info.Config.MaxAge != time.Hour {
		t.Fatalf("reader changed the owner's max age: %v %v", info.Config.MaxAge, err)
	}
	if _, err := natsx.StreamForReader(ctx, js, "NOPE"); err == nil {
		t.Fatal("unknown stream accepted")
	}
}

// TestKVForReader: the shared bucket is created with SharedKVConfig when
// missing; an existing bucket keeps its settings.
func TestKVForReader(t *testing.T) {
	srv := testenv.StartNATS(t)
	_, js := srv.Connect(t)
	ctx := testenv.Context(t, time.Minute)
	kv, err := natsx.KVForReader(ctx, js, natsx.SharedKVConfig())
	if err != nil {
		t.Fatal(err)
	}
	st, err := kv.Status(ctx)
	if err != nil || st.History() != 5 || st.Bucket() != schemas.KVBucket {
		t.Fatalf("created: %v %v", st, err)
	}
	if err := js.DeleteKeyValue(ctx, schemas.KVBucket); err != nil {
		t.Fatal(err)
	}
	if _, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: schemas.KVBucket, History: 9}); err != nil {
		t.Fatal(err)
	}
	kv, err = natsx.KVForReader(ctx, js, natsx.SharedKVConfig())
	if err != nil {
		t.Fatal(err)
	}
	if st, err := kv.Status(ctx); err != nil || st.History() != 9 {
		t.Fatalf("existing bucket changed: %v %v", st, err)
	}
}
