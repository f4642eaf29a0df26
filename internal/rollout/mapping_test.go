package rollout

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/heal7/shadowcube/consumers"
	"github.com/heal7/shadowcube/internal/demo"
	"github.com/heal7/shadowcube/internal/testenv"
)

func TestMain(m *testing.M) { os.Exit(testenv.Run(m)) }

// TestDemoMappingsValidate checks both directions of the demo's saju mapping
// against the demo's real schemas, and that a wrong reverse expression is
// reported with its file line like a forward one.
func TestDemoMappingsValidate(t *testing.T) {
	ctx := testenv.Context(t, 2*time.Minute)
	pg := testenv.Postgres(t)
	legacy := testenv.Connect(t, pg.NewDatabase(t))
	cube := testenv.Connect(t, pg.NewDatabase(t))
	if _, err := legacy.Exec(ctx, demo.LegacySchema); err != nil {
		t.Fatal(err)
	}
	if _, err := cube.Exec(ctx, demo.CubeSchema); err != nil {
		t.Fatal(err)
	}
	for c, sql := range map[*pgx.Conn]string{legacy: demo.LegacyRolloutSchema, cube: demo.CubeRolloutSchema} {
		if _, err := c.Exec(ctx, sql); err != nil {
			t.Fatal(err)
		}
	}
	fwd, err := consumers.ParseMapping("forward-mapping.yaml", []byte(demo.ForwardMapping))
	if err != nil {
		t.Fatal(err)
	}
	rev, err := consumers.ParseMapping("reverse-mapping.yaml", []byte(demo.ReverseMapping))
	if err != nil {
		t.Fatal(err)
	}
	if fwd.Reverse() || !rev.Reverse() {
		t.Fatalf("sides: forward reverse=%v, reverse reverse=%v", fwd.Reverse(), rev.Reverse())
	}
	if err := fwd.Validate(ctx, fwd.Targets[0], legacy, cube); err != nil {
		t.Fatalf("forward: %v", err)
	}
	if err := rev.Validate(ctx, rev.Targets[0], cube, legacy); err != nil {
		t.Fatalf("reverse: %v", err)
	}
	bad := strings.Replace(demo.ReverseMapping, `"(birth_info->>'month')::int"`, `"(birth_info->>'month')::point"`, 1)
	rb, err := consumers.ParseMapping("bad-reverse.yaml", []byte(bad))
	if err != nil {
		t.Fatal(err)
	}
	err = rb.Validate(context.Background(), rb.Targets[0], cube, legacy)
	var me *consumers.MappingError
	if !errors.As(err, &me) || me.Line != 19 || !strings.Contains(me.Field, "column birth_month") {
		t.Fatalf("bad reverse expression: got %v, want a mapping error at line 19 naming column birth_month", err)
	}
}

// TestConflictStartupChecks: a conflict policy without whole old rows, or
// newest without commit timestamps in the target, fails at start-up with
// the fix named.
func TestConflictStartupChecks(t *testing.T) {
	ctx := testenv.Context(t, 2*time.Minute)
	pg := testenv.Postgres(t) // the shared cluster runs without track_commit_timestamp
	legacy := testenv.Connect(t, pg.NewDatabase(t))
	cube := testenv.Connect(t, pg.NewDatabase(t))
	if _, err := legacy.Exec(ctx, demo.LegacySchema); err != nil {
		t.Fatal(err)
	}
	if _, err := cube.Exec(ctx, demo.CubeSchema); err != nil {
		t.Fatal(err)
	}
	fwd, err := consumers.ParseMapping("forward-mapping.yaml", []byte(demo.ForwardMapping))
	if err != nil {
		t.Fatal(err)
	}
	err = fwd.Validate(ctx, fwd.Targets[0], legacy, cube)
	if err == nil || !strings.Contains(err.Error(), "ALTER TABLE public.saju_records REPLICA IDENTITY FULL") {
		t.Fatalf("default replica identity: got %v, want the ALTER TABLE to run", err)
	}
	if _, err := legacy.Exec(ctx, "ALTER TABLE saju_records REPLICA IDENTITY FULL"); err != nil {
		t.Fatal(err)
	}
	if err := fwd.Validate(ctx, fwd.Targets[0], legacy, cube); err != nil {
		t.Fatalf("with REPLICA IDENTITY FULL: %v", err)
	}
	newest, err := consumers.ParseMapping("newest.yaml", []byte(strings.Replace(demo.ForwardMapping, "conflict: legacy-wins", "conflict: newest", 1)))
	if err != nil {
		t.Fatal(err)
	}
	err = newest.Validate(ctx, newest.Targets[0], legacy, cube)
	if err == nil || !strings.Contains(err.Error(), "track_commit_timestamp = on") {
		t.Fatalf("newest without commit timestamps: got %v, want track_commit_timestamp named", err)
	}
}
