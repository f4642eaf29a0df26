package schemas

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Stages that dead-letter messages, each on its own subject DLQSubject(stage)
// of stream DLQ.
const (
	StageSync    = "sync"
	StageShadow  = "shadow"
	StageCompare = "compare"
)

// DeadLetterStages lists the stages that write dead letters.
var DeadLetterStages = []string{StageSync, StageShadow, StageCompare}

// Reasons a message was dead-lettered.
const (
	// ReasonUndecodable: the message is not a valid event of its stream.
	ReasonUndecodable = "undecodable"
	// ReasonIncomplete: sync received part of a source transaction only.
	ReasonIncomplete = "incomplete"
	// ReasonApplyFailed: sync could not apply a source transaction to a
	// target (a constraint, a type, a mapping expression failed).
	ReasonApplyFailed = "apply-failed"
)

// DeadLetter is the one envelope every stage writes to stream DLQ, on
// DLQSubject(Stage), for a message it could not process and will not retry.
//
// Subject, Headers and Payload are the original message as the stage
// received it, so `shadowcube dlq replay` can publish it again unchanged.
// Sync dead-letters whole source transactions (several messages): its
// entries carry the transaction in Sync instead, and a payload only for an
// undecodable message.
type DeadLetter struct {
	V      string `json:"v"`
	Stage  string `json:"stage"`
	Reason string `json:"reason"`
	Error  string `json:"error"`
	// Subject and Headers of the original message.
	Subject string              `json:"subject,omitempty"`
	Headers map[string][]string `json:"headers,omitempty"`
	// Payload is the original message data; PayloadOmitted counts its bytes
	// when it was too large to keep inside the envelope (it then cannot be
	// replayed).
	Payload        []byte `json:"payload,omitempty"`
	PayloadOmitted int    `json:"payload_omitted,omitempty"`
	// Stream and StreamSeq place the original message, when it came from a
	// stream.
	Stream    string    `json:"stream,omitempty"`
	StreamSeq uint64    `json:"stream_seq,omitempty"`
	FailedAt  time.Time `json:"failed_at"`
	// Sync holds what the sync stage needs to replay or explain an entry.
	Sync *SyncDeadLetter `json:"sync,omitempty"`
}

// SyncDeadLetter details a sync dead letter: the source transaction (or
// snapshot row, or undecodable message) a target could not apply.
type SyncDeadLetter struct {
	Target     string    `json:"target"`
	Slot       string    `json:"slot"`
	Position   string    `json:"position"` // commit LSN, or LSN#index of a snapshot row
	LSN        LSN       `json:"lsn"`
	Index      int64     `json:"index"`
	CommitTime time.Time `json:"commit_time,omitzero"`
	SQLState   string    `json:"sqlstate,omitempty"`
	Table      string    `json:"table,omitempty"`
	Policy     string    `json:"policy"`
	// Broken means the unit cannot be replayed: undecodable or incomplete.
	Broken bool           `json:"broken,omitempty"`
	Events []*ChangeEvent `json:"events,omitempty"`
	// Raw holds the undecodable message bodies (as JSON when they are JSON,
	// else as a JSON string).
	Raw []json.RawMessage `json:"raw,omitempty"`
	// OmittedEvents counts events left out because the entry was too large.
	OmittedEvents int `json:"omitted_events,omitempty"`
}

// maxDeadLetterSize leaves room under MaxEventSize for the message headers.
const maxDeadLetterSize = MaxEventSize - 64*1024

// ErrDeadLetterTooLarge means the envelope stays over the size limit even
// without its payload and events (a huge error text or headers).
var ErrDeadLetterTooLarge = errors.New("dead letter too large")

// Encode returns the JSON of d with the current version. When the envelope
// would exceed the event size limit, the sync events, then the raw bodies,
// then the payload are left out (and counted), in that order.
func (d DeadLetter) Encode() ([]byte, error) {
	d.V = Version
	if d.Sync != nil {
		s := *d.Sync
		d.Sync = &s
	}
	for step := 0; ; step++ {
		data, err := json.Marshal(d)
		if err != nil || len(data) <= maxDeadLetterSize {
			return data, err
		}
		switch {
		case d.Sync != nil && len(d.Sync.Events) > 0:
			d.Sync.OmittedEvents, d.Sync.Events = len(d.Sync.Events), nil
		case d.Sync != nil && len(d.Sync.Raw) > 0:
			d.Sync.Raw = nil
		case len(d.Payload) > 0:
			d.PayloadOmitted, d.Payload = len(d.Payload), nil
		default:
			return nil, fmt.Errorf("encode %s dead letter: %d bytes without payload: %w", d.Stage, len(data), ErrDeadLetterTooLarge)
		}
	}
}

// DecodeDeadLetter decodes and validates a DeadLetter.
func DecodeDeadLetter(data []byte) (DeadLetter, error) {
	return decode[DeadLetter](data, "DeadLetter")
}

func (d *DeadLetter) version() string { return d.V }

// Validate checks the fields every DeadLetter must have: a known stage, a
// reason, an error, a time; the original subject for shadow and compare;
// the target and slot for sync.
func (d *DeadLetter) Validate() error {
	const ev = "DeadLetter"
	errs := []error{
		oneOf(ev, "stage", d.Stage, DeadLetterStages...),
		required(ev, "reason", d.Reason != ""),
		required(ev, "error", d.Error != ""),
		required(ev, "failed_at", !d.FailedAt.IsZero()),
	}
	switch d.Stage {
	case StageSync:
		errs = append(errs, required(ev, "sync", d.Sync != nil))
		if d.Sync != nil {
			errs = append(errs, required(ev, "sync.target", d.Sync.Target != ""), required(ev, "sync.slot", d.Sync.Slot != ""))
		}
	case StageShadow, StageCompare:
		errs = append(errs, required(ev, "subject", d.Subject != ""))
	}
	return errors.Join(errs...)
}

// OneLine folds an error text onto one line (errors.Join separates with
// newlines), as dead letters and their log lines carry it.
func OneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}
