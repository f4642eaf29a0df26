package consumers

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/heal7/shadowcube/internal/natsx"
	"github.com/heal7/shadowcube/schemas"
)

// DLQStage is the stage name of sync's dead letters: subject dlq.sync.
const DLQStage = "sync"

// DLQEntry is one poison source transaction (or snapshot row, or
// undecodable message) a target could not apply, published on
// schemas.DLQSubject(DLQStage) in stream DLQ.
type DLQEntry struct {
	V          string                 `json:"v"`
	Stage      string                 `json:"stage"`
	Target     string                 `json:"target"`
	Slot       string                 `json:"slot"`
	Position   string                 `json:"position"`
	LSN        schemas.LSN            `json:"lsn"`
	Index      int64                  `json:"index"`
	CommitTime time.Time              `json:"commit_time,omitzero"`
	Error      string                 `json:"error"`
	SQLState   string                 `json:"sqlstate,omitempty"`
	Table      string                 `json:"table,omitempty"`
	Policy     string                 `json:"policy"`
	Broken     bool                   `json:"broken,omitempty"` // cannot be replayed (undecodable or incomplete)
	Events     []*schemas.ChangeEvent `json:"events,omitempty"`
	Raw        []json.RawMessage      `json:"raw,omitempty"`
	Omitted    int                    `json:"omitted_events,omitempty"`
	FailedAt   time.Time              `json:"failed_at"`
}

// poison records t in the DLQ and applies the target's policy: skip moves
// the checkpoint past it; stop halts until the checkpoint passes it (after
// `shadowcube dlq replay`, or a restart with a fixed mapping).
func (a *Applier) poison(ctx context.Context, t *txn, cause error) error {
	e := DLQEntry{V: schemas.Version, Stage: DLQStage, Target: a.target, Slot: a.slot, Position: t.pos.String(),
		LSN: t.pos.LSN, Index: t.pos.Idx, CommitTime: t.commitTime, Error: cause.Error(), Policy: a.cfg.Target.OnPoison,
		Events: t.events, Broken: t.broken != "", FailedAt: time.Now().UTC()}
	var pe *pgconn.PgError
	if errors.As(cause, &pe) {
		e.SQLState = pe.Code
		if pe.TableName != "" {
			e.Table = pe.SchemaName + "." + pe.TableName
		}
		e.Error = pgMessage(cause)
		if pe.Detail != "" {
			e.Error += " (" + pe.Detail + ")"
		}
	}
	for _, r := range t.raw {
		if json.Valid(r) {
			e.Raw = append(e.Raw, r)
		} else {
			q, _ := json.Marshal(string(r))
			e.Raw = append(e.Raw, q)
		}
	}
	data, _ := json.Marshal(e)
	if len(data) > schemas.MaxEventSize-64*1024 {
		e.Omitted, e.Events = len(e.Events), nil
		data, _ = json.Marshal(e)
	}
	msgID := fmt.Sprintf("%s:%s:%s", DLQStage, a.target, t.pos)
	if err := a.retry(ctx, "publish to DLQ", func() error {
		return publishDLQ(ctx, a.js, data, msgID)
	}); err != nil {
		return err
	}
	a.met.dlq.WithLabelValues(a.target).Inc()
	if a.cfg.Target.OnPoison == PolicySkip {
		a.log.Error("poison transaction skipped (policy skip); recorded in the DLQ", "lsn", t.pos.String(), "table", e.Table, "err", e.Error)
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
		"lsn", t.pos.String(), "table", e.Table, "sqlstate", e.SQLState, "err", e.Error)
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

func (a *Applier) ackAndMark(t *txn) {
	if t.ackMsg != nil {
		_ = t.ackMsg.Ack()
	}
	if t.broken == "" {
		a.setWatermark(t.pos, t.commitTime)
	}
}

func publishDLQ(ctx context.Context, js jetstream.JetStream, data []byte, msgID string) error {
	if err := ensureDLQStream(ctx, js); err != nil {
		return err
	}
	msg := nats.NewMsg(schemas.DLQSubject(DLQStage))
	msg.Data = data
	msg.Header.Set(jetstream.MsgIDHeader, msgID)
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	_, err := js.PublishMsg(ctx, msg)
	return err
}

// ensureDLQStream creates stream DLQ with default settings when missing; an
// existing stream is left as its owner configured it.
func ensureDLQStream(ctx context.Context, js jetstream.JetStream) error {
	_, err := js.Stream(ctx, schemas.StreamDLQ)
	if !errors.Is(err, jetstream.ErrStreamNotFound) {
		return err
	}
	cfg, err := natsx.StreamConfig(schemas.StreamDLQ, natsx.StreamSettings{})
	if err != nil {
		return err
	}
	_, err = natsx.EnsureStream(ctx, js, cfg)
	return err
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

// DLQMessage is a stored DLQ entry with its stream sequence.
type DLQMessage struct {
	Seq   uint64    `json:"seq"`
	Time  time.Time `json:"time"`
	Entry DLQEntry  `json:"entry"`
}

// ListDLQ calls fn for every entry on dlq.sync, oldest first, without
// loading them all at once. An empty or missing DLQ is not an error.
func ListDLQ(ctx context.Context, js jetstream.JetStream, fn func(DLQMessage) error) error {
	s, err := js.Stream(ctx, schemas.StreamDLQ)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("open stream %s: %w", schemas.StreamDLQ, err)
	}
	subj := schemas.DLQSubject(DLQStage)
	var seq uint64 = 1
	for {
		raw, err := s.GetMsg(ctx, seq, jetstream.WithGetMsgSubject(subj))
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("read DLQ after sequence %d: %w", seq, err)
		}
		m := DLQMessage{Seq: raw.Sequence, Time: raw.Time}
		if err := json.Unmarshal(raw.Data, &m.Entry); err != nil {
			m.Entry.Error = "undecodable DLQ entry: " + err.Error()
		}
		if err := fn(m); err != nil {
			return err
		}
		seq = raw.Sequence + 1
	}
}

