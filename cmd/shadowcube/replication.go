package main

import (
	"errors"
	"strings"
	"time"

	"github.com/heal7/shadowcube/internal/natsx"
	"github.com/heal7/shadowcube/internal/process"
)

// replicationEnvHelp documents the settings of the stream and the bucket no
// single stage owns; every command reads them (setup).
const replicationEnvHelp = `
  SHADOWCUBE_DLQ_REPLICAS, SHADOWCUBE_DLQ_STORAGE (file|memory), SHADOWCUBE_DLQ_MAX_AGE, SHADOWCUBE_DLQ_MAX_BYTES
                               settings stream DLQ is created with by the first stage that dead-letters
                               (1, file, unlimited); an existing DLQ is never changed (nats stream edit DLQ)
  SHADOWCUBE_KV_REPLICAS, SHADOWCUBE_KV_STORAGE (file|memory), SHADOWCUBE_KV_MAX_BYTES
                               settings the shadowcube KV bucket (rollout flags, sync watermarks) is created
                               with by the first stage that opens it (1, file, unlimited); never changed after`

// sharedStoreEnv is read by every command: the settings of stream DLQ (every
// stage dead-letters, none owns it) and of the shadowcube KV bucket (sync
// and flags write it, shadow and tap read it). A stage creates them with
// these settings when they are missing and never updates them.
type sharedStoreEnv struct {
	DLQReplicas int           `envconfig:"DLQ_REPLICAS" min:"1" max:"5" default:"1"`
	DLQStorage  string        `envconfig:"DLQ_STORAGE" default:"file"`
	DLQMaxAge   time.Duration `envconfig:"DLQ_MAX_AGE" min:"0s" default:"0"`
	DLQMaxBytes int64         `envconfig:"DLQ_MAX_BYTES" min:"0" default:"0"`
	KVReplicas  int           `envconfig:"KV_REPLICAS" min:"1" max:"5" default:"1"`
	KVStorage   string        `envconfig:"KV_STORAGE" default:"file"`
	KVMaxBytes  int64         `envconfig:"KV_MAX_BYTES" min:"0" default:"0"`
}

// storageValue checks a SHADOWCUBE_*_STORAGE value.
func storageValue(name, v string) error {
	switch strings.ToLower(v) {
	case "", "file", "memory":
		return nil
	}
	return &process.EnvError{Var: name, Value: v, Msg: "want file or memory"}
}

// loadSharedStores reads sharedStoreEnv and hands it to natsx.
func loadSharedStores() error {
	var env sharedStoreEnv
	if err := process.Load(&env); err != nil {
		return err
	}
	if err := errors.Join(storageValue("SHADOWCUBE_DLQ_STORAGE", env.DLQStorage), storageValue("SHADOWCUBE_KV_STORAGE", env.KVStorage)); err != nil {
		return err
	}
	return natsx.SetSharedSettings(
		natsx.KVSettings{Replicas: env.KVReplicas, Storage: env.KVStorage, MaxBytes: env.KVMaxBytes},
		natsx.StreamSettings{Replicas: env.DLQReplicas, Storage: env.DLQStorage, MaxAge: env.DLQMaxAge, MaxBytes: env.DLQMaxBytes})
}
