package publisher

import (
	"encoding/base64"
	"net/http"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/heal7/shadowcube/schemas"
)

// appendEvent appends the JSON of ev, exactly the document encoding/json
// writes for schemas.RequestEvent up to key order (headers are not sorted),
// without reflection: the capture path encodes every request, and this is a
// few times cheaper. TestEncodeMatchesEncodingJSON keeps the two in step and
// fails when RequestEvent gains a field.
func appendEvent(b []byte, ev *schemas.RequestEvent) []byte {
	b = append(b, `{"v":`...)
	b = appendString(b, ev.V)
	b = append(b, `,"id":`...)
	b = appendString(b, ev.ID)
	b = append(b, `,"service":`...)
	b = appendString(b, ev.Service)
	b = append(b, `,"route":`...)
	b = appendString(b, ev.Route)
	b = append(b, `,"method":`...)
	b = appendString(b, ev.Method)
	b = append(b, `,"path":`...)
	b = appendString(b, ev.Path)
	if ev.Query != "" {
		b = append(b, `,"query":`...)
		b = appendString(b, ev.Query)
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
		b = appendString(b, ev.UserKey)
	}
	if ev.TraceParent != "" {
		b = append(b, `,"traceparent":`...)
		b = appendString(b, ev.TraceParent)
	}
	b = append(b, `,"captured_at":"`...)
	b = ev.CapturedAt.AppendFormat(b, time.RFC3339Nano)
	b = append(b, `","source":`...)
	b = appendString(b, string(ev.Source))
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
		b = appendString(b, k)
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
			b = appendString(b, v)
		}
		b = append(b, ']')
	}
	return append(b, '}')
}

// appendString writes s as a JSON string; invalid UTF-8 becomes U+FFFD as
// encoding/json does.
func appendString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hex[r&0xF])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
