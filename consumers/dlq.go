package consumers

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/heal7/shadowcube/internal/natsx"
	"github.com/heal7/shadowcube/schemas"
)

// DLQStage is the stage name of sync's dead letters: subject dlq.sync.
const DLQStage = schemas.StageSync

// DLQMessage is a stored dead letter with its stream sequence. Sync entries
// (Entry.Stage "sync") carry the source transaction in Entry.Sync.
type DLQMessage = natsx.DeadLetterMsg

// poison records t in the DLQ and applies the target's policy: skip moves
// the checkpoint past it; stop halts until the checkpoint passes it (after
// `shadowcube dlq replay`, or a restart with a fixed mapping).
func (a *Applier) poison(ctx context.Context, t *txn, cause error) error {
	reason := schemas.ReasonApplyFailed
	switch {
	case strings.HasPrefix(t.broken, "undecodable"):
		reason = schemas.ReasonUndecodable
	case t.broken != "":
		reason = schemas.ReasonIncomplete
	}
	d := schemas.DeadLetter{Stage: DLQStage, Reason: reason, Error: cause.Error(), FailedAt: time.Now().UTC()}
	e := &schemas.SyncDeadLetter{Target: a.target, Slot: a.slot, Position: t.pos.String(),
		LSN: t.pos.LSN, Index: t.pos.Idx, CommitTime: t.commitTime, Policy: a.cfg.Target.OnPoison,
		Events: t.events, Broken: t.broken != ""}
	d.Sync = e
	var pe *pgconn.PgError
	if errors.As(cause, &pe) {
		e.SQLState = pe.Code
		if pe.TableName != "" {
			e.Table = pe.SchemaName + "." + pe.TableName
		}
		d.Error = pgMessage(cause)
		if pe.Detail != "" {
			d.Error += " (" + pe.Detail + ")"
		}
	}
	d.Error = schemas.OneLine(d.Error)
	for _, r := range t.raw {
		if json.Valid(r) {
			e.Raw = append(e.Raw, r)
		} else {
			q, _ := json.Marshal(string(r))
			e.Raw = append(e.Raw, q)
		}
	}
	if t.rawMsg != nil && len(t.raw) == 1 {
		// one undecodable message: keep it whole, as every stage does
		d.Subject, d.Payload = t.rawMsg.Subject(), t.raw[0]
		if h := t.rawMsg.Headers(); len(h) > 0 {
			d.Headers = map[string][]string(h)
		}
	}
	msgID := fmt.Sprintf("%s:%s:%s", DLQStage, a.target, t.pos)
	if err := a.retry(ctx, "publish to DLQ", func() error {
		return natsx.PublishDeadLetter(ctx, a.js, &d, msgID)
	}); err != nil {
		return err
	}
	a.met.dlq.WithLabelValues(a.target).Inc()
	if a.cfg.Target.OnPoison == PolicySkip {
		a.log.Error("poison transaction skipped (policy skip); recorded in the DLQ", "lsn", t.pos.String(), "table", e.Table, "err", d.Error)
		if len(t.events) > 0 || t.broken == "" {
			if err := a.retry(ctx, "skip poison transaction", func() error {
				_, err := a.applyOnce(ctx, []*txn{t}, modeSkipData)
				return err
			}); err != nil {
				return err
			}
		}
		a.ackAndMark(t)
		return nil
	}
	a.met.stopped.WithLabelValues(a.target).Set(1)
	a.log.Error("target stopped at a poison transaction (policy stop): nothing later is applied until it is resolved; "+
		"fix the cause, then `shadowcube dlq replay` (or restart sync with a fixed mapping)",
		"lsn", t.pos.String(), "table", e.Table, "sqlstate", e.SQLState, "err", d.Error)
	for {
		sleepCtx(ctx, a.cfg.PollStop)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		cp, err := ReadCheckpoint(ctx, a.cfg.DB, a.target, a.slot)
		if err != nil {
			continue
		}
		passed := !(pos{cp.LSN, cp.Index}).less(t.pos)
		if t.broken != "" {
			passed = t.pos.less(pos{cp.LSN, cp.Index})
		}
		if passed {
			a.met.stopped.WithLabelValues(a.target).Set(0)
			a.log.Info("poison transaction resolved; resuming", "lsn", t.pos.String(), "checkpoint", pos{cp.LSN, cp.Index}.String())
			a.ackAndMark(t)
			return nil
		}
	}
}

