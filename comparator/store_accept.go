package comparator

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"gopkg.in/yaml.v3"
)

// acceptMigration adds the analysts' acceptances: the signatures accepted
// as expected now (who, why, when), and the append-only audit of every
// accept and un-accept. `shadowcube serve` writes both; the accepted table is
// exported as the accepted-signatures YAML file that `compare` reads.
const acceptMigration = `CREATE TABLE {s}.accepted_signatures (
		signature   text PRIMARY KEY,
		service     text NOT NULL DEFAULT '',
		route       text NOT NULL DEFAULT '',
		reason      text NOT NULL,
		accepted_by text NOT NULL,
		accepted_at timestamptz NOT NULL
	);
	CREATE TABLE {s}.accept_audit (
		id        bigserial PRIMARY KEY,
		at        timestamptz NOT NULL,
		action    text NOT NULL CHECK (action IN ('accept', 'unaccept')),
		signature text NOT NULL,
		service   text NOT NULL DEFAULT '',
		route     text NOT NULL DEFAULT '',
		actor     text NOT NULL,
		reason    text NOT NULL,
		remote    text NOT NULL DEFAULT ''
	);
	CREATE INDEX accept_audit_signature ON {s}.accept_audit (signature, at);`

// ErrNotAccepted is returned by Unaccept for a signature that is not
// accepted: nothing changed; reload the list of accepted signatures.
var ErrNotAccepted = errors.New("signature is not accepted")

// Acceptance is one signature accepted as expected by an analyst.
type Acceptance struct {
	Signature string    `json:"signature"`
	Service   string    `json:"service,omitempty"`
	Route     string    `json:"route,omitempty"`
	Reason    string    `json:"reason"`
	By        string    `json:"by"`
	At        time.Time `json:"at"`
}

// AuditEntry is one change of an acceptance: action "accept" or "unaccept".
type AuditEntry struct {
	ID        int64     `json:"id"`
	At        time.Time `json:"at"`
	Action    string    `json:"action"`
	Signature string    `json:"signature"`
	Service   string    `json:"service,omitempty"`
	Route     string    `json:"route,omitempty"`
	By        string    `json:"by"`
	Reason    string    `json:"reason"`
	Remote    string    `json:"remote,omitempty"`
}

func checkAcceptance(signature, by, reason string) error {
	switch {
	case strings.TrimSpace(signature) == "":
		return errors.New("signature is empty")
	case strings.TrimSpace(by) == "":
		return errors.New("who is empty: say who accepts")
	case strings.TrimSpace(reason) == "":
		return errors.New("reason is empty: say why this is expected")
	}
	return nil
}

// Accept marks a signature accepted as expected (or replaces the who and
// why of an accepted one) and appends the change to the audit, in one
// transaction. remote is the client address, for the audit only.
func (s *Store) Accept(ctx context.Context, a Acceptance, remote string) error {
	if err := checkAcceptance(a.Signature, a.By, a.Reason); err != nil {
		return fmt.Errorf("accept signature: %w", err)
	}
	if a.At.IsZero() {
		a.At = time.Now()
	}
	return pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, s.q(`INSERT INTO {s}.accepted_signatures (signature, service, route, reason, accepted_by, accepted_at)
			VALUES ($1, $2, $3, $4, $5, $6)
			ON CONFLICT (signature) DO UPDATE SET service = EXCLUDED.service, route = EXCLUDED.route, reason = EXCLUDED.reason,
				accepted_by = EXCLUDED.accepted_by, accepted_at = EXCLUDED.accepted_at`),
			a.Signature, a.Service, a.Route, a.Reason, a.By, a.At); err != nil {
			return fmt.Errorf("accept signature %q: %w", a.Signature, err)
		}
		return s.audit(ctx, tx, "accept", a, remote)
	})
}

// Unaccept removes a signature's acceptance and appends the change (who
// and why) to the audit. ErrNotAccepted when it was not accepted.
func (s *Store) Unaccept(ctx context.Context, signature, by, reason, remote string) error {
	if err := checkAcceptance(signature, by, reason); err != nil {
		return fmt.Errorf("un-accept signature: %w", err)
	}
	return pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		a := Acceptance{Signature: signature, By: by, Reason: reason, At: time.Now()}
		err := tx.QueryRow(ctx, s.q(`DELETE FROM {s}.accepted_signatures WHERE signature = $1 RETURNING service, route`), signature).
			Scan(&a.Service, &a.Route)
		if errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("un-accept signature %q: %w", signature, ErrNotAccepted)
		}
		if err != nil {
			return fmt.Errorf("un-accept signature %q: %w", signature, err)
		}
		return s.audit(ctx, tx, "unaccept", a, remote)
	})
}

