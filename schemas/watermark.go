package schemas

import (
	"encoding/json"
	"time"
)

// KVBucket is the JetStream key-value bucket shared by the pipeline's small
// state: sync watermarks (WatermarkKey) and rollout flags.
const KVBucket = "shadowcube"

// WatermarkKey is the KV key holding the sync watermark of one cube target:
// "sync-watermark.<target>".
func WatermarkKey(target string) string {
	return "sync-watermark." + EscapeToken(target)
}

// Watermark says how far a cube target's database has caught up with the
// legacy database: every source transaction committed at or before
// CommitTime (LSN) is applied. The shadow stage waits on it before replaying a
// request captured at a later time.
type Watermark struct {
	V          string    `json:"v"`
	Target     string    `json:"target"`
	Slot       string    `json:"slot"`
	LSN        LSN       `json:"lsn"`
	CommitTime time.Time `json:"commit_time"`
	AppliedAt  time.Time `json:"applied_at"`
}

// DecodeWatermark decodes a Watermark KV value.
func DecodeWatermark(data []byte) (Watermark, error) {
	return decode[Watermark](data, "Watermark")
}

// Validate reports a missing target.
func (w *Watermark) Validate() error {
	if w.Target == "" {
		return &FieldError{Event: "Watermark", Field: "target", Msg: "required"}
	}
	return nil
}

// Encode returns the JSON form of w with the current version.
func (w Watermark) Encode() ([]byte, error) {
	w.V = Version
	return json.Marshal(w)
}
