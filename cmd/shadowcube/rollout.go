package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/heal7/shadowcube/internal/natsx"
	"github.com/heal7/shadowcube/internal/rollout"
	"github.com/heal7/shadowcube/internal/wiring"
)

func newRolloutCmd() *cobra.Command {
	var e wiring.RolloutEnv
	// run reads the configuration, connects to NATS and calls f.
	run := func(cmd *cobra.Command, f func(ctx context.Context, env *Env, cfg rollout.Config) error) error {
		if err := load(cmd, &e); err != nil {
			return err
		}
		if m := e.Missing(); m != "" {
			return usageError{errors.New(m)}
		}
		cfg, err := e.Config()
		if err != nil {
			return err
		}
		return withNATS(cmd, "rollout", func(ctx context.Context, env *Env, conn *natsx.Conn) error {
			cfg.JS = conn.JS
			return f(ctx, env, cfg)
		})
	}
	cmd := &cobra.Command{
		Use:   "rollout",
		Short: "Rollout status and the rollback drill (two-way sync)",
		Long:  help("rollout") + wiring.EnvHelp("Environment", &e) + commonEnvHelp,
	}
	wiring.BindFlags(cmd.PersistentFlags(), &e)
	status := &cobra.Command{
		Use:   "status",
		Short: "One screen of a service's rollout",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return run(cmd, func(ctx context.Context, env *Env, cfg rollout.Config) error {
				r, err := rollout.Status(ctx, cfg)
				if err != nil {
					return err
				}
				return r.WriteText(env.Stdout)
			})
		},
	}
	rollback := &cobra.Command{
		Use:   "rollback",
		Short: "Send every user back to legacy and prove nothing the cube wrote is lost",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return run(cmd, func(ctx context.Context, env *Env, cfg rollout.Config) error {
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
			})
		},
	}
	cmd.AddCommand(status, rollback)
	return cmd
}
