package schemas

import (
	"encoding/base64"
	"net/http"
	"strconv"
	"time"

	"github.com/heal7/shadowcube/internal/jsonenc"
)

// The append functions below write the same JSON document encoding/json
// writes for the event, up to key order inside header maps (not sorted),
// without reflection: the capture and replay paths encode every request, and
// this is a few times cheaper. TestAppendMatchesEncodingJSON keeps them in
// step with encoding/json and fails when an event gains a field.

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
		b = append(b, '[')
		for i, v := range vs {
			if i > 0 {
				b = append(b, ',')
			}
			b = jsonenc.AppendString(b, v)
		}
		b = append(b, ']')
	}
	return append(b, '}')
}
