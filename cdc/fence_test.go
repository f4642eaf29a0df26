package cdc

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/heal7/shadowcube/internal/natsx"
	"github.com/heal7/shadowcube/internal/testenv"
	"github.com/heal7/shadowcube/schemas"
)

// TestPublishOrderFence: an event that JetStream does not store keeps every
// later event of the session out of the stream too (they were stored after
// it before: consumers then met the lost one late and skipped it), and the
// next session publishes from the stream's last event on, never twice.
//
// The lost publish is made real and deterministic: the second event goes to
// a subject no stream covers (no responders), as a publish to a stopping
// leader is lost in a cluster election.
func TestPublishOrderFence(t *testing.T) {
	srv := testenv.StartNATS(t)
	_, js := srv.Connect(t)
	ctx := testenv.Context(t, time.Minute)
	cfg, err := natsx.StreamConfig(schemas.StreamCDC, natsx.StreamSettings{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := natsx.EnsureStream(ctx, js, cfg); err != nil {
		t.Fatal(err)
	}
	m, err := newMetrics(prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	const slot = "s1"
	ids := []string{"s1:0/100:0", "s1:0/100:1", "s1:0/200:0", "s1:0/300:0"}
	subject := func(i int, lost bool) string {
		if lost {
			return "lost.cdc.db.public.t"
		}
		return "cdc.db.public.t"
	}
	session := func(lostAt int) (gaps, skipped int, err error) {
		t.Helper()
		f, ferr := readFence(ctx, js, slot)
		if ferr != nil {
			t.Fatal(ferr)
		}
		var durable atomic.Uint64
		var last atomic.Int64
		p := newPublisher(js, 16, 5*time.Second, &durable, &last, m, slot, f)
		for i, id := range ids {
			end := schemas.LSN(0)
			if i != 0 { // event 0 and 1 are one transaction
				end = schemas.LSN(0x100*(i) + 0x10)
			}
			if perr := p.publish(ctx, subject(i, i == lostAt), id, []byte(`{}`), schemas.OpInsert, end, time.Now()); perr != nil {
				break
			}
		}
		gaps, err = p.close()
		return gaps, p.skipped, err
	}
	stored := func() []string {
		t.Helper()
		s, err := js.Stream(ctx, schemas.StreamCDC)
		if err != nil {
			t.Fatal(err)
		}
		info, err := s.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
			msg, err := s.GetMsg(ctx, seq)
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, msg.Header.Get(jetstream.MsgIDHeader))
		}
		return out
	}

	// Session 1: event 1 is lost; 2 and 3 are published after it.
	gaps, _, err := session(1)
	if err == nil {
		t.Fatal("the lost publish was not reported")
	}
	if got := stored(); len(got) != 1 || got[0] != ids[0] || gaps != 0 {
		t.Fatalf("after a lost publish the stream holds %v (gaps %d); want only %s: nothing may be stored after a lost event", got, gaps, ids[0])
	}
	// Session 2 restarts from the durable position (all four again): the
	// one the stream holds is skipped, the rest are stored in order, once.
	gaps, skipped, err := session(-1)
	if err != nil || gaps != 0 {
		t.Fatalf("second session: gaps %d, err %v", gaps, err)
	}
	if got := stored(); len(got) != 4 || got[0] != ids[0] || got[1] != ids[1] || got[2] != ids[2] || got[3] != ids[3] || skipped != 1 {
		t.Fatalf("stream holds %v after the restart (skipped %d); want %v, each once, in order", got, skipped, ids)
	}
	// Session 3 re-sends everything (a restart behind the stream): nothing
	// is stored twice, even past the duplicate window.
	if _, skipped, err = session(-1); err != nil || skipped != 4 {
		t.Fatalf("third session: err %v, skipped %d; want all 4 skipped", err, skipped)
	}
	if got := stored(); len(got) != 4 {
		t.Fatalf("stream holds %v after a full re-send", got)
	}

	// Another writer's event last in the stream: this session publishes
	// unchained (and the reader says so), as before the fence.
	if _, err := js.Publish(ctx, "cdc.other.public.t", []byte(`{}`), jetstream.WithMsgID("s2:0/900:0")); err != nil {
		t.Fatal(err)
	}
	f, err := readFence(context.Background(), js, slot)
	if err != nil || f.chain || f.foreign != "s2:0/900:0" {
		t.Fatalf("fence with another writer last = %+v, %v; want unchained naming s2's event", f, err)
	}
}
