package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

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
	open := func(cmd *cobra.Command) (*publisher.Flags, func(), error) {
		ctx, e, err := setup(cmd, "flags", false)
		if err != nil {
			return nil, nil, err
		}
		conn, err := e.ConnectNATS(ctx)
		if err != nil {
			e.Close()
			return nil, nil, err
		}
		f, err := publisher.OpenFlags(ctx, conn.JS)
		if err != nil {
			e.Close()
			return nil, nil, err
		}
		return f, e.Close, nil
	}
	show := func(w io.Writer, fl ...publisher.Flag) error {
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
			ramp := "-"
			if r := f.Ramp; r != nil {
				ramp = fmt.Sprintf("%d%% → %d%% by %d every %s since %s", r.From, r.To, r.Step, r.Every, r.Start.Format(time.RFC3339))
			}
			upd := "-"
			if !f.UpdatedAt.IsZero() {
				upd = f.UpdatedAt.Format(time.RFC3339)
			}
			fmt.Fprintf(tw, "%s\t%d%%\t%s\t%s\n", f.Service, f.Effective(now), ramp, upd)
		}
		return tw.Flush()
	}
	set := &cobra.Command{
		Use: "set <service> <percent>", Short: "Set a service's rollout percent now (cancels a ramp)", Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := publisher.ValidServiceName(args[0]); err != nil {
				return usageError{err}
			}
			pct, err := strconv.Atoi(args[1])
			if err != nil || pct < 0 || pct > 100 {
				return usageError{percentError(args[1])}
			}
			f, done, err := open(cmd)
			if err != nil {
				return err
			}
			defer done()
			fl, err := f.Set(cmd.Context(), args[0], pct)
			if err != nil {
				return err
			}
			return show(cmd.OutOrStdout(), fl)
		},
	}
	get := &cobra.Command{
		Use: "get <service>", Short: "Show a service's rollout flag", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := publisher.ValidServiceName(args[0]); err != nil {
				return usageError{err}
			}
			f, done, err := open(cmd)
			if err != nil {
				return err
			}
			defer done()
			fl, err := f.Get(cmd.Context(), args[0])
			if err != nil && !errors.Is(err, publisher.ErrNoFlag) {
				return err
			}
			return show(cmd.OutOrStdout(), fl)
		},
	}
	list := &cobra.Command{
		Use: "list", Short: "List every service's rollout flag", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			f, done, err := open(cmd)
			if err != nil {
				return err
			}
			defer done()
			fl, err := f.List(cmd.Context())
			if err != nil {
				return err
			}
			return show(cmd.OutOrStdout(), fl...)
		},
	}
	var to, step int
	var every time.Duration
	ramp := &cobra.Command{
		Use: "ramp <service> --to PERCENT --step N --every DURATION", Short: "Ramp a service's percent step by step", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if to < 0 || to > 100 || step < 1 || step > 100 || every <= 0 {
				return usageError{fmt.Errorf("--to %d --step %d --every %s: want --to 0..100, --step 1..100, --every > 0", to, step, every)}
			}
			if err := publisher.ValidServiceName(args[0]); err != nil {
				return usageError{err}
			}
			f, done, err := open(cmd)
			if err != nil {
				return err
			}
			defer done()
			fl, err := f.Ramp(cmd.Context(), args[0], to, step, every)
			if err != nil {
				return err
			}
			return show(cmd.OutOrStdout(), fl)
		},
	}
	ramp.Flags().IntVar(&to, "to", -1, "target percent 0..100 (required)")
	ramp.Flags().IntVar(&step, "step", 10, "percent per step")
	ramp.Flags().DurationVar(&every, "every", time.Hour, "time between steps")
	// "flags set saju -1" would otherwise fail as an unknown flag "-1".
	set.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		if m := negNumber.FindStringSubmatch(err.Error()); m != nil {
			return usageError{percentError(m[1])}
		}
		return err
	})
	cmd.AddCommand(set, get, list, ramp)
	return cmd
}

// negNumber finds the "-1" of pflag's "unknown shorthand flag: '1' in -1".
var negNumber = regexp.MustCompile(`in (-\d+)$`)

func percentError(arg string) error {
	return fmt.Errorf("percent %q: want an integer 0..100", arg)
}
