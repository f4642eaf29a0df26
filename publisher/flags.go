package publisher

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/heal7/shadowcube/internal/natsx"
	"github.com/heal7/shadowcube/schemas"
)

// FlagKeyPrefix starts the KV key of every rollout flag.
const FlagKeyPrefix = "rollout."

// FlagKey is the KV key of a service's rollout flag: rollout.<service>.
func FlagKey(service string) string { return FlagKeyPrefix + schemas.EscapeToken(service) }

// Ramp moves a flag's percent from From toward To by Step, once at Start and
// again after each Every.
type Ramp struct {
	From  int       `json:"from"`
	To    int       `json:"to"`
	Step  int       `json:"step"`
	Every string    `json:"every"` // Go duration, e.g. "1h0m0s"
	Start time.Time `json:"start"`
}

// Flag is the rollout state of one service, stored as JSON under FlagKey.
type Flag struct {
	V         string    `json:"v"`
	Service   string    `json:"service"`
	Percent   int       `json:"percent"`
	Ramp      *Ramp     `json:"ramp,omitempty"`
	UpdatedAt time.Time `json:"updated_at"`
}

// Effective is the percent in force at now (the ramp's current step, or
// Percent when no ramp runs).
func (f Flag) Effective(now time.Time) int {
	if f.Ramp == nil {
		return clampPct(f.Percent)
	}
	every, err := time.ParseDuration(f.Ramp.Every)
	if err != nil || every <= 0 || now.Before(f.Ramp.Start) {
		return clampPct(f.Percent)
	}
	steps := int64(now.Sub(f.Ramp.Start)/every) + 1
	step := int64(f.Ramp.Step)
	if f.Ramp.To < f.Ramp.From {
		step = -step
	}
	p := int64(f.Ramp.From) + steps*step
	if (step > 0 && p > int64(f.Ramp.To)) || (step < 0 && p < int64(f.Ramp.To)) || step == 0 {
		p = int64(f.Ramp.To)
	}
	return clampPct(int(p))
}

func clampPct(p int) int { return max(0, min(100, p)) }

// DecodeFlag decodes a flag value from the KV bucket.
func DecodeFlag(data []byte) (Flag, error) {
	var f Flag
	if err := json.Unmarshal(data, &f); err != nil {
		return Flag{}, fmt.Errorf("decode rollout flag: %w", err)
	}
	if maj, _, _ := strings.Cut(f.V, "."); maj != "1" {
		return Flag{}, fmt.Errorf("decode rollout flag: version %q: this build reads 1.x", f.V)
	}
	if f.Percent < 0 || f.Percent > 100 {
		return Flag{}, fmt.Errorf("decode rollout flag of %s: percent %d outside 0..100", f.Service, f.Percent)
	}
	return f, nil
}

// ErrNoFlag means the service has no rollout flag: nobody is rolled out.
var ErrNoFlag = errors.New("no rollout flag")

// Flags reads and writes rollout flags in the KV bucket.
type Flags struct{ kv jetstream.KeyValue }

// OpenFlags opens (creating when missing) the shadowcube KV bucket.
func OpenFlags(ctx context.Context, js jetstream.JetStream) (*Flags, error) {
	kv, err := natsx.KVForReader(ctx, js, natsx.SharedKVConfig())
	if err != nil {
		return nil, err
	}
	return &Flags{kv: kv}, nil
}

// KV returns the bucket.
func (f *Flags) KV() jetstream.KeyValue { return f.kv }

func validService(s string) error { return ValidServiceName(s) }

// ValidServiceName checks a service name for a rollout flag: 1 to 64
// letters, digits, '-' and '_' (what a KV key and a subject token hold as
// they are).
func ValidServiceName(s string) error {
	if s == "" {
		return errors.New("service name is empty: use 1 to 64 letters, digits, '-' and '_'")
	}
	if len(s) > 64 || strings.IndexFunc(s, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_')
	}) >= 0 {
		return fmt.Errorf("service name %q: use 1 to 64 letters, digits, '-' and '_'", s)
	}
	return nil
}

// Set puts the service at percent now, cancelling any ramp.
func (f *Flags) Set(ctx context.Context, service string, percent int) (Flag, error) {
	if err := validService(service); err != nil {
		return Flag{}, err
	}
	if percent < 0 || percent > 100 {
		return Flag{}, fmt.Errorf("percent %d: want 0..100", percent)
	}
	fl := Flag{V: schemas.Version, Service: service, Percent: percent, UpdatedAt: time.Now().UTC()}
	return fl, f.put(ctx, fl)
}

