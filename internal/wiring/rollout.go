package wiring

import (
	"time"

	"github.com/heal7/shadowcube/internal/process"
	"github.com/heal7/shadowcube/internal/rollout"
)

// RolloutEnv is the configuration of `shadowcube rollout`.
type RolloutEnv struct {
	Service     string        `flag:"service" desc:"the service of the rollout flag and taps (required)"`
	Forward     string        `envconfig:"ROLLOUT_FORWARD_MAPPING" flag:"forward" desc:"forward mapping file (legacy → cube; required)"`
	Reverse     string        `envconfig:"ROLLOUT_REVERSE_MAPPING" flag:"reverse" desc:"reverse mapping file (cube → legacy, source.side: cube; required)"`
	FlagWait    time.Duration `envconfig:"ROLLOUT_FLAG_WAIT" flag:"flag-wait" min:"100ms" max:"10m" default:"5s" desc:"rollback: longest wait for every tap to apply 0%"`
	InFlight    time.Duration `envconfig:"ROLLOUT_INFLIGHT_WAIT" flag:"inflight-wait" min:"100ms" max:"1h" default:"30s" desc:"rollback: longest wait for the requests at the cube to end"`
	CatchUp     time.Duration `envconfig:"ROLLOUT_CATCHUP_WAIT" flag:"catchup-wait" min:"100ms" max:"1h" default:"60s" desc:"rollback: longest wait for reverse sync to apply what the cube committed"`
	Settle      time.Duration `envconfig:"ROLLOUT_SETTLE" flag:"settle" min:"0s" max:"1h" default:"20s" desc:"rollback: reconcile's wait for rows in flight"`
	TapStaleAge time.Duration `envconfig:"ROLLOUT_TAP_STALE" min:"500ms" max:"10m" default:"5s" desc:"tap reports older than this are of stopped taps"`
}

// Missing says which required settings are not given ("" when none is).
func (e *RolloutEnv) Missing() string {
	if e.Service == "" || e.Forward == "" || e.Reverse == "" {
		return "rollout: --service, --forward (SHADOWCUBE_ROLLOUT_FORWARD_MAPPING) and --reverse (SHADOWCUBE_ROLLOUT_REVERSE_MAPPING) are required"
	}
	return ""
}

// Config loads both mappings (with LoadMapping: the database URLs their
// variables name); the NATS handle is the caller's to set.
func (e *RolloutEnv) Config() (rollout.Config, error) {
	fm, err := LoadMapping(e.Forward)
	if err != nil {
		return rollout.Config{}, err
	}
	rm, err := LoadMapping(e.Reverse)
	if err != nil {
		return rollout.Config{}, err
	}
	cfg := rollout.Config{Service: e.Service, Forward: fm.Mapping, Reverse: rm.Mapping, FlagWait: e.FlagWait, InFlightWait: e.InFlight,
		CatchUpWait: e.CatchUp, Settle: e.Settle, TapStale: e.TapStaleAge, LegacyURL: fm.SourceURL}
	if len(fm.Targets) > 0 {
		cfg.CubeURL = fm.TargetURLs[fm.Targets[0].Name]
	}
	if cfg.CubeURL == "" {
		v := "the cube database URL"
		if len(fm.Targets) > 0 {
			v = fm.Targets[0].DatabaseURLEnv
		}
		return rollout.Config{}, &process.EnvError{Var: v, Msg: "required by " + e.Forward + ": the cube database URL"}
	}
	return cfg, nil
}
