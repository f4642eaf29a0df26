package natsx

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/heal7/shadowcube/schemas"
)

// DeadLetterFromMsg builds the envelope of a message a stage gives up on:
// the original subject, headers and data, and its stream position.
func DeadLetterFromMsg(stage, reason string, msg jetstream.Msg, cause error) schemas.DeadLetter {
	d := schemas.DeadLetter{Stage: stage, Reason: reason, Error: schemas.OneLine(cause.Error()),
		Subject: msg.Subject(), Payload: msg.Data(), FailedAt: time.Now().UTC()}
	if h := msg.Headers(); len(h) > 0 {
		d.Headers = map[string][]string(h)
	}
	if md, err := msg.Metadata(); err == nil {
		d.Stream, d.StreamSeq = md.Stream, md.Sequence.Stream
	}
	return d
}

// DeadLetterMsgID is the de-duplication id of the dead letter of a stream
// message, so a stage that dead-letters it twice (a redelivery after a lost
// ack) stores it once; "" when d has no stream position.
func DeadLetterMsgID(d *schemas.DeadLetter) string {
	if d.Stream == "" {
		return ""
	}
	return fmt.Sprintf("%s-%s-%d", d.Stage, d.Stream, d.StreamSeq)
}

// PublishDeadLetter publishes d on schemas.DLQSubject(d.Stage), creating
// stream DLQ with the SetSharedSettings settings when it is missing (no
// stage owns its settings). msgID, when set, de-duplicates.
func PublishDeadLetter(ctx context.Context, js jetstream.JetStream, d *schemas.DeadLetter, msgID string) error {
	data, err := d.Encode()
	if err != nil {
		return err
	}
	if _, err := StreamForReader(ctx, js, schemas.StreamDLQ); err != nil {
		return fmt.Errorf("publish dead letter: %w", err)
	}
	msg := nats.NewMsg(schemas.DLQSubject(d.Stage))
	msg.Data = data
	if msgID != "" {
		msg.Header.Set(jetstream.MsgIDHeader, msgID)
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if _, err := js.PublishMsg(ctx, msg); err != nil {
		return fmt.Errorf("publish dead letter to %s: %w", msg.Subject, err)
	}
	return nil
}

// DeadLetterMsg is a dead letter stored in stream DLQ with its sequence.
// When the stored data is not a valid envelope, Entry holds the stage (from
// the subject) and Error says why.
type DeadLetterMsg struct {
	Seq   uint64             `json:"seq"`
	Time  time.Time          `json:"time"`
	Entry schemas.DeadLetter `json:"entry"`
}

// ErrNoDeadLetter means no dead letter is stored at that sequence (or not
// one of the asked stage).
var ErrNoDeadLetter = errors.New("no such dead letter")

// ListDeadLetters calls fn for every dead letter of stage ("" = every
// stage), oldest first, without loading them all at once. A missing DLQ
// stream (nothing was ever dead-lettered) is an empty list.
func ListDeadLetters(ctx context.Context, js jetstream.JetStream, stage string, fn func(DeadLetterMsg) error) error {
	s, err := js.Stream(ctx, schemas.StreamDLQ)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("open stream %s: %w", schemas.StreamDLQ, err)
	}
	subj := schemas.PrefixDLQ + ".>"
	if stage != "" {
		subj = schemas.DLQSubject(stage)
	}
	var seq uint64 = 1
	for {
		raw, err := s.GetMsg(ctx, seq, jetstream.WithGetMsgSubject(subj))
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("read %s after sequence %d: %w", schemas.StreamDLQ, seq, err)
		}
		if err := fn(decodeStored(raw)); err != nil {
			return err
		}
		seq = raw.Sequence + 1
	}
}

func decodeStored(raw *jetstream.RawStreamMsg) DeadLetterMsg {
	m := DeadLetterMsg{Seq: raw.Sequence, Time: raw.Time}
	d, err := schemas.DecodeDeadLetter(raw.Data)
	if err != nil {
		d = schemas.DeadLetter{Stage: stageOf(raw.Subject), Error: "undecodable dead letter: " + schemas.OneLine(err.Error()), FailedAt: raw.Time}
	}
	m.Entry = d
	return m
}

