package schemas

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

func TestDeadLetterEncodeDecode(t *testing.T) {
	at := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
	d := DeadLetter{Stage: StageCompare, Reason: ReasonUndecodable, Error: "bad", Subject: "shadow.result.saju.x",
		Headers: map[string][]string{"Nats-Msg-Id": {"a"}, "x-lower": {"1", "2"}}, Payload: []byte("{\x00oops"), FailedAt: at}
	data, err := d.Encode()
	if err != nil {
		t.Fatal(err)
	}
	got, err := DecodeDeadLetter(data)
	if err != nil {
		t.Fatal(err)
	}
	if got.V != Version || !bytes.Equal(got.Payload, d.Payload) || got.Headers["x-lower"][1] != "2" || got.Subject != d.Subject || !got.FailedAt.Equal(at) {
		t.Fatalf("round trip = %+v", got)
	}
}

func TestDeadLetterEncodeShrinks(t *testing.T) {
	big := bytes.Repeat([]byte("x"), MaxEventSize)
	ev := &ChangeEvent{V: Version, Slot: "s", DB: "d", Schema: "public", Table: "t", Op: OpInsert, Key: []string{"id"}}
	d := DeadLetter{Stage: StageSync, Reason: ReasonApplyFailed, Error: "e", FailedAt: time.Now(),
		Sync: &SyncDeadLetter{Target: "cube", Slot: "s", Policy: "stop", Events: []*ChangeEvent{ev, ev}}, Payload: big}
	data, err := d.Encode()
	if err != nil {
		t.Fatal(err)
	}
	if len(data) > MaxEventSize {
		t.Fatalf("encoded %d bytes, over the limit %d", len(data), MaxEventSize)
	}
	got, err := DecodeDeadLetter(data)
	if err != nil {
		t.Fatal(err)
	}
	if got.PayloadOmitted != len(big) || got.Payload != nil || got.Sync.OmittedEvents != 2 || got.Sync.Events != nil {
		t.Fatalf("shrunk envelope = omitted payload %d, events %d/%d", got.PayloadOmitted, got.Sync.OmittedEvents, len(got.Sync.Events))
	}
	if len(d.Sync.Events) != 2 {
		t.Fatal("Encode changed the caller's sync details")
	}
}

func TestDeadLetterValidate(t *testing.T) {
	at := time.Now()
	tests := []struct {
		name string
		d    DeadLetter
		want string
	}{
		{"unknown stage", DeadLetter{Stage: "tap", Reason: "r", Error: "e", FailedAt: at}, `"stage"`},
		{"no reason", DeadLetter{Stage: StageShadow, Error: "e", Subject: "s", FailedAt: at}, `"reason"`},
		{"no error", DeadLetter{Stage: StageShadow, Reason: "r", Subject: "s", FailedAt: at}, `"error"`},
		{"no time", DeadLetter{Stage: StageShadow, Reason: "r", Error: "e", Subject: "s"}, `"failed_at"`},
		{"shadow without subject", DeadLetter{Stage: StageShadow, Reason: "r", Error: "e", FailedAt: at}, `"subject"`},
		{"sync without details", DeadLetter{Stage: StageSync, Reason: "r", Error: "e", FailedAt: at}, `"sync"`},
		{"sync without target", DeadLetter{Stage: StageSync, Reason: "r", Error: "e", FailedAt: at, Sync: &SyncDeadLetter{Slot: "s"}}, `"sync.target"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			data, err := tc.d.Encode()
			if err != nil {
				t.Fatal(err)
			}
			if _, err := DecodeDeadLetter(data); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("decode = %v, want an error naming %s", err, tc.want)
			}
		})
	}
}
