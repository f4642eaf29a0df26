package schemas

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Stream names of the pipeline (see docs/architecture.md, "Streams, subjects, delivery").
const (
	StreamLegacyRequests = "LEGACY_REQUESTS"
	StreamCDC            = "CDC"
	StreamShadowResults  = "SHADOW_RESULTS"
	StreamDLQ            = "DLQ"
)

// Subject prefixes, one per stream.
const (
	PrefixLegacyRequest = "legacy.req"
	PrefixCDC           = "cdc"
	PrefixShadowResult  = "shadow.result"
	PrefixDLQ           = "dlq"
)

// EscapeToken turns any string into one valid NATS subject token, reversibly.
// Letters, digits, '-' and '_' stay as they are; every other byte (including
// '.', '*', '>', whitespace and '~') becomes "~HH" in upper-case hex; the empty
// string becomes "~".
func EscapeToken(s string) string {
	if s == "" {
		return "~"
	}
	clean := true
	for i := 0; i < len(s); i++ {
		if !plainByte(s[i]) {
			clean = false
			break
		}
	}
	if clean {
		return s
	}
	var b strings.Builder
	b.Grow(len(s) + 8)
	const hex = "0123456789ABCDEF"
	for i := 0; i < len(s); i++ {
		c := s[i]
		if plainByte(c) {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('~')
		b.WriteByte(hex[c>>4])
		b.WriteByte(hex[c&0xF])
	}
	return b.String()
}

// UnescapeToken reverses EscapeToken.
func UnescapeToken(tok string) (string, error) {
	if tok == "~" {
		return "", nil
	}
	if tok == "" {
		return "", fmt.Errorf("unescape subject token: empty token")
	}
	if !strings.Contains(tok, "~") {
		for i := 0; i < len(tok); i++ {
			if !plainByte(tok[i]) {
				return "", fmt.Errorf("unescape subject token %q: byte %q must be escaped", tok, tok[i])
			}
		}
		return tok, nil
	}
	var b strings.Builder
	for i := 0; i < len(tok); i++ {
		c := tok[i]
		switch {
		case c == '~':
			if i+2 >= len(tok) {
				return "", fmt.Errorf("unescape subject token %q: truncated escape at byte %d", tok, i)
			}
			hi, ok1 := unhex(tok[i+1])
			lo, ok2 := unhex(tok[i+2])
			if !ok1 || !ok2 {
				return "", fmt.Errorf("unescape subject token %q: bad escape at byte %d", tok, i)
			}
			v := hi<<4 | lo
			if plainByte(v) {
				return "", fmt.Errorf("unescape subject token %q: byte %q must not be escaped", tok, v)
			}
			b.WriteByte(v)
			i += 2
		case plainByte(c):
			b.WriteByte(c)
		default:
			return "", fmt.Errorf("unescape subject token %q: byte %q must be escaped", tok, c)
		}
	}
	return b.String(), nil
}

func plainByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_'
}

func unhex(c byte) (byte, bool) {
	switch {
	case c >= '0' && c <= '9':
		return c - '0', true
	case c >= 'A' && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

// EscapeRoute turns a route template such as "/api/saju/chart/{id}" into
// subject tokens, one per path segment: "api.saju.chart.~7Bid~7D". Routes are
// absolute paths; a route without a leading '/' is treated as if it had one.
func EscapeRoute(route string) string {
	segs := strings.Split(strings.TrimPrefix(route, "/"), "/")
	for i, s := range segs {
		segs[i] = EscapeToken(s)
	}
	return strings.Join(segs, ".")
}

// UnescapeRoute reverses EscapeRoute for the given tokens.
func UnescapeRoute(tokens []string) (string, error) {
	if len(tokens) == 0 {
		return "", fmt.Errorf("unescape route: no tokens")
	}
	var b strings.Builder
	for _, t := range tokens {
		s, err := UnescapeToken(t)
		if err != nil {
			return "", fmt.Errorf("unescape route: %w", err)
		}
		b.WriteByte('/')
		b.WriteString(s)
	}
	return b.String(), nil
}

// RequestSubject is the subject of a captured request: legacy.req.<service>.<route...>.
func RequestSubject(service, route string) string {
	return PrefixLegacyRequest + "." + EscapeToken(service) + "." + EscapeRoute(route)
}

// ShadowResultSubject is the subject of a replay result: shadow.result.<service>.<route...>.
func ShadowResultSubject(service, route string) string {
	return PrefixShadowResult + "." + EscapeToken(service) + "." + EscapeRoute(route)
}

// ChangeSubject is the subject of a database change: cdc.<db>.<schema>.<table>.
func ChangeSubject(db, schema, table string) string {
	return PrefixCDC + "." + EscapeToken(db) + "." + EscapeToken(schema) + "." + EscapeToken(table)
}

// DLQSubject is the dead-letter subject of a stage: dlq.<stage>.
func DLQSubject(stage string) string {
	return PrefixDLQ + "." + EscapeToken(stage)
}

// ParseRequestSubject returns the service and route of a RequestSubject.
func ParseRequestSubject(subject string) (service, route string, err error) {
	return parseServiceRoute(PrefixLegacyRequest, subject)
}

// ParseShadowResultSubject returns the service and route of a ShadowResultSubject.
func ParseShadowResultSubject(subject string) (service, route string, err error) {
	return parseServiceRoute(PrefixShadowResult, subject)
}

func parseServiceRoute(prefix, subject string) (service, route string, err error) {
	rest, ok := strings.CutPrefix(subject, prefix+".")
	if !ok {
		return "", "", fmt.Errorf("parse subject %q: want prefix %q", subject, prefix+".")
	}
	toks := strings.Split(rest, ".")
	if len(toks) < 2 {
		return "", "", fmt.Errorf("parse subject %q: want %s.<service>.<route>", subject, prefix)
	}
	if service, err = UnescapeToken(toks[0]); err != nil {
		return "", "", fmt.Errorf("parse subject %q: service: %w", subject, err)
	}
	if route, err = UnescapeRoute(toks[1:]); err != nil {
		return "", "", fmt.Errorf("parse subject %q: %w", subject, err)
	}
	return service, route, nil
}

// ParseChangeSubject returns db, schema and table of a ChangeSubject.
func ParseChangeSubject(subject string) (db, schema, table string, err error) {
	toks := strings.Split(subject, ".")
	if len(toks) != 4 || toks[0] != PrefixCDC {
		return "", "", "", fmt.Errorf("parse subject %q: want cdc.<db>.<schema>.<table>", subject)
	}
	parts := make([]string, 3)
	for i, t := range toks[1:] {
		if parts[i], err = UnescapeToken(t); err != nil {
			return "", "", "", fmt.Errorf("parse subject %q: %w", subject, err)
		}
	}
	return parts[0], parts[1], parts[2], nil
}

// WindowResultMsgID is the Nats-Msg-Id of a window replay's result:
// "<request id>@<replay time in Unix nanoseconds>", so a window replay is
// a new result, never de-duplicated against the live replay's (whose
// Nats-Msg-Id is the request id).
func WindowResultMsgID(requestID string, replayedAt time.Time) string {
	return requestID + "@" + strconv.FormatInt(replayedAt.UnixNano(), 10)
}

// IsWindowResultMsgID reports whether msgID is a WindowResultMsgID of requestID.
func IsWindowResultMsgID(requestID, msgID string) bool {
	rest, ok := strings.CutPrefix(msgID, requestID)
	if !ok || len(rest) < 2 || rest[0] != '@' {
		return false
	}
	_, err := strconv.ParseInt(rest[1:], 10, 64)
	return err == nil
}
