package main

import (
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/heal7/shadowcube/consumers"
	"github.com/heal7/shadowcube/internal/process"
	"github.com/heal7/shadowcube/internal/rollout"
)

type rolloutEnv struct {
	Forward     string        `envconfig:"ROLLOUT_FORWARD_MAPPING" desc:"forward mapping file (legacy → cube)"`
	Reverse     string        `envconfig:"ROLLOUT_REVERSE_MAPPING" desc:"reverse mapping file (cube → legacy, source.side: cube)"`
	FlagWait    time.Duration `envconfig:"ROLLOUT_FLAG_WAIT" min:"100ms" max:"10m" default:"5s" desc:"longest wait for every tap to apply 0%"`
	InFlight    time.Duration `envconfig:"ROLLOUT_INFLIGHT_WAIT" min:"100ms" max:"1h" default:"30s" desc:"longest wait for the requests at the cube to end"`
	CatchUp     time.Duration `envconfig:"ROLLOUT_CATCHUP_WAIT" min:"100ms" max:"1h" default:"60s" desc:"longest wait for reverse sync to apply what the cube committed"`
	Settle      time.Duration `envconfig:"ROLLOUT_SETTLE" min:"0s" max:"1h" default:"20s" desc:"reconcile's wait for rows in flight"`
	TapStaleAge time.Duration `envconfig:"ROLLOUT_TAP_STALE" min:"500ms" max:"10m" default:"5s" desc:"tap reports older than this are of stopped taps"`
}

const rolloutHelp = `rollout shows and rolls back a cube's rollout, with two-way sync running
(cdc + sync legacy → cube with the forward mapping, cdc + sync cube → legacy
with the reverse mapping; see README "Rollout and rollback").

  shadowcube rollout status --service saju
      flag percent and ramp, forward and reverse sync lag, live taps and the
      requests they have at the cube, conflicts recorded in both databases
      (shadowcube.sync_conflicts), DLQ depth, the last reconcile a drill
      recorded, the gate verdict (not available in this build).

  shadowcube rollout rollback --service saju
      the rollback drill, each step printed with its duration and verdict:
        1. set the flag to 0%;
        2. wait until every live tap reports it applies 0% (taps follow the
           flag within 1 s; bound --flag-wait);
        3. wait until no tap has a request at the cube (bound --inflight-wait);
        4. read the cube database's pg_current_wal_lsn() and wait until the
           reverse sync watermark passes it (bound --catchup-wait): everything
           the cube committed is in legacy;
        5. reconcile legacy → cube and cube → legacy.
      Exit 0 only when every step passed and both reconciles are clean;
      1 when the drill ran and something is not clean; 2 on bad usage.

Flags:
  --service NAME        the service of the rollout flag and taps (required)
  --forward FILE        SHADOWCUBE_ROLLOUT_FORWARD_MAPPING  forward mapping (required)
  --reverse FILE        SHADOWCUBE_ROLLOUT_REVERSE_MAPPING  reverse mapping (required)
  --flag-wait D         SHADOWCUBE_ROLLOUT_FLAG_WAIT        (5s)
  --inflight-wait D     SHADOWCUBE_ROLLOUT_INFLIGHT_WAIT    (30s)
  --catchup-wait D      SHADOWCUBE_ROLLOUT_CATCHUP_WAIT     (60s)
  --settle D            SHADOWCUBE_ROLLOUT_SETTLE           reconcile's wait for rows in flight (20s)

Environment: the database URL variables the mappings name (the forward
mapping's source is legacy, its target the cube).`

