package main

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/heal7/shadowcube/internal/wiring"
)

func newGateCmd() *cobra.Command {
	var e wiring.GateEnv
	return configured("gate", "gate", "Go / no-go verdict per cube for cutover, from the mismatch store (exit 0 go, 1 no-go)", &e, "",
		func(cmd *cobra.Command, _ []string) error {
			now := time.Now()
			q, crit, acc, err := e.Check(now)
			if err != nil {
				return usageError{err}
			}
			ctx, p, err := setup(cmd, "gate", false)
			if err != nil {
				return err
			}
			defer p.Close()
			g, err := wiring.Gate(ctx, p, &e, q, crit, acc, now)
			if err != nil {
				return err
			}
			if e.Format == "json" {
				b, err := json.MarshalIndent(g, "", "  ")
				if err != nil {
					return err
				}
				fmt.Fprintln(p.Stdout, string(b))
			} else if err := g.WriteText(p.Stdout); err != nil {
				return err
			}
			if !g.Go {
				var vs []string
				for _, v := range g.Services {
					vs = append(vs, v.Service+" "+v.Verdict)
				}
				return &exitError{code: 1, err: fmt.Errorf("gate: %s", strings.Join(vs, "; "))}
			}
			return nil
		})
}
