package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/heal7/shadowcube/internal/natsx"
	"github.com/heal7/shadowcube/publisher"
)

func newFlagsCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "flags",
		Short: "Percentage rollout flags of the cubes (set, get, list, ramp)",
		Long:  help("flags") + commonEnvHelp,
	}
	cmd.PersistentFlags().BoolVar(&asJSON, "json", false, "print JSON")
	// run checks args[0] (when given) is a service name, opens the flags
	// bucket, and prints the flags f returns.
	run := func(f func(ctx context.Context, fl *publisher.Flags, args []string) ([]publisher.Flag, error)) func(*cobra.Command, []string) error {
		return func(cmd *cobra.Command, args []string) error {
			if len(args) > 0 {
				if err := publisher.ValidServiceName(args[0]); err != nil {
					return usageError{err}
				}
			}
			return withNATS(cmd, "flags", func(ctx context.Context, env *Env, conn *natsx.Conn) error {
				fl, err := publisher.OpenFlags(ctx, conn.JS)
				if err != nil {
					return err
				}
				out, err := f(ctx, fl, args)
				if err != nil {
					return err
				}
				return showFlags(env.Stdout, asJSON, out)
			})
		}
	}
	var pct int
	set := &cobra.Command{
		Use: "set <service> <percent>", Short: "Set a service's rollout percent now (cancels a ramp)",
		Args: cobra.ExactArgs(2),
		PreRunE: func(_ *cobra.Command, args []string) error {
			if err := publisher.ValidServiceName(args[0]); err != nil {
				return usageError{err}
			}
			var err error
			if pct, err = strconv.Atoi(args[1]); err != nil || pct < 0 || pct > 100 {
				return usageError{percentError(args[1])}
			}
			return nil
		},
		RunE: run(func(ctx context.Context, fl *publisher.Flags, args []string) ([]publisher.Flag, error) {
			f, err := fl.Set(ctx, args[0], pct)
			return []publisher.Flag{f}, err
		}),
	}
	get := &cobra.Command{
		Use: "get <service>", Short: "Show a service's rollout flag", Args: cobra.ExactArgs(1),
		RunE: run(func(ctx context.Context, fl *publisher.Flags, args []string) ([]publisher.Flag, error) {
			f, err := fl.Get(ctx, args[0])
			if errors.Is(err, publisher.ErrNoFlag) {
				err = nil
			}
			return []publisher.Flag{f}, err
		}),
	}
	list := &cobra.Command{
		Use: "list", Short: "List every service's rollout flag", Args: cobra.NoArgs,
		RunE: run(func(ctx context.Context, fl *publisher.Flags, _ []string) ([]publisher.Flag, error) {
			return fl.List(ctx)
		}),
	}
	var to, step int
	var every time.Duration
	ramp := &cobra.Command{
		Use: "ramp <service> --to PERCENT --step N --every DURATION", Short: "Ramp a service's percent step by step", Args: cobra.ExactArgs(1),
		PreRunE: func(*cobra.Command, []string) error {
			if to < 0 || to > 100 || step < 1 || step > 100 || every <= 0 {
				return usageError{fmt.Errorf("--to %d --step %d --every %s: want --to 0..100, --step 1..100, --every > 0", to, step, every)}
			}
			return nil
		},
		RunE: run(func(ctx context.Context, fl *publisher.Flags, args []string) ([]publisher.Flag, error) {
			f, err := fl.Ramp(ctx, args[0], to, step, every)
			return []publisher.Flag{f}, err
		}),
	}
	ramp.Flags().IntVar(&to, "to", -1, "target percent 0..100 (required)")
	ramp.Flags().IntVar(&step, "step", 10, "percent per step")
	ramp.Flags().DurationVar(&every, "every", time.Hour, "time between steps")
	// "flags set saju -1" would otherwise fail as an unknown flag "-1".
	set.SetFlagErrorFunc(negativeArg(percentError))
	cmd.AddCommand(set, get, list, ramp)
	return cmd
}

func percentError(arg string) error {
	return fmt.Errorf("percent %q: want an integer 0..100", arg)
}

// showFlags prints fl as JSON lines or as a table.
func showFlags(w io.Writer, asJSON bool, fl []publisher.Flag) error {
	if asJSON {
		enc := json.NewEncoder(w)
		for _, f := range fl {
			if err := enc.Encode(f); err != nil {
				return err
			}
		}
		return nil
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SERVICE\tPERCENT NOW\tRAMP\tUPDATED")
	now := time.Now()
	for _, f := range fl {
		ramp, upd := "-", "-"
		if r := f.Ramp; r != nil {
			ramp = fmt.Sprintf("%d%% → %d%% by %d every %s since %s", r.From, r.To, r.Step, r.Every, r.Start.Format(time.RFC3339))
		}
		if !f.UpdatedAt.IsZero() {
			upd = f.UpdatedAt.Format(time.RFC3339)
		}
		fmt.Fprintf(tw, "%s\t%d%%\t%s\t%s\n", f.Service, f.Effective(now), ramp, upd)
	}
	return tw.Flush()
}
