package cdc

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/heal7/shadowcube/schemas"
)

// JetStream keeps this reader's events in the CDC stream in publish order,
// with no gap, or it stores nothing more: every event is published with
// Nats-Expected-Last-Msg-Id set to the id of the event published before it.
// Without that, an event whose publish times out (a leader election in a
// cluster) can be lost while later ones in the async window are stored; the
// lost one is published again only after them, and sync, which applies in
// stream order and skips positions it has passed, never applies it. With the
// chain, every event after the lost one is refused too ("wrong last msg ID"),
// the session fails, and the next one restarts from the durable position.
//
// The next session must not re-publish what the stream already holds: an
// event stored again outside the duplicate window moves the stream's last id
// away from the chain (and one inside it does not), so the session reads the
// stream's last event (the fence), skips every event at or before it (it is
// stored, in order, by the chain's induction) and chains the first new event
// to it.
//
// The chain needs this reader to be the CDC stream's only writer. When the
// stream's last event is another slot's, the session publishes unchained and
// says so (the old behaviour: a lost event is logged as a reorder).
//
// Not on a replicated stream: nats-server (v2.15) checks the expected last
// id of a clustered stream only when a replica applies the message, and a
// mismatch there is an apply error that stalls the stream's replicas (seen
// as a CDC stream that elects no leader for minutes in the 3-node test). On
// a replicated CDC stream the session publishes unchained and says so: an
// event lost in a leader election can then still be stored after later ones
// (counted in shadowcube_cdc_publish_gaps_total). Sync does not lose it:
// each event names the transaction its session published before it
// (ChangeEvent.PrevLSN), and sync holds a transaction until its predecessor
// has been applied (consumers/txn.go).

// fence is the position of the stream's last event of this slot.
type fence struct {
	lastID    string // Nats-Msg-Id of the stream's last event ("" = empty stream)
	chain     bool   // publish chained (this reader is the only writer seen)
	streaming bool   // lastID is a streamed change (not a snapshot row)
	lsn       schemas.LSN
	idx       int
	foreign   string // the other writer's id, when chain is false
	// replicated: the stream has replicas, where the chain cannot be used
	replicated bool
}

// readFence reads the CDC stream's last event.
func readFence(ctx context.Context, js jetstream.JetStream, slot string) (fence, error) {
	s, err := js.Stream(ctx, schemas.StreamCDC)
	if err != nil {
		return fence{}, fmt.Errorf("read the CDC stream's last event: %w", err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		return fence{}, fmt.Errorf("read the CDC stream's last event: %w", err)
	}
	if info.Config.Replicas > 1 {
		return fence{replicated: true}, nil
	}
	if info.State.Msgs == 0 || info.State.LastSeq == 0 {
		return fence{chain: true}, nil
	}
	m, err := s.GetMsg(ctx, info.State.LastSeq)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		// deleted (expired) since Info: nothing to fence, no duplicates left
		return fence{chain: true}, nil
	}
	if err != nil {
		return fence{}, fmt.Errorf("read the CDC stream's last event: %w", err)
	}
	id := m.Header.Get(jetstream.MsgIDHeader)
	if !strings.HasPrefix(id, slot+":") {
		return fence{foreign: id}, nil
	}
	f := fence{lastID: id, chain: true}
	f.streaming, f.lsn, f.idx = streamPosition(id, slot)
	return f, nil
}

// streamPosition parses the position of a streamed change's id
// (<slot>:<commit LSN>:<index>); ok is false for snapshot rows and others.
func streamPosition(id, slot string) (ok bool, lsn schemas.LSN, idx int) {
	rest, found := strings.CutPrefix(id, slot+":")
	if !found || strings.HasPrefix(rest, "snapshot:") {
		return false, 0, 0
	}
	l, i, found := strings.Cut(rest, ":")
	if !found {
		return false, 0, 0
	}
	lsn, err := schemas.ParseLSN(l)
	if err != nil {
		return false, 0, 0
	}
	idx, err = strconv.Atoi(i)
	if err != nil {
		return false, 0, 0
	}
	return true, lsn, idx
}

// stored reports whether the event with this id is at or before the fence:
// the stream holds it already.
func (f *fence) stored(id, slot string) bool {
	if !f.streaming {
		return false
	}
	ok, lsn, idx := streamPosition(id, slot)
	if !ok {
		return false
	}
	return lsn < f.lsn || lsn == f.lsn && idx <= f.idx
}