func (s *Store) audit(ctx context.Context, tx pgx.Tx, action string, a Acceptance, remote string) error {
	if _, err := tx.Exec(ctx, s.q(`INSERT INTO {s}.accept_audit (at, action, signature, service, route, actor, reason, remote)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`), a.At, action, a.Signature, a.Service, a.Route, a.By, a.Reason, remote); err != nil {
		return fmt.Errorf("%s signature %q: audit: %w", action, a.Signature, err)
	}
	return nil
}

// AcceptedSignatures returns the signatures accepted now, by signature.
func (s *Store) AcceptedSignatures(ctx context.Context) ([]Acceptance, error) {
	rows, err := s.pool.Query(ctx, s.q(`SELECT signature, service, route, reason, accepted_by, accepted_at
		FROM {s}.accepted_signatures ORDER BY signature`))
	if err != nil {
		return nil, fmt.Errorf("load accepted signatures: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Acceptance, error) {
		var a Acceptance
		err := r.Scan(&a.Signature, &a.Service, &a.Route, &a.Reason, &a.By, &a.At)
		return a, err
	})
	if err != nil {
		return nil, fmt.Errorf("load accepted signatures: %w", err)
	}
	return out, nil
}

// AcceptAudit returns the newest limit audit entries, newest first; with
// a signature, only that signature's.
func (s *Store) AcceptAudit(ctx context.Context, signature string, limit int) ([]AuditEntry, error) {
	if limit <= 0 {
		limit = 100
	}
	rows, err := s.pool.Query(ctx, s.q(`SELECT id, at, action, signature, service, route, actor, reason, remote
		FROM {s}.accept_audit WHERE $1 = '' OR signature = $1 ORDER BY id DESC LIMIT $2`), signature, limit)
	if err != nil {
		return nil, fmt.Errorf("load acceptance audit: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (AuditEntry, error) {
		var e AuditEntry
		err := r.Scan(&e.ID, &e.At, &e.Action, &e.Signature, &e.Service, &e.Route, &e.By, &e.Reason, &e.Remote)
		return e, err
	})
	if err != nil {
		return nil, fmt.Errorf("load acceptance audit: %w", err)
	}
	return out, nil
}

// MarshalAccepted renders the accepted-signatures file `compare` reads
// (ParseAccepted): the rules (route + cause entries) given, then one
// signature entry per acceptance, each with a comment saying who accepted
// it and when.
func MarshalAccepted(rules []AcceptedEntry, accs []Acceptance) ([]byte, error) {
	str := func(v string) *yaml.Node {
		n := &yaml.Node{Kind: yaml.ScalarNode, Value: v}
		if v == "" || strings.ContainsAny(v, ":#{}[],&*!|>'\"%@`") || strings.TrimSpace(v) != v {
			n.Style = yaml.DoubleQuotedStyle
		}
		return n
	}
	pair := func(m *yaml.Node, k, v string) {
		if v != "" || k == "reason" {
			m.Content = append(m.Content, &yaml.Node{Kind: yaml.ScalarNode, Value: k}, str(v))
		}
	}
	list := &yaml.Node{Kind: yaml.SequenceNode}
	for _, e := range rules {
		m := &yaml.Node{Kind: yaml.MappingNode}
		pair(m, "signature", e.Signature)
		pair(m, "service", e.Service)
		pair(m, "route", e.Route)
		pair(m, "cause", e.Cause)
		pair(m, "reason", e.Reason)
		list.Content = append(list.Content, m)
	}
	sorted := append([]Acceptance(nil), accs...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].Signature < sorted[j].Signature })
	for _, a := range sorted {
		m := &yaml.Node{Kind: yaml.MappingNode, HeadComment: fmt.Sprintf("accepted by %s at %s", oneLine(a.By), a.At.UTC().Format(time.RFC3339))}
		pair(m, "signature", a.Signature)
		pair(m, "reason", a.Reason)
		list.Content = append(list.Content, m)
	}
	root := &yaml.Node{Kind: yaml.MappingNode, HeadComment: "Accepted signatures, written by shadowcube serve: signature entries are\nthe store's accepted signatures; route + cause entries are kept from this file.", Content: []*yaml.Node{
		{Kind: yaml.ScalarNode, Value: "version"}, {Kind: yaml.ScalarNode, Value: fmt.Sprint(AcceptedVersion), Tag: "!!int"},
		{Kind: yaml.ScalarNode, Value: "accepted"}, list,
	}}
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(&yaml.Node{Kind: yaml.DocumentNode, Content: []*yaml.Node{root}}); err != nil {
		return nil, fmt.Errorf("render accepted signatures: %w", err)
	}
	if err := enc.Close(); err != nil {
		return nil, fmt.Errorf("render accepted signatures: %w", err)
	}
	// What compare would read back must parse: never write a file it rejects.
	if _, err := ParseAccepted("export", buf.Bytes()); err != nil {
		return nil, fmt.Errorf("render accepted signatures: %w", err)
	}
	return buf.Bytes(), nil
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

