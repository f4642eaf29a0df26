package schemas

import (
	"encoding/base64"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/heal7/shadowcube/internal/jsonenc"
)

// The append functions below write the same JSON document encoding/json
// writes for the event, up to key order inside header maps (not sorted),
// without reflection: the capture and replay paths encode every request, and
// this is a few times cheaper (the cdc reader likewise encodes every change).
// TestAppendMatchesEncodingJSON and TestAppendChangeEventMatchesJSON keep them
// in step with encoding/json and fail when an event gains a field.

// AppendRequestEvent appends the JSON of ev to b.
func AppendRequestEvent(b []byte, ev *RequestEvent) []byte {
	b = append(b, `{"v":`...)
	b = jsonenc.AppendString(b, ev.V)
	b = append(b, `,"id":`...)
	b = jsonenc.AppendString(b, ev.ID)
	b = append(b, `,"service":`...)
	b = jsonenc.AppendString(b, ev.Service)
	b = append(b, `,"route":`...)
	b = jsonenc.AppendString(b, ev.Route)
	b = append(b, `,"method":`...)
	b = jsonenc.AppendString(b, ev.Method)
	b = append(b, `,"path":`...)
	b = jsonenc.AppendString(b, ev.Path)
	if ev.Query != "" {
		b = append(b, `,"query":`...)
		b = jsonenc.AppendString(b, ev.Query)
	}
	if len(ev.Headers) > 0 {
		b = append(b, `,"headers":`...)
		b = appendHeader(b, ev.Headers)
	}
	b = appendBody(b, ev.Body, ev.BodyTruncated)
	if ev.UserKey != "" {
		b = append(b, `,"user_key":`...)
		b = jsonenc.AppendString(b, ev.UserKey)
	}
	if ev.TraceParent != "" {
		b = append(b, `,"traceparent":`...)
		b = jsonenc.AppendString(b, ev.TraceParent)
	}
	b = append(b, `,"captured_at":`...)
	b = appendTime(b, ev.CapturedAt)
	b = append(b, `,"source":`...)
	b = jsonenc.AppendString(b, string(ev.Source))
	b = append(b, `,"response":`...)
	b = appendResponse(b, &ev.Response)
	return append(b, '}')
}

// AppendShadowResult appends the JSON of res to b.
func AppendShadowResult(b []byte, res *ShadowResult) []byte {
	// One allocation for a fresh buffer rather than a chain of growths
	// (the bodies, in base64, are most of the document).
	b = slices.Grow(b, shadowResultSize(res))
	b = append(b, `{"v":`...)
	b = jsonenc.AppendString(b, res.V)
	b = append(b, `,"request_id":`...)
	b = jsonenc.AppendString(b, res.RequestID)
	b = append(b, `,"service":`...)
	b = jsonenc.AppendString(b, res.Service)
	b = append(b, `,"route":`...)
	b = jsonenc.AppendString(b, res.Route)
	b = append(b, `,"request":`...)
	b = AppendRequestEvent(b, &res.Request)
	b = append(b, `,"legacy":`...)
	b = appendResponse(b, &res.Legacy)
	if res.Cube != nil {
		b = append(b, `,"cube":`...)
		b = appendResponse(b, res.Cube)
	}
	if res.CubeError != "" {
		b = append(b, `,"cube_error":`...)
		b = jsonenc.AppendString(b, res.CubeError)
	}
	if res.Secondary != nil {
		b = append(b, `,"secondary":`...)
		b = appendResponse(b, res.Secondary)
	}
	if res.SecondaryError != "" {
		b = append(b, `,"secondary_error":`...)
		b = jsonenc.AppendString(b, res.SecondaryError)
	}
	b = append(b, `,"freshness":{`...)
	if f := &res.Freshness; f.Target != "" {
		b = append(b, `"target":`...)
		b = jsonenc.AppendString(b, f.Target)
		b = append(b, ',')
	}
	// omitempty never omits a struct: encoding/json writes the zero time.
	b = append(b, `"watermark":`...)
	b = appendTime(b, res.Freshness.Watermark)
	b = append(b, `,"waited_ns":`...)
	b = strconv.AppendInt(b, int64(res.Freshness.Waited), 10)
	if res.Freshness.Stale {
		b = append(b, `,"stale":true`...)
	}
	b = append(b, `},"replayed_at":`...)
	b = appendTime(b, res.ReplayedAt)
	if res.Operation != "" {
		b = append(b, `,"operation":`...)
		b = jsonenc.AppendString(b, res.Operation)
	}
	if res.Skipped != "" {
		b = append(b, `,"skipped":`...)
		b = jsonenc.AppendString(b, res.Skipped)
	}
	if res.LegacyRecheck != nil {
		b = append(b, `,"legacy_recheck":`...)
		b = appendResponse(b, res.LegacyRecheck)
	}
	return append(b, '}')
}

