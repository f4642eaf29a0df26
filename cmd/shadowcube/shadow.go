package main

import (
	"context"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/heal7/shadowcube/internal/natsx"
	"github.com/heal7/shadowcube/internal/wiring"
	"github.com/heal7/shadowcube/shadow"
)

func newShadowCmd() *cobra.Command {
	var e wiring.ShadowEnv
	return configured("shadow", "shadow", "Replay captured legacy requests against the cubes and publish the answer pairs", &e, `
  The variables the routes file names in credentials (token_env, secret_env).
  With --compare, the compare command's variables (SHADOWCUBE_STORE_DATABASE_URL, SHADOWCUBE_COMPARE_*).`,
		func(cmd *cobra.Command, _ []string) error {
			win, err := e.Window(cmd.Flags().Changed)
			if err != nil {
				return usageError{err}
			}
			cfg, err := e.Config()
			if err != nil {
				return err
			}
			return runStage(cmd, "shadow", func(ctx context.Context, p *Env, conn *natsx.Conn) (wiring.Stage, error) {
				r, err := wiring.NewShadowStage(ctx, p, conn, &e, cfg)
				if err != nil || win == nil {
					return r, err
				}
				return &windowReplay{r: r, w: win, out: p.Stdout}, nil
			})
		})
}

// windowReplay is shadow --since: the window replayed (again and again with
// --loop), a summary line per pass and at the end, then exit.
type windowReplay struct {
	r   *shadow.Replayer
	w   *shadow.Window
	out io.Writer
}

func (w *windowReplay) Run(ctx context.Context) error {
	sum, err := w.r.ReplayWindow(ctx, *w.w, func(s shadow.Summary) {
		if w.w.Loop {
			fmt.Fprintln(w.out, s)
		}
	})
	fmt.Fprintln(w.out, sum)
	return err
}

func (w *windowReplay) Close() error { return w.r.Close() }
