package comparator

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/heal7/shadowcube/internal/testenv"
)

// TestAcceptAuditExport: accepting and un-accepting a signature changes
// the accepted table and appends audit rows; the export is a file compare
// reads (ParseAccepted) holding exactly the accepted signatures plus the
// route rules already in the file; an import adds only signatures the
// store has never seen.
func TestAcceptAuditExport(t *testing.T) {
	s := openStore(t)
	ctx := testenv.Context(t, time.Minute)
	const sigA, sigB = "saju:/api/saju/chart:$.pillars.day:unexplained", `saju:/api/saju/chart:$.luck["start_age"]:table-convention`
	if err := s.Accept(ctx, Acceptance{Signature: sigA, Service: "saju", Route: "/api/saju/chart", By: "alice", Reason: "day change at midnight: by design"}, "127.0.0.1:1"); err != nil {
		t.Fatal(err)
	}
	if err := s.Accept(ctx, Acceptance{Signature: sigB, By: "bob", Reason: "table: expected"}, ""); err != nil {
		t.Fatal(err)
	}
	if err := s.Accept(ctx, Acceptance{Signature: sigB, By: "", Reason: "x"}, ""); err == nil || !strings.Contains(err.Error(), "who") {
		t.Fatalf("accept without who: %v, want an error naming who", err)
	}
	if err := s.Unaccept(ctx, sigB, "carol", "the table is wrong after all", ""); err != nil {
		t.Fatal(err)
	}
	if err := s.Unaccept(ctx, sigB, "carol", "again", ""); !errors.Is(err, ErrNotAccepted) {
		t.Fatalf("second un-accept: %v, want ErrNotAccepted", err)
	}
	accs, err := s.AcceptedSignatures(ctx)
	if err != nil || len(accs) != 1 || accs[0].Signature != sigA || accs[0].By != "alice" {
		t.Fatalf("accepted %+v %v, want only %s by alice", accs, err, sigA)
	}
	audit, err := s.AcceptAudit(ctx, "", 10)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range audit {
		got = append(got, e.Action+" "+e.By)
	}
	if strings.Join(got, ",") != "unaccept carol,accept bob,accept alice" {
		t.Fatalf("audit newest first: %v", got)
	}
	if audit[2].Remote != "127.0.0.1:1" || audit[2].Reason != "day change at midnight: by design" {
		t.Fatalf("audit row %+v", audit[2])
	}

	path := filepath.Join(t.TempDir(), "accepted.yaml")
	old := "version: 1\naccepted:\n  - route: /api/saju/chart\n    cause: solar-term-boundary\n    reason: term precision differs by design\n  - signature: \"old:sig\"\n    reason: replaced by the store's list\n"
	if err := os.WriteFile(path, []byte(old), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := s.ExportAccepted(ctx, path); err != nil {
		t.Fatal(err)
	}
	a, err := LoadAccepted(path)
	if err != nil {
		t.Fatalf("export does not load: %v", err)
	}
	if len(a.Entries) != 2 {
		t.Fatalf("export entries %+v, want the route rule and %s", a.Entries, sigA)
	}
	if e, ok := a.Match("saju", "/api/saju/chart", sigA, nil); !ok || e.Reason != "day change at midnight: by design" {
		t.Fatalf("export does not accept %s: %+v %v", sigA, e, ok)
	}
	if _, ok := a.Match("saju", "/api/saju/chart", "other", []string{"solar-term-boundary"}); !ok {
		t.Fatal("export lost the route + cause rule")
	}
	if _, ok := a.Match("saju", "/x", sigB, nil); ok {
		t.Fatal("export accepts the un-accepted signature")
	}
	data, _ := os.ReadFile(path)
	if !strings.Contains(string(data), "# accepted by alice at ") {
		t.Fatalf("export has no who comment:\n%s", data)
	}
	// Import: sigB has history (un-accepted), so stays out; a new one comes in.
	n, err := s.ImportAccepted(ctx, []AcceptedEntry{{Signature: sigB, Reason: "file says"}, {Signature: "new:sig", Reason: "file says"}}, "file x.yaml")
	if err != nil || n != 1 {
		t.Fatalf("import: %d %v, want 1", n, err)
	}
	if n, err := s.ImportAccepted(ctx, []AcceptedEntry{{Signature: "new:sig", Reason: "file says"}}, "file x.yaml"); err != nil || n != 0 {
		t.Fatalf("second import: %d %v, want 0", n, err)
	}
	matches, _ := filepath.Glob(filepath.Join(filepath.Dir(path), ".accepted.yaml.*"))
	if len(matches) != 0 {
		t.Fatalf("temporary files left: %v", matches)
	}
}