// ExportAccepted writes the store's accepted signatures to path as an
// accepted-signatures file, atomically (a temporary file in the same
// directory, synced, then renamed over path), so `compare` never reads a
// half-written file. The route + cause entries of the file already at path
// are kept; its signature entries are replaced by the store's.
func (s *Store) ExportAccepted(ctx context.Context, path string) error {
	accs, err := s.AcceptedSignatures(ctx)
	if err != nil {
		return err
	}
	var rules []AcceptedEntry
	if old, err := os.ReadFile(path); err == nil {
		prev, err := ParseAccepted(path, old)
		if err != nil {
			return fmt.Errorf("export accepted signatures: the file there does not parse, not overwriting it: %w", err)
		}
		for _, e := range prev.Entries {
			if e.Signature == "" {
				rules = append(rules, e)
			}
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("export accepted signatures: %w", err)
	}
	data, err := MarshalAccepted(rules, accs)
	if err != nil {
		return err
	}
	return writeAtomic(path, data)
}

func writeAtomic(path string, data []byte) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".*.tmp")
	if err != nil {
		return fmt.Errorf("export accepted signatures to %s: %w", path, err)
	}
	tmp := f.Name()
	ok := false
	defer func() {
		if !ok {
			os.Remove(tmp)
		}
	}()
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("export accepted signatures to %s: %w", path, err)
	}
	if err := f.Chmod(0o644); err != nil {
		f.Close()
		return fmt.Errorf("export accepted signatures to %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("export accepted signatures to %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("export accepted signatures to %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("export accepted signatures to %s: %w", path, err)
	}
	ok = true
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}

// ImportAccepted records the signature entries of an accepted-signatures
// file that the store has never seen (no acceptance, no audit row), as
// accepted by source, with an audit row each; an entry the store knows
// (accepted, or un-accepted since) is left as the store has it. It returns
// how many were imported.
func (s *Store) ImportAccepted(ctx context.Context, entries []AcceptedEntry, source string) (int, error) {
	n := 0
	for _, e := range entries {
		if e.Signature == "" {
			continue
		}
		err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
			a := Acceptance{Signature: e.Signature, Service: e.Service, Route: e.Route, Reason: e.Reason, By: source, At: time.Now()}
			tag, err := tx.Exec(ctx, s.q(`INSERT INTO {s}.accepted_signatures (signature, service, route, reason, accepted_by, accepted_at)
				SELECT $1, $2, $3, $4, $5, $6
				WHERE NOT EXISTS (SELECT 1 FROM {s}.accept_audit WHERE signature = $1)
				ON CONFLICT (signature) DO NOTHING`), a.Signature, a.Service, a.Route, a.Reason, a.By, a.At)
			if err != nil {
				return fmt.Errorf("import accepted signature %q: %w", e.Signature, err)
			}
			if tag.RowsAffected() == 0 {
				return nil
			}
			n++
			return s.audit(ctx, tx, "accept", a, "")
		})
		if err != nil {
			return n, err
		}
	}
	return n, nil
}