// shadowResultSize is about the length of res's JSON: its bodies in
// base64, its strings, and a guess for the rest.
func shadowResultSize(res *ShadowResult) int {
	n := 512 + len(res.RequestID) + len(res.Service) + len(res.Route) + len(res.CubeError) + len(res.SecondaryError) +
		len(res.Operation) + len(res.Skipped) + len(res.Request.ID) + len(res.Request.Path) + len(res.Request.Query) +
		len(res.Request.UserKey) + len(res.Request.TraceParent) + 64*len(res.Request.Headers) +
		base64.StdEncoding.EncodedLen(len(res.Request.Body)) + responseSize(&res.Legacy)
	for _, r := range []*HTTPResponse{res.Cube, res.Secondary, res.LegacyRecheck} {
		if r != nil {
			n += responseSize(r)
		}
	}
	return n
}

func responseSize(r *HTTPResponse) int {
	return 64 + 64*len(r.Headers) + base64.StdEncoding.EncodedLen(len(r.Body))
}

func appendResponse(b []byte, r *HTTPResponse) []byte {
	b = append(b, `{"status":`...)
	b = strconv.AppendInt(b, int64(r.Status), 10)
	if len(r.Headers) > 0 {
		b = append(b, `,"headers":`...)
		b = appendHeader(b, r.Headers)
	}
	b = appendBody(b, r.Body, r.BodyTruncated)
	b = append(b, `,"latency_ns":`...)
	b = strconv.AppendInt(b, int64(r.Latency), 10)
	return append(b, '}')
}

func appendBody(b, body []byte, truncated bool) []byte {
	if len(body) > 0 {
		b = append(b, `,"body":"`...)
		b = base64.StdEncoding.AppendEncode(b, body)
		b = append(b, '"')
	}
	if truncated {
		b = append(b, `,"body_truncated":true`...)
	}
	return b
}

func appendTime(b []byte, t time.Time) []byte {
	b = append(b, '"')
	b = t.AppendFormat(b, time.RFC3339Nano)
	return append(b, '"')
}

func appendHeader(b []byte, h http.Header) []byte {
	b = append(b, '{')
	first := true
	for k, vs := range h {
		if !first {
			b = append(b, ',')
		}
		first = false
		b = jsonenc.AppendString(b, k)
		b = append(b, ':')
		if vs == nil {
			b = append(b, "null"...)
			continue
		}
		b = appendStringList(b, vs)
	}
	return append(b, '}')
}