// pruneObsoleteDLQ drops this target's dead letters that a later apply made
// obsolete and returns how many it dropped: entries written under the stop
// policy whose transaction the checkpoint has since passed (sync was
// restarted with a fixed mapping or target and applied it). Only stop
// entries qualify: under skip the checkpoint passes transactions that were
// never applied, and broken (undecodable, incomplete) units are never
// applied, so those stay until an operator drops them.
func (a *Applier) pruneObsoleteDLQ(ctx context.Context) uint64 {
	cp, err := ReadCheckpoint(ctx, a.cfg.DB, a.target, a.slot)
	if err != nil {
		return 0
	}
	var obsolete []DLQMessage
	_ = ListDLQ(ctx, a.js, func(m DLQMessage) error {
		e := m.Entry.Sync
		if e != nil && e.Target == a.target && e.Slot == a.slot && (e.Policy == PolicyStop || e.Policy == "") && !e.Broken &&
			!(pos{cp.LSN, cp.Index}).less(pos{e.LSN, e.Index}) {
			obsolete = append(obsolete, m)
		}
		return nil
	})
	var n uint64
	for _, m := range obsolete {
		if err := DropDLQ(ctx, a.js, m.Seq); err != nil {
			a.log.Warn("could not drop an obsolete dead letter", "seq", m.Seq, "err", err)
			continue
		}
		n++
		a.log.Info("dropped a dead letter a later apply made obsolete", "seq", m.Seq, "lsn", m.Entry.Sync.Position,
			"checkpoint", pos{cp.LSN, cp.Index}.String())
	}
	return n
}

func (a *Applier) ackAndMark(t *txn) {
	if t.ackMsg != nil {
		_ = t.ackMsg.Ack()
	}
	if t.broken == "" {
		a.setWatermark(t.pos, t.commitTime)
	}
}

// DLQDepth returns how many messages wait on dlq.sync.
func DLQDepth(ctx context.Context, js jetstream.JetStream) (uint64, error) {
	s, err := js.Stream(ctx, schemas.StreamDLQ)
	if err != nil {
		return 0, err
	}
	subj := schemas.DLQSubject(DLQStage)
	info, err := s.Info(ctx, jetstream.WithSubjectFilter(subj))
	if err != nil {
		return 0, err
	}
	return info.State.Subjects[subj], nil
}

// ListDLQ calls fn for every entry on dlq.sync, oldest first, without
// loading them all at once. An empty or missing DLQ is not an error.
func ListDLQ(ctx context.Context, js jetstream.JetStream, fn func(DLQMessage) error) error {
	return natsx.ListDeadLetters(ctx, js, DLQStage, fn)
}

// GetDLQ returns the sync entry stored at seq.
func GetDLQ(ctx context.Context, js jetstream.JetStream, seq uint64) (DLQMessage, error) {
	m, err := natsx.GetDeadLetter(ctx, js, seq, DLQStage)
	if err == nil && m.Entry.Sync == nil {
		err = fmt.Errorf("DLQ entry %d: %s", seq, m.Entry.Error)
	}
	return m, err
}

// DropDLQ deletes the sync entry at seq.
func DropDLQ(ctx context.Context, js jetstream.JetStream, seq uint64) error {
	return natsx.DropDeadLetter(ctx, js, seq, DLQStage)
}

// ReplayDLQ applies the DLQ entry at seq to its target through the mapping
// (validated; db is that target's database) in one target transaction, moves
// the checkpoint forward to it if it is behind (a stopped target then
// resumes), and deletes the entry. Entries of broken units cannot be
// replayed.
func ReplayDLQ(ctx context.Context, js jetstream.JetStream, seq uint64, m *Mapping, db DB) (*schemas.SyncDeadLetter, error) {
	msg, err := GetDLQ(ctx, js, seq)
	if err != nil {
		return nil, err
	}
	e := msg.Entry.Sync
	if e.Broken || e.OmittedEvents > 0 {
		return e, fmt.Errorf("DLQ entry %d (%s at %s) cannot be replayed: %s", seq, e.Target, e.Position,
			map[bool]string{true: "it is not a whole decodable transaction", false: "its events were too large to store"}[e.Broken])
	}
	t := m.Target(e.Target)
	if t == nil {
		return e, fmt.Errorf("DLQ entry %d: target %q is not in mapping %s", seq, e.Target, m.File)
	}
	if e.Slot != m.Source.Slot {
		return e, fmt.Errorf("DLQ entry %d: slot %q differs from the mapping's source slot %q", seq, e.Slot, m.Source.Slot)
	}
	a, err := NewApplier(ApplierConfig{Mapping: m, Target: t, DB: db}, js, nil, nil)
	if err != nil {
		return e, err
	}
	if err := EnsureCheckpoint(ctx, db, t.Name, e.Slot); err != nil {
		return e, err
	}
	u := &txn{pos: pos{e.LSN, e.Index}, commitTime: e.CommitTime, events: e.Events}
	if _, err := a.applyOnce(ctx, []*txn{u}, modeForce); err != nil {
		return e, fmt.Errorf("replay DLQ entry %d to %s: %w", seq, t.Name, err)
	}
	if err := DropDLQ(ctx, js, seq); err != nil {
		return e, fmt.Errorf("replayed, but %w", err)
	}
	return e, nil
}
