package schemas

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	gojson "github.com/goccy/go-json"
)

// MaxEventSize is the largest encoded event a decoder accepts. It matches the
// max payload of the NATS servers shadowcube configures; a larger payload is
// refused before any parsing.
const MaxEventSize = 8 << 20

// ErrUnknownVersion means the event was written by a newer major version of
// shadowcube: upgrade the reader, do not drop the event.
var ErrUnknownVersion = errors.New("unknown event major version")

// ErrTooLarge means the payload exceeds MaxEventSize.
var ErrTooLarge = errors.New("event too large")

// FieldError names the field of an event that is missing or malformed.
type FieldError struct {
	Event string // "RequestEvent", "ChangeEvent", ...
	Field string // JSON field path, e.g. "response.status"
	Msg   string
}

func (e *FieldError) Error() string {
	return fmt.Sprintf("decode %s: field %q: %s", e.Event, e.Field, e.Msg)
}

// DecodeRequestEvent decodes and validates a RequestEvent.
func DecodeRequestEvent(data []byte) (RequestEvent, error) {
	// Every replay decodes one: the documents the encoders write take a
	// plain parser (decode_fast.go), anything else the general decoder.
	if len(data) <= MaxEventSize {
		if ev, ok := decodeRequestFast(data); ok {
			if err := checkVersionString("RequestEvent", ev.V); err != nil {
				return ev, err
			}
			return ev, ev.Validate()
		}
	}
	return decode[RequestEvent](data, "RequestEvent")
}

// DecodeChangeEvent decodes and validates a ChangeEvent.
func DecodeChangeEvent(data []byte) (ChangeEvent, error) {
	// sync decodes one per source row change: the documents the encoders
	// write take a plain parser (decode_change_fast.go), anything else the
	// general decoder.
	if len(data) <= MaxEventSize {
		if ev, ok := decodeChangeFast(data); ok {
			if err := checkVersionString("ChangeEvent", ev.V); err != nil {
				return ev, err
			}
			return ev, ev.Validate()
		}
	}
	return decode[ChangeEvent](data, "ChangeEvent")
}

// DecodeShadowResult decodes and validates a ShadowResult.
func DecodeShadowResult(data []byte) (ShadowResult, error) {
	return decode[ShadowResult](data, "ShadowResult")
}

// DecodeMismatch decodes and validates a Mismatch.
func DecodeMismatch(data []byte) (Mismatch, error) {
	return decode[Mismatch](data, "Mismatch")
}

// event is what the decoders accept: a versioned, validated struct.
type event[T any] interface {
	*T
	versioned
	Validate() error
}

func decode[T any, P event[T]](data []byte, name string) (T, error) {
	var ev T
	if len(data) > MaxEventSize {
		return ev, fmt.Errorf("decode %s: %d bytes exceeds the limit of %d: %w", name, len(data), MaxEventSize, ErrTooLarge)
	}
	// Fast path: one parse with goccy/go-json (about four times faster than
	// encoding/json on these events; FuzzDecodersAgree holds it to the same
	// results). The version is checked afterwards; only a failed parse pays
	// for encoding/json's second look, which reports the version first and
	// names the bad field.
	if err := gojson.Unmarshal(data, &ev); err == nil {
		if err := checkVersionString(name, P(&ev).version()); err != nil {
			return ev, err
		}
		return ev, P(&ev).Validate()
	}
	ev = *new(T) // the failed parse may have filled part of it
	if err := decodeSlow(data, name, &ev); err != nil {
		return *new(T), err
	}
	return ev, P(&ev).Validate()
}

// decodeSlow parses with encoding/json, for its error messages.
func decodeSlow(data []byte, event string, into any) error {
	var head struct {
		V json.RawMessage `json:"v"`
	}
	if err := json.Unmarshal(data, &head); err != nil {
		return fmt.Errorf("decode %s: %w", event, describeJSONError(err))
	}
	if err := checkVersion(event, head.V); err != nil {
		return err
	}
	if err := json.Unmarshal(data, into); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			return &FieldError{Event: event, Field: te.Field, Msg: fmt.Sprintf("want %s, got JSON %s", te.Type, te.Value)}
		}
		return fmt.Errorf("decode %s: %w", event, describeJSONError(err))
	}
	return nil
}

func describeJSONError(err error) error {
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return fmt.Errorf("invalid JSON at byte %d: %w", se.Offset, err)
	}
	return err
}

