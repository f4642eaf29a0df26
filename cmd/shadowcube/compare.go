package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/heal7/shadowcube/comparator"
	"github.com/heal7/shadowcube/internal/natsx"
	"github.com/heal7/shadowcube/internal/wiring"
	"github.com/heal7/shadowcube/schemas"
)

func newCompareCmd() *cobra.Command {
	var e wiring.CompareEnv
	cmd := configured("compare", "compare", "Compare legacy and cube answers (rules, saju, AI, noise) and store the verdicts", &e, "",
		func(cmd *cobra.Command, _ []string) error {
			if err := e.Check(); err != nil {
				return err
			}
			cmpr, err := e.Comparator()
			if err != nil {
				return err
			}
			return runStage(cmd, "compare", func(ctx context.Context, p *Env, conn *natsx.Conn) (wiring.Stage, error) {
				cons, _, err := wiring.NewCompare(ctx, p, conn, &e, cmpr)
				return cons, err
			})
		})
	cmd.AddCommand(newCompareSummaryCmd(), newCompareShowCmd())
	return cmd
}

func newCompareShowCmd() *cobra.Command {
	var format string
	cmd := &cobra.Command{
		Use:   "show <request-id>",
		Short: "Print the stored verdict, diffs and causes of one request (exit 1 when not found)",
		Long:  help("compare-show"),
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return withStore(cmd, "compare show", format, func(ctx context.Context, _ *wiring.CompareEnv, store *comparator.Store) error {
				pairs, err := store.Pairs(ctx, args[0])
				if err != nil {
					return err
				}
				if len(pairs) == 0 {
					return &exitError{code: 1, err: fmt.Errorf("compare show: request %q: no stored verdict (not compared yet, or not captured)", args[0])}
				}
				w := cmd.OutOrStdout()
				if format == "json" {
					return printJSON(w, pairs)
				}
				for i, p := range pairs {
					if i > 0 {
						fmt.Fprintln(w)
					}
					fmt.Fprintf(w, "request    %s\nservice    %s\nroute      %s\n", p.RequestID, p.Service, p.Route)
					fmt.Fprintf(w, "request    %s %s\n", p.Method, p.Path)
					if p.Operation != "" {
						fmt.Fprintf(w, "operation  %s\n", p.Operation)
					}
					fmt.Fprintf(w, "verdict    %s (severity %s", p.Verdict, p.Severity)
					if p.Accepted {
						fmt.Fprint(w, ", accepted")
					}
					fmt.Fprintln(w, ")")
					if p.Skipped != "" {
						fmt.Fprintf(w, "skipped    %s\n", p.Skipped)
					}
					if p.CubeError != "" {
						fmt.Fprintf(w, "cube error %s\n", p.CubeError)
					}
					if len(p.Causes) > 0 {
						fmt.Fprintf(w, "causes     %s\n", strings.Join(p.Causes, ", "))
					}
					if p.Signature != "" {
						fmt.Fprintf(w, "signature  %s\n", p.Signature)
					}
					fmt.Fprintf(w, "replayed   %s, compared %s\n", p.ReplayedAt.UTC().Format(time.RFC3339Nano), p.ComparedAt.UTC().Format(time.RFC3339Nano))
					for _, set := range []struct {
						name string
						raw  json.RawMessage
					}{{"diff", p.Diffs}, {"noise", p.NoiseDiffs}} {
						var ds []schemas.Diff
						if err := json.Unmarshal(set.raw, &ds); err != nil {
							return fmt.Errorf("compare show: stored %ss of %s: %w", set.name, p.RequestID, err)
						}
						for _, d := range ds {
							fmt.Fprintf(w, "%-10s %s %s: legacy %s, cube %s\n", set.name, d.Path, d.Kind, orDash(d.Legacy), orDash(d.Cube))
						}
					}
				}
				return nil
			})
		},
	}
	cmd.Flags().StringVar(&format, "format", "text", "text or json")
	return cmd
}

func orDash(r schemas.RawJSON) string {
	if len(r) == 0 {
		return "-"
	}
	return string(r)
}

func newCompareSummaryCmd() *cobra.Command {
	var (
		limit  int
		format string
	)
	cmd := &cobra.Command{
		Use:   "summary",
		Short: "Print the mismatch summary (by route, cause, signature, noise path, AI accuracy) from the store",
		Long:  help("compare-summary"),
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if limit < 1 {
				return usageError{fmt.Errorf("compare summary: --limit %d: must be at least 1", limit)}
			}
			return withStore(cmd, "compare summary", format, func(ctx context.Context, env *wiring.CompareEnv, store *comparator.Store) error {
				sum, err := store.Summary(ctx, limit, env.AI(), env.Noise())
				if err != nil {
					return err
				}
				if format == "json" {
					return printJSON(cmd.OutOrStdout(), sum)
				}
				return sum.WriteText(cmd.OutOrStdout())
			})
		},
	}
	cmd.Flags().IntVar(&limit, "limit", 20, "signatures listed")
	cmd.Flags().StringVar(&format, "format", "text", "text or json")
	return cmd
}

// withStore runs f on the mismatch store (compare show and summary): the
// store settings are read and checked, --format is text or json, and the
// whole command is bounded by two minutes.
func withStore(cmd *cobra.Command, what, format string, f func(context.Context, *wiring.CompareEnv, *comparator.Store) error) error {
	var env wiring.CompareEnv
	if err := wiring.Load(&env, nil); err != nil {
		return err
	}
	if err := env.Check(); err != nil {
		return err
	}
	if format != "text" && format != "json" {
		return usageError{fmt.Errorf("%s: --format %q: want text or json", what, format)}
	}
	ctx, cancel := context.WithTimeout(cmd.Context(), 2*time.Minute)
	defer cancel()
	store, err := env.OpenStore(ctx)
	if err != nil {
		return err
	}
	defer store.Close()
	return f(ctx, &env, store)
}

// printJSON writes v as indented JSON.
func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