// AppendChangeEvent appends the JSON of ev to b: the document encoding/json
// writes for it (TestAppendChangeEventMatchesJSON checks it) but several times
// faster, as this is the hot path of the cdc reader. Row values are written in
// column order.
func AppendChangeEvent(b []byte, ev *ChangeEvent) []byte {
	b = append(b, `{"v":`...)
	b = jsonenc.AppendString(b, ev.V)
	b = append(b, `,"slot":`...)
	b = jsonenc.AppendString(b, ev.Slot)
	b = append(b, `,"db":`...)
	b = jsonenc.AppendString(b, ev.DB)
	b = append(b, `,"schema":`...)
	b = jsonenc.AppendString(b, ev.Schema)
	b = append(b, `,"table":`...)
	b = jsonenc.AppendString(b, ev.Table)
	b = append(b, `,"op":`...)
	b = jsonenc.AppendString(b, string(ev.Op))
	b = append(b, `,"commit_lsn":"`...)
	b = appendLSN(b, ev.CommitLSN)
	b = append(b, `","tx_id":`...)
	b = strconv.AppendUint(b, uint64(ev.TxID), 10)
	b = append(b, `,"index":`...)
	b = strconv.AppendInt(b, int64(ev.Index), 10)
	b = append(b, `,"tx_size":`...)
	b = strconv.AppendInt(b, int64(ev.TxSize), 10)
	b = append(b, `,"commit_time":`...)
	b = appendTime(b, ev.CommitTime)
	if ev.PrevLSN != 0 {
		b = append(b, `,"prev_lsn":"`...)
		b = appendLSN(b, ev.PrevLSN)
		b = append(b, '"')
	}
	if len(ev.Columns) > 0 {
		b = append(b, `,"columns":[`...)
		for i, c := range ev.Columns {
			if i > 0 {
				b = append(b, ',')
			}
			b = append(b, `{"name":`...)
			b = jsonenc.AppendString(b, c.Name)
			b = append(b, `,"type":`...)
			b = jsonenc.AppendString(b, c.Type)
			if c.OID != 0 {
				b = append(b, `,"oid":`...)
				b = strconv.AppendUint(b, uint64(c.OID), 10)
			}
			if c.Key {
				b = append(b, `,"key":true`...)
			}
			b = append(b, '}')
		}
		b = append(b, ']')
	}
	if len(ev.Key) > 0 {
		b = append(b, `,"key":`...)
		b = appendStringList(b, ev.Key)
	}
	if len(ev.New) > 0 {
		b = append(b, `,"new":`...)
		b = appendRow(b, ev.New, ev.Columns)
	}
	if len(ev.Old) > 0 {
		b = append(b, `,"old":`...)
		b = appendRow(b, ev.Old, ev.Columns)
	}
	if len(ev.Unchanged) > 0 {
		b = append(b, `,"unchanged":`...)
		b = appendStringList(b, ev.Unchanged)
	}
	if t := ev.Truncate; t != nil {
		b = append(b, `,"truncate":{"tables":`...)
		if t.Tables == nil {
			b = append(b, "null"...)
		} else {
			b = appendStringList(b, t.Tables)
		}
		if t.Cascade {
			b = append(b, `,"cascade":true`...)
		}
		if t.RestartIdentity {
			b = append(b, `,"restart_identity":true`...)
		}
		b = append(b, '}')
	}
	return append(b, '}')
}

func appendLSN(b []byte, l LSN) []byte {
	b = strconv.AppendUint(b, uint64(l>>32), 16)
	b = append(b, '/')
	b = strconv.AppendUint(b, uint64(uint32(l)), 16)
	// PostgreSQL prints upper-case hex.
	for i := len(b) - 1; i >= 0 && b[i] != '"'; i-- {
		if b[i] >= 'a' && b[i] <= 'f' {
			b[i] -= 'a' - 'A'
		}
	}
	return b
}

func appendStringList(b []byte, ss []string) []byte {
	b = append(b, '[')
	for i, s := range ss {
		if i > 0 {
			b = append(b, ',')
		}
		b = jsonenc.AppendString(b, s)
	}
	return append(b, ']')
}

// appendRow writes the row's columns in column order, then any others
// sorted (none in practice).
func appendRow(b []byte, r Row, cols []Column) []byte {
	b = append(b, '{')
	n := 0
	put := func(k string, v *string) {
		if n > 0 {
			b = append(b, ',')
		}
		n++
		b = jsonenc.AppendString(b, k)
		b = append(b, ':')
		if v == nil {
			b = append(b, "null"...)
		} else {
			b = jsonenc.AppendString(b, *v)
		}
	}
	for _, c := range cols {
		if v, ok := r[c.Name]; ok {
			put(c.Name, v)
		}
	}
	if n < len(r) {
		var rest []string
		for k := range r {
			if !slices.ContainsFunc(cols, func(c Column) bool { return c.Name == k }) {
				rest = append(rest, k)
			}
		}
		slices.Sort(rest)
		for _, k := range rest {
			put(k, r[k])
		}
	}
	return append(b, '}')
}
