package wiring

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"

	"github.com/heal7/shadowcube/internal/process"
)

// every config struct of the commands, for the checks below.
func specs() map[string]any {
	return map[string]any{
		"CDCEnv": new(CDCEnv), "SyncEnv": new(SyncEnv), "ShadowEnv": new(ShadowEnv), "CompareEnv": new(CompareEnv),
		"TapEnv": new(TapEnv), "ImportEnv": new(ImportEnv), "ReconcileEnv": new(ReconcileEnv), "MappingEnv": new(MappingEnv),
		"DemoServiceEnv": new(DemoServiceEnv), "LoadgenEnv": new(LoadgenEnv), "RolloutEnv": new(RolloutEnv), "SniffEnv": new(SniffEnv), "SharedStores": new(SharedStores), "Common": new(process.Common),
		"ReportEnv": new(ReportEnv), "GateEnv": new(GateEnv), "ServeEnv": new(ServeEnv),
	}
}

// TestEveryFieldHasDesc: the help text is generated from desc tags, so a
// variable or flag without one would be listed with no explanation.
func TestEveryFieldHasDesc(t *testing.T) {
	n := 0
	for name, spec := range specs() {
		for _, f := range fields(spec) {
			n++
			if strings.TrimSpace(f.sf.Tag.Get("desc")) == "" {
				t.Errorf("%s.%s (%s): no desc tag", name, f.sf.Name, f.key)
			}
		}
	}
	if n < 100 {
		t.Fatalf("only %d fields found: the walk is broken", n)
	}
}

// TestFlagsOverrideEnvironment: a set flag wins over its variable, an
// unset one leaves the variable's value, and a flag-only field takes its
// default.
func TestFlagsOverrideEnvironment(t *testing.T) {
	t.Setenv("SHADOWCUBE_SYNC_MAX_BATCH", "70")
	t.Setenv("SHADOWCUBE_SYNC_SEQUENCE_INTERVAL", "2m")
	t.Setenv("SHADOWCUBE_MAPPING_FILE", "env.yaml")
	var e SyncEnv
	fs := pflag.NewFlagSet("sync", pflag.ContinueOnError)
	BindFlags(fs, &e)
	if err := fs.Parse([]string{"--max-batch", "9", "--target", "a", "--target", "b,c", "--sequences"}); err != nil {
		t.Fatal(err)
	}
	if err := Load(&e, fs); err != nil {
		t.Fatal(err)
	}
	if e.MaxBatch != 9 || e.SeqInterval != 2*time.Minute || e.MappingFile != "env.yaml" || !e.Sequences ||
		!reflect.DeepEqual(e.Targets, []string{"a", "b", "c"}) {
		t.Fatalf("loaded %+v", e)
	}
	var r ReconcileEnv
	if err := Load(&r, nil); err != nil {
		t.Fatal(err)
	}
	if r.LeafRows != 1000 || r.MaxDiffs != 1000 || r.Format != "text" {
		t.Fatalf("flag-only defaults not applied: %+v", r)
	}
}

// TestFlagBoundsNameTheFlag: a flag value out of its field's range is a
// FlagError naming the flag and the range; the same value from the
// environment names the variable (process.Load).
func TestFlagBoundsNameTheFlag(t *testing.T) {
	var e CompareEnv
	fs := pflag.NewFlagSet("compare", pflag.ContinueOnError)
	BindFlags(fs, &e)
	if err := fs.Parse([]string{"--batch", "-4"}); err != nil {
		t.Fatal(err)
	}
	err := Load(&e, fs)
	var fe *FlagError
	if !errors.As(err, &fe) || err.Error() != "--batch -4: must be at least 1" {
		t.Fatalf("Load = %v, want a FlagError for --batch", err)
	}
	t.Setenv("SHADOWCUBE_COMPARE_BATCH", "-3")
	var ee *process.EnvError
	if err := Load(&CompareEnv{}, nil); !errors.As(err, &ee) || ee.Var != "SHADOWCUBE_COMPARE_BATCH" {
		t.Fatalf("Load = %v, want an EnvError naming the variable", err)
	}
}

// TestEnvHelpGenerated: the help lists each variable with its description,
// default and overriding flag, and the flag-only fields under Flags.
func TestEnvHelpGenerated(t *testing.T) {
	h := EnvHelp("Environment", new(ReconcileEnv))
	for _, want := range []string{"Flags:", "--leaf-rows", "range size compared row by row (default 1000)",
		"Environment:", "SHADOWCUBE_MAPPING_FILE", "mapping file (required) [--mapping]"} {
		if !strings.Contains(h, want) {
			t.Errorf("help lacks %q:\n%s", want, h)
		}
	}
	if c := CommonHelp(); !strings.Contains(c, "SHADOWCUBE_NATS_URL") || !strings.Contains(c, "SHADOWCUBE_KV_REPLICAS") {
		t.Errorf("common help:\n%s", c)
	}
}

// TestFlagOnlyFieldsIgnoreEnvironment: a field that only has a flag is not
// set from a variable named after it (envconfig reads every field).
func TestFlagOnlyFieldsIgnoreEnvironment(t *testing.T) {
	t.Setenv("SHADOWCUBE_SINCE", "2026-11-29T14:00:00Z")
	t.Setenv("SHADOWCUBE_LOOP", "true")
	t.Setenv("SHADOWCUBE_PACE", "max")
	t.Setenv("SHADOWCUBE_SHADOW_RESULTS_REPLICAS", "3") // a variable still counts
	var e ShadowEnv
	fs := pflag.NewFlagSet("shadow", pflag.ContinueOnError)
	BindFlags(fs, &e)
	if err := fs.Parse(nil); err != nil {
		t.Fatal(err)
	}
	if err := Load(&e, fs); err != nil {
		t.Fatal(err)
	}
	if e.Since != "" || e.Loop || e.Pace != "recorded" || e.ResultsReplicas != 3 {
		t.Fatalf("loaded since %q loop %v pace %q replicas %d", e.Since, e.Loop, e.Pace, e.ResultsReplicas)
	}
}