func newRolloutCmd() *cobra.Command {
	var e rolloutEnv
	var service, fwd, rev string
	var flagWait, inflight, catchup, settle time.Duration
	load := func(cmd *cobra.Command) (rollout.Config, error) {
		if err := process.Load(&e); err != nil {
			return rollout.Config{}, err
		}
		f := cmd.Flags()
		for _, o := range []struct {
			name string
			s    *string
			v    string
		}{{"forward", &e.Forward, fwd}, {"reverse", &e.Reverse, rev}} {
			if f.Changed(o.name) {
				*o.s = o.v
			}
		}
		for _, o := range []struct {
			name string
			d    *time.Duration
			v    time.Duration
		}{{"flag-wait", &e.FlagWait, flagWait}, {"inflight-wait", &e.InFlight, inflight}, {"catchup-wait", &e.CatchUp, catchup}, {"settle", &e.Settle, settle}} {
			if f.Changed(o.name) {
				*o.d = o.v
			}
		}
		if service == "" || e.Forward == "" || e.Reverse == "" {
			return rollout.Config{}, usageError{errors.New("rollout: --service, --forward (SHADOWCUBE_ROLLOUT_FORWARD_MAPPING) and --reverse (SHADOWCUBE_ROLLOUT_REVERSE_MAPPING) are required")}
		}
		fm, err := consumers.LoadMapping(e.Forward)
		if err != nil {
			return rollout.Config{}, err
		}
		rm, err := consumers.LoadMapping(e.Reverse)
		if err != nil {
			return rollout.Config{}, err
		}
		cfg := rollout.Config{Service: service, Forward: fm, Reverse: rm, FlagWait: e.FlagWait, InFlightWait: e.InFlight,
			CatchUpWait: e.CatchUp, Settle: e.Settle, TapStale: e.TapStaleAge}
		cfg.LegacyURL = os.Getenv(fm.Source.DatabaseURLEnv)
		if len(fm.Targets) > 0 {
			cfg.CubeURL = os.Getenv(fm.Targets[0].DatabaseURLEnv)
		}
		if cfg.LegacyURL == "" || cfg.CubeURL == "" {
			return rollout.Config{}, &process.EnvError{Var: fm.Source.DatabaseURLEnv + " and " + fm.Targets[0].DatabaseURLEnv,
				Msg: "required by " + e.Forward + ": the legacy and cube database URLs"}
		}
		return cfg, nil
	}
	cmd := &cobra.Command{
		Use:   "rollout",
		Short: "Rollout status and the rollback drill (two-way sync)",
		Long:  rolloutHelp + commonEnvHelp,
	}
	pf := cmd.PersistentFlags()
	pf.StringVar(&service, "service", "", "service of the rollout flag and taps")
	pf.StringVar(&fwd, "forward", "", "forward mapping file (legacy → cube)")
	pf.StringVar(&rev, "reverse", "", "reverse mapping file (cube → legacy)")
	status := &cobra.Command{
		Use:   "status",
		Short: "One screen of a service's rollout",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := load(cmd)
			if err != nil {
				return err
			}
			ctx, env, err := setup(cmd, "rollout", false)
			if err != nil {
				return err
			}
			defer env.Close()
			conn, err := env.ConnectNATS(ctx)
			if err != nil {
				return err
			}
			cfg.JS = conn.JS
			r, err := rollout.Status(ctx, cfg)
			if err != nil {
				return err
			}
			return r.WriteText(env.Stdout)
		},
	}
	rollback := &cobra.Command{
		Use:   "rollback",
		Short: "Send every user back to legacy and prove nothing the cube wrote is lost",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := load(cmd)
			if err != nil {
				return err
			}
			ctx, env, err := setup(cmd, "rollout", false)
			if err != nil {
				return err
			}
			defer env.Close()
			conn, err := env.ConnectNATS(ctx)
			if err != nil {
				return err
			}
			cfg.JS = conn.JS
			n := 0
			d, err := rollout.Rollback(ctx, cfg, func(s rollout.Step) {
				n++
				v := "ok"
				if !s.OK {
					v = "FAILED"
				}
				fmt.Fprintf(env.Stderr, "rollback: step %d %s: %s in %s %s\n", n, s.Name, v, s.Duration.Round(time.Millisecond), s.Detail)
			})
			if err != nil {
				return err
			}
			if err := d.WriteText(env.Stdout); err != nil {
				return err
			}
			if !d.Clean() {
				return &exitError{code: 1, err: errors.New("rollout rollback: the drill is not clean")}
			}
			return nil
		},
	}
	for _, c := range []*cobra.Command{rollback} {
		f := c.Flags()
		f.DurationVar(&flagWait, "flag-wait", 5*time.Second, "longest wait for every tap to apply 0%")
		f.DurationVar(&inflight, "inflight-wait", 30*time.Second, "longest wait for the requests at the cube to end")
		f.DurationVar(&catchup, "catchup-wait", 60*time.Second, "longest wait for reverse sync to apply what the cube committed")
		f.DurationVar(&settle, "settle", 20*time.Second, "reconcile's wait for rows in flight")
	}
	cmd.AddCommand(status, rollback)
	return cmd
}