// GetDLQ returns the DLQ entry stored at seq.
func GetDLQ(ctx context.Context, js jetstream.JetStream, seq uint64) (DLQMessage, error) {
	s, err := js.Stream(ctx, schemas.StreamDLQ)
	if err != nil {
		return DLQMessage{}, fmt.Errorf("open stream %s: %w", schemas.StreamDLQ, err)
	}
	raw, err := s.GetMsg(ctx, seq)
	if err != nil {
		return DLQMessage{}, fmt.Errorf("DLQ entry %d: %w", seq, err)
	}
	if raw.Subject != schemas.DLQSubject(DLQStage) {
		return DLQMessage{}, fmt.Errorf("DLQ entry %d is on %s, not a sync entry", seq, raw.Subject)
	}
	m := DLQMessage{Seq: raw.Sequence, Time: raw.Time}
	if err := json.Unmarshal(raw.Data, &m.Entry); err != nil {
		return DLQMessage{}, fmt.Errorf("DLQ entry %d: decode: %w", seq, err)
	}
	return m, nil
}

// DropDLQ deletes the DLQ entry at seq.
func DropDLQ(ctx context.Context, js jetstream.JetStream, seq uint64) error {
	if _, err := GetDLQ(ctx, js, seq); err != nil {
		return err
	}
	s, err := js.Stream(ctx, schemas.StreamDLQ)
	if err != nil {
		return err
	}
	if err := s.DeleteMsg(ctx, seq); err != nil {
		return fmt.Errorf("drop DLQ entry %d: %w", seq, err)
	}
	return nil
}

// ReplayDLQ applies the DLQ entry at seq to its target through the mapping
// (validated; db is that target's database) in one target transaction, moves
// the checkpoint forward to it if it is behind (a stopped target then
// resumes), and deletes the entry. Entries of broken units cannot be
// replayed.
func ReplayDLQ(ctx context.Context, js jetstream.JetStream, seq uint64, m *Mapping, db DB) (DLQEntry, error) {
	msg, err := GetDLQ(ctx, js, seq)
	if err != nil {
		return DLQEntry{}, err
	}
	e := msg.Entry
	if e.Broken || e.Omitted > 0 {
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