func stageOf(subject string) string {
	for _, s := range schemas.DeadLetterStages {
		if subject == schemas.DLQSubject(s) {
			return s
		}
	}
	return subject
}

// GetDeadLetter returns the dead letter stored at seq; stage, when set,
// must be its stage. A missing entry or stream wraps ErrNoDeadLetter.
func GetDeadLetter(ctx context.Context, js jetstream.JetStream, seq uint64, stage string) (DeadLetterMsg, error) {
	s, err := js.Stream(ctx, schemas.StreamDLQ)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return DeadLetterMsg{}, fmt.Errorf("dead letter %d: the DLQ is empty: %w", seq, ErrNoDeadLetter)
	}
	if err != nil {
		return DeadLetterMsg{}, fmt.Errorf("open stream %s: %w", schemas.StreamDLQ, err)
	}
	raw, err := s.GetMsg(ctx, seq)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return DeadLetterMsg{}, fmt.Errorf("dead letter %d: not found (see dlq list): %w", seq, ErrNoDeadLetter)
	}
	if err != nil {
		return DeadLetterMsg{}, fmt.Errorf("dead letter %d: %w", seq, err)
	}
	if stage != "" && raw.Subject != schemas.DLQSubject(stage) {
		return DeadLetterMsg{}, fmt.Errorf("dead letter %d is on %s, not a %s entry: %w", seq, raw.Subject, stage, ErrNoDeadLetter)
	}
	return decodeStored(raw), nil
}

// DropDeadLetter deletes the dead letter at seq (of stage, when set).
func DropDeadLetter(ctx context.Context, js jetstream.JetStream, seq uint64, stage string) error {
	if _, err := GetDeadLetter(ctx, js, seq, stage); err != nil {
		return err
	}
	s, err := js.Stream(ctx, schemas.StreamDLQ)
	if err != nil {
		return err
	}
	if err := s.DeleteMsg(ctx, seq); err != nil {
		return fmt.Errorf("drop dead letter %d: %w", seq, err)
	}
	return nil
}

// RepublishDeadLetter publishes the original message of the dead letter at
// seq again, on its original subject with its original headers, waits for
// the stream's acknowledgement, then deletes the dead letter. Sync entries
// are replayed through the mapping instead (consumers.ReplayDLQ). A message
// the stream drops as a duplicate (its Nats-Msg-Id is still inside the
// stream's de-duplication window) is an error and the entry stays.
func RepublishDeadLetter(ctx context.Context, js jetstream.JetStream, seq uint64) (DeadLetterMsg, error) {
	m, err := GetDeadLetter(ctx, js, seq, "")
	if err != nil {
		return m, err
	}
	d := &m.Entry
	switch {
	case d.V == "":
		return m, fmt.Errorf("dead letter %d cannot be replayed: %s", seq, d.Error)
	case d.Stage == schemas.StageSync:
		return m, fmt.Errorf("dead letter %d is a sync entry: replay it through the mapping (dlq replay --stage sync --mapping FILE)", seq)
	case d.PayloadOmitted > 0:
		return m, fmt.Errorf("dead letter %d cannot be replayed: its payload of %d bytes was too large to keep", seq, d.PayloadOmitted)
	case d.Subject == "":
		return m, fmt.Errorf("dead letter %d cannot be replayed: it names no original subject", seq)
	}
	msg := nats.NewMsg(d.Subject)
	msg.Data = d.Payload
	for k, vs := range d.Headers {
		msg.Header[k] = slices.Clone(vs)
	}
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	ack, err := js.PublishMsg(pctx, msg)
	cancel()
	if err != nil {
		return m, fmt.Errorf("replay dead letter %d to %s: %w", seq, d.Subject, err)
	}
	if ack.Duplicate {
		return m, fmt.Errorf("replay dead letter %d: stream %s dropped it as a duplicate of message id %q (still inside its de-duplication window); try again later",
			seq, ack.Stream, msg.Header.Get(jetstream.MsgIDHeader))
	}
	if err := DropDeadLetter(ctx, js, seq, d.Stage); err != nil {
		return m, fmt.Errorf("replayed to %s (stream %s seq %d), but %w", d.Subject, ack.Stream, ack.Sequence, err)
	}
	return m, nil
}
