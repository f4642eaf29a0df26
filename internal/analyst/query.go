package analyst

import (
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// ParseWhen reads a window bound: a duration back from now ("90m", "24h",
// "7d") or a time ("2026-11-30T09:00:00Z", "2026-11-30T09:00",
// "2026-11-30"; UTC when no zone is given). Empty is the zero time.
func ParseWhen(s string, now time.Time) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	if d, ok := strings.CutSuffix(s, "d"); ok {
		if n, err := strconv.Atoi(d); err == nil && n >= 0 {
			return now.Add(-time.Duration(n) * 24 * time.Hour), nil
		}
	}
	if d, err := time.ParseDuration(s); err == nil {
		if d < 0 {
			return time.Time{}, fmt.Errorf("%s: want a positive duration back from now", s)
		}
		return now.Add(-d), nil
	}
	for _, layout := range []string{time.RFC3339, "2006-01-02T15:04", "2006-01-02"} {
		if t, err := time.Parse(layout, s); err == nil {
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf("%q: want a duration back from now (24h, 7d) or a time (2026-11-30T09:00:00Z, 2026-11-30)", s)
}

// QueryParams are the URL parameters of a Query, in order.
var QueryParams = []string{"since", "until", "service", "route", "cause", "signature", "verdict"}

// ParseQuery reads a Query from URL parameters (QueryParams; since and
// until as ParseWhen reads them), so a filtered view can be shared as a
// link. Errors name the parameter.
func ParseQuery(v url.Values, now time.Time) (Query, error) {
	var q Query
	var err error
	if q.Since, err = ParseWhen(v.Get("since"), now); err != nil {
		return q, fmt.Errorf("since %w", err)
	}
	if q.Until, err = ParseWhen(v.Get("until"), now); err != nil {
		return q, fmt.Errorf("until %w", err)
	}
	if !q.Since.IsZero() && !q.Until.IsZero() && !q.Since.Before(q.Until) {
		return q, fmt.Errorf("since %s is not before until %s", v.Get("since"), v.Get("until"))
	}
	q.Service, q.Route, q.Cause, q.Signature, q.Verdict = v.Get("service"), v.Get("route"), v.Get("cause"), v.Get("signature"), v.Get("verdict")
	switch q.Verdict {
	case "", "match", "mismatch", "noise", "error", "moved-on", "skipped":
	default:
		return q, fmt.Errorf("verdict %q: want match, mismatch, noise, error, moved-on or skipped", q.Verdict)
	}
	return q, nil
}

// Values encodes q as URL parameters (times as RFC 3339, empty fields
// left out); ParseQuery reads them back.
func (q Query) Values() url.Values {
	v := url.Values{}
	set := func(k, s string) {
		if s != "" {
			v.Set(k, s)
		}
	}
	if !q.Since.IsZero() {
		set("since", q.Since.UTC().Format(time.RFC3339))
	}
	if !q.Until.IsZero() {
		set("until", q.Until.UTC().Format(time.RFC3339))
	}
	set("service", q.Service)
	set("route", q.Route)
	set("cause", q.Cause)
	set("signature", q.Signature)
	set("verdict", q.Verdict)
	return v
}