func checkVersion(event string, raw json.RawMessage) error {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return &FieldError{Event: event, Field: "v", Msg: "missing; every event carries its version, e.g. \"1.0\""}
	}
	var v string
	if err := json.Unmarshal(raw, &v); err != nil {
		return &FieldError{Event: event, Field: "v", Msg: fmt.Sprintf("want a string like \"1.0\", got %s", raw)}
	}
	return checkVersionString(event, v)
}

// versioned is implemented by every event: its "v" field.
type versioned interface{ version() string }

func (e *RequestEvent) version() string { return e.V }
func (e *ChangeEvent) version() string  { return e.V }
func (e *ShadowResult) version() string { return e.V }
func (e *Mismatch) version() string     { return e.V }
func (w *Watermark) version() string    { return w.V }

func checkVersionString(event, v string) error {
	if v == "" {
		return &FieldError{Event: event, Field: "v", Msg: "missing; every event carries its version, e.g. \"1.0\""}
	}
	major, _, _ := strings.Cut(v, ".")
	want, _, _ := strings.Cut(Version, ".")
	if major != want {
		return fmt.Errorf("decode %s: version %q: this build reads major version %s: %w", event, v, want, ErrUnknownVersion)
	}
	return nil
}

func required(event, field string, ok bool) error {
	if ok {
		return nil
	}
	return &FieldError{Event: event, Field: field, Msg: "required"}
}

// Validate checks the fields every RequestEvent must have.
func (e *RequestEvent) Validate() error {
	const ev = "RequestEvent"
	return errors.Join(
		required(ev, "id", e.ID != ""),
		required(ev, "service", e.Service != ""),
		required(ev, "route", e.Route != ""),
		required(ev, "method", e.Method != ""),
		required(ev, "path", e.Path != ""),
		required(ev, "captured_at", !e.CapturedAt.IsZero()),
		oneOf(ev, "source", string(e.Source), string(SourceTap), string(SourceMiddleware), string(SourceImport), string(SourceSniff)),
		validStatus(ev, "response.status", e.Response.Status),
	)
}

// Validate checks the fields every ChangeEvent must have.
func (e *ChangeEvent) Validate() error {
	const ev = "ChangeEvent"
	errs := []error{
		required(ev, "slot", e.Slot != ""),
		required(ev, "db", e.DB != ""),
		required(ev, "schema", e.Schema != ""),
		required(ev, "table", e.Table != ""),
		oneOf(ev, "op", string(e.Op), string(OpSnapshot), string(OpInsert), string(OpUpdate), string(OpDelete), string(OpTruncate), string(OpSchema)),
	}
	if e.Index < 0 || e.TxSize < 0 || (e.TxSize > 0 && e.Index >= e.TxSize) {
		errs = append(errs, &FieldError{Event: ev, Field: "index", Msg: fmt.Sprintf("index %d outside the transaction of size %d", e.Index, e.TxSize)})
	}
	if e.Op == OpTruncate {
		errs = append(errs, required(ev, "truncate", e.Truncate != nil))
	}
	return errors.Join(errs...)
}

// Validate checks the fields every ShadowResult must have.
func (e *ShadowResult) Validate() error {
	const ev = "ShadowResult"
	return errors.Join(
		required(ev, "request_id", e.RequestID != ""),
		required(ev, "service", e.Service != ""),
		required(ev, "route", e.Route != ""),
		validStatus(ev, "legacy.status", e.Legacy.Status),
		required(ev, "cube", e.Cube != nil || e.CubeError != "" || e.Skipped != ""),
	)
}

// Validate checks the fields every Mismatch must have.
func (e *Mismatch) Validate() error {
	const ev = "Mismatch"
	return errors.Join(
		required(ev, "request_id", e.RequestID != ""),
		required(ev, "route", e.Route != ""),
		oneOf(ev, "severity", string(e.Severity), string(SeverityInfo), string(SeverityMinor), string(SeverityMajor), string(SeverityCritical)),
	)
}

func oneOf(event, field, got string, allowed ...string) error {
	for _, a := range allowed {
		if got == a {
			return nil
		}
	}
	return &FieldError{Event: event, Field: field, Msg: fmt.Sprintf("%q is not one of %s", got, strings.Join(allowed, ", "))}
}

func validStatus(event, field string, status int) error {
	if status < 100 || status > 599 {
		return &FieldError{Event: event, Field: field, Msg: fmt.Sprintf("HTTP status %d outside 100-599", status)}
	}
	return nil
}
