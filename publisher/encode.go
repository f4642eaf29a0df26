package publisher

import (
	"encoding/base64"
	"net/http"
	"strconv"
	"time"

	"github.com/heal7/shadowcube/internal/jsonenc"
	"github.com/heal7/shadowcube/schemas"
)

// appendEvent appends the JSON of ev, exactly the document encoding/json
// writes for schemas.RequestEvent up to key order (headers are not sorted),
// without reflection: the capture path encodes every request, and this is a
// few times cheaper. TestEncodeMatchesEncodingJSON keeps the two in step and
// fails when RequestEvent gains a field.
func appendEvent(b []byte, ev *schemas.RequestEvent) []byte {
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
	if len(ev.Body) > 0 {
		b = append(b, `,"body":"`...)
		b = base64.StdEncoding.AppendEncode(b, ev.Body)
		b = append(b, '"')
	}
	if ev.BodyTruncated {
		b = append(b, `,"body_truncated":true`...)
	}
	if ev.UserKey != "" {
		b = append(b, `,"user_key":`...)
		b = jsonenc.AppendString(b, ev.UserKey)
	}
	if ev.TraceParent != "" {
		b = append(b, `,"traceparent":`...)
		b = jsonenc.AppendString(b, ev.TraceParent)
	}
	b = append(b, `,"captured_at":"`...)
	b = ev.CapturedAt.AppendFormat(b, time.RFC3339Nano)
	b = append(b, `","source":`...)
	b = jsonenc.AppendString(b, string(ev.Source))
	b = append(b, `,"response":{"status":`...)
	b = strconv.AppendInt(b, int64(ev.Response.Status), 10)
	if len(ev.Response.Headers) > 0 {
		b = append(b, `,"headers":`...)
		b = appendHeader(b, ev.Response.Headers)
	}
	if len(ev.Response.Body) > 0 {
		b = append(b, `,"body":"`...)
		b = base64.StdEncoding.AppendEncode(b, ev.Response.Body)
		b = append(b, '"')
	}
	if ev.Response.BodyTruncated {
		b = append(b, `,"body_truncated":true`...)
	}
	b = append(b, `,"latency_ns":`...)
	b = strconv.AppendInt(b, int64(ev.Response.Latency), 10)
	return append(b, "}}"...)
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
