package main

import (
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/heal7/shadowcube/internal/natsx"
	"github.com/heal7/shadowcube/internal/process"
	"github.com/heal7/shadowcube/internal/wiring"
	"github.com/heal7/shadowcube/schemas"
)

// TestReplicationEnvReachesSettings: each SHADOWCUBE_*_REPLICAS / _STORAGE /
// _MAX_AGE / _MAX_BYTES variable reaches the settings its stream or bucket
// is created with; out-of-range values are errors naming the variable.
func TestReplicationEnvReachesSettings(t *testing.T) {
	t.Cleanup(func() { natsx.SetSharedSettings(natsx.KVSettings{}, natsx.StreamSettings{}) })
	t.Setenv("SHADOWCUBE_DLQ_REPLICAS", "3")
	t.Setenv("SHADOWCUBE_DLQ_STORAGE", "memory")
	t.Setenv("SHADOWCUBE_DLQ_MAX_AGE", "240h")
	t.Setenv("SHADOWCUBE_DLQ_MAX_BYTES", "1000000")
	t.Setenv("SHADOWCUBE_KV_REPLICAS", "5")
	t.Setenv("SHADOWCUBE_KV_STORAGE", "memory")
	t.Setenv("SHADOWCUBE_KV_MAX_BYTES", "2000000")
	if err := wiring.LoadSharedStores(); err != nil {
		t.Fatal(err)
	}
	dlq, err := natsx.DLQStreamConfig()
	if err != nil {
		t.Fatal(err)
	}
	if dlq.Name != schemas.StreamDLQ || dlq.Replicas != 3 || dlq.Storage != jetstream.MemoryStorage || dlq.MaxAge != 240*time.Hour || dlq.MaxBytes != 1000000 {
		t.Errorf("DLQ config: %+v", dlq)
	}
	kv := natsx.SharedKVConfig()
	if kv.Bucket != schemas.KVBucket || kv.Replicas != 5 || kv.Storage != jetstream.MemoryStorage || kv.MaxBytes != 2000000 || kv.History != 5 {
		t.Errorf("KV config: %+v", kv)
	}

	t.Setenv("SHADOWCUBE_LEGACY_REQUESTS_REPLICAS", "3")
	t.Setenv("SHADOWCUBE_LEGACY_REQUESTS_STORAGE", "memory")
	t.Setenv("SHADOWCUBE_LEGACY_REQUESTS_MAX_AGE", "72h")
	t.Setenv("SHADOWCUBE_LEGACY_REQUESTS_MAX_BYTES", "1GiB")
	var ce wiring.CaptureEnv
	if err := process.Load(&ce); err != nil {
		t.Fatal(err)
	}
	s, err := ce.StreamSettings()
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := natsx.StreamConfig(schemas.StreamLegacyRequests, s)
	if err != nil || cfg.Replicas != 3 || cfg.Storage != jetstream.MemoryStorage || cfg.MaxAge != 72*time.Hour || cfg.MaxBytes != 1<<30 {
		t.Errorf("LEGACY_REQUESTS config %+v, %v", cfg, err)
	}

	t.Setenv("SHADOWCUBE_CDC_STREAM_REPLICAS", "3")
	t.Setenv("SHADOWCUBE_CDC_STREAM_STORAGE", "memory")
	var cd wiring.CDCEnv
	if err := process.Load(&cd); err != nil || cd.StreamReplicas != 3 || cd.StreamStorage != "memory" {
		t.Errorf("cdc env %+v, %v", cd, err)
	}
	t.Setenv("SHADOWCUBE_SHADOW_RESULTS_REPLICAS", "3")
	var sh wiring.ShadowEnv
	if err := process.Load(&sh); err != nil || sh.ResultsReplicas != 3 {
		t.Errorf("shadow env %+v, %v", sh, err)
	}

	// Out of range: the error names the variable; the settings stay.
	for _, bad := range []struct{ name, value, want string }{
		{"SHADOWCUBE_DLQ_REPLICAS", "6", "SHADOWCUBE_DLQ_REPLICAS"},
		{"SHADOWCUBE_DLQ_REPLICAS", "0", "SHADOWCUBE_DLQ_REPLICAS"},
		{"SHADOWCUBE_KV_REPLICAS", "-1", "SHADOWCUBE_KV_REPLICAS"},
		{"SHADOWCUBE_KV_STORAGE", "disk", "SHADOWCUBE_KV_STORAGE"},
		{"SHADOWCUBE_DLQ_STORAGE", "tape", "SHADOWCUBE_DLQ_STORAGE"},
		{"SHADOWCUBE_DLQ_MAX_BYTES", "-5", "SHADOWCUBE_DLQ_MAX_BYTES"},
	} {
		t.Run(bad.name+"="+bad.value, func(t *testing.T) {
			t.Setenv(bad.name, bad.value)
			err := wiring.LoadSharedStores()
			if err == nil || !strings.Contains(err.Error(), bad.want) {
				t.Errorf("error %v, want one naming %s", err, bad.want)
			}
			if natsx.SharedKVConfig().Replicas != 5 {
				t.Error("a rejected setting changed the shared settings")
			}
		})
	}
	for _, bad := range []struct{ name, value string }{
		{"SHADOWCUBE_LEGACY_REQUESTS_REPLICAS", "6"}, {"SHADOWCUBE_LEGACY_REQUESTS_STORAGE", "disk"},
	} {
		t.Run(bad.name+"="+bad.value, func(t *testing.T) {
			t.Setenv(bad.name, bad.value)
			var ce wiring.CaptureEnv
			err := process.Load(&ce)
			if err == nil {
				_, err = ce.StreamSettings()
			}
			if err == nil || !strings.Contains(err.Error(), bad.name) {
				t.Errorf("error %v, want one naming %s", err, bad.name)
			}
		})
	}
}