// Ramp starts a ramp from the current effective percent to `to`, by step,
// first step now, then every interval.
func (f *Flags) Ramp(ctx context.Context, service string, to, step int, every time.Duration) (Flag, error) {
	if err := validService(service); err != nil {
		return Flag{}, err
	}
	if to < 0 || to > 100 || step < 1 || step > 100 || every <= 0 {
		return Flag{}, fmt.Errorf("ramp to %d by %d every %s: want to in 0..100, step in 1..100, every > 0", to, step, every)
	}
	cur, err := f.Get(ctx, service)
	if err != nil && !errors.Is(err, ErrNoFlag) {
		return Flag{}, err
	}
	now := time.Now().UTC()
	from := cur.Effective(now)
	fl := Flag{V: schemas.Version, Service: service, Percent: from, UpdatedAt: now,
		Ramp: &Ramp{From: from, To: to, Step: step, Every: every.String(), Start: now}}
	return fl, f.put(ctx, fl)
}

func (f *Flags) put(ctx context.Context, fl Flag) error {
	data, err := json.Marshal(fl)
	if err != nil {
		return err
	}
	if _, err := f.kv.Put(ctx, FlagKey(fl.Service), data); err != nil {
		return fmt.Errorf("write rollout flag %s: %w", FlagKey(fl.Service), err)
	}
	return nil
}

// Get returns the service's flag, or ErrNoFlag (with a zero Flag).
func (f *Flags) Get(ctx context.Context, service string) (Flag, error) {
	e, err := f.kv.Get(ctx, FlagKey(service))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return Flag{V: schemas.Version, Service: service}, fmt.Errorf("service %s: %w", service, ErrNoFlag)
	}
	if err != nil {
		return Flag{}, fmt.Errorf("read rollout flag %s: %w", FlagKey(service), err)
	}
	return DecodeFlag(e.Value())
}

// List returns every service's flag, sorted by service.
func (f *Flags) List(ctx context.Context) ([]Flag, error) {
	lister, err := f.kv.ListKeysFiltered(ctx, FlagKeyPrefix+">")
	if err != nil {
		return nil, fmt.Errorf("list rollout flags: %w", err)
	}
	var out []Flag
	for key := range lister.Keys() {
		e, err := f.kv.Get(ctx, key)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("read rollout flag %s: %w", key, err)
		}
		fl, err := DecodeFlag(e.Value())
		if err != nil {
			return nil, fmt.Errorf("key %s: %w", key, err)
		}
		out = append(out, fl)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Service < out[j].Service })
	return out, nil
}

// FlagWatcher keeps a service's current flag, following the KV bucket. It
// implements Rollout. A missing or malformed flag means 0%.
type FlagWatcher struct {
	flag atomic.Pointer[Flag]
	w    jetstream.KeyWatcher
	done chan struct{}
	once sync.Once
	log  *slog.Logger
}

// WatchFlag starts following the service's flag; it returns once the
// current value is loaded. Close stops it.
func WatchFlag(ctx context.Context, kv jetstream.KeyValue, service string, log *slog.Logger) (*FlagWatcher, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	w, err := kv.Watch(context.Background(), FlagKey(service))
	if err != nil {
		return nil, fmt.Errorf("watch rollout flag %s: %w", FlagKey(service), err)
	}
	fw := &FlagWatcher{w: w, done: make(chan struct{}), log: log}
	fw.flag.Store(&Flag{Service: service})
	ready := make(chan struct{})
	go fw.run(ready)
	select {
	case <-ready:
		return fw, nil
	case <-ctx.Done():
		fw.Close()
		return nil, fmt.Errorf("watch rollout flag %s: %w", FlagKey(service), ctx.Err())
	}
}

func (fw *FlagWatcher) run(ready chan struct{}) {
	defer close(fw.done)
	readyOnce := sync.OnceFunc(func() { close(ready) })
	defer readyOnce()
	for e := range fw.w.Updates() {
		if e == nil { // end of the initial values
			readyOnce()
			continue
		}
		if e.Operation() != jetstream.KeyValuePut {
			fw.flag.Store(&Flag{Service: fw.flag.Load().Service})
			fw.log.Info("rollout flag removed: 0%", "key", e.Key())
			continue
		}
		fl, err := DecodeFlag(e.Value())
		if err != nil {
			fw.log.Error("bad rollout flag; keeping 0%", "key", e.Key(), "err", err)
			fl = Flag{Service: fw.flag.Load().Service}
		}
		fw.flag.Store(&fl)
		fw.log.Info("rollout flag changed", "key", e.Key(), "percent", fl.Effective(time.Now()))
	}
}

// Flag returns the current flag.
func (fw *FlagWatcher) Flag() Flag { return *fw.flag.Load() }

// Percent is the percent in force now.
func (fw *FlagWatcher) Percent() int {
	f := fw.flag.Load()
	if f.Percent == 0 && f.Ramp == nil {
		return 0
	}
	return f.Effective(time.Now())
}

// Close stops watching. Idempotent.
func (fw *FlagWatcher) Close() error {
	fw.once.Do(func() {
		_ = fw.w.Stop()
		select {
		case <-fw.done:
		case <-time.After(5 * time.Second): // the closed callback never came (connection gone)
		}
	})
	return nil
}
