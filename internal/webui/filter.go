package webui

import (
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Filter is a view's selection, carried in the URL query so a view can be
// shared as a link: since, until, service, route, cause, signature,
// verdict, refresh.
type Filter struct {
	Since, Until time.Time // zero: unbounded
	// SinceRaw and UntilRaw are the values as given (a time or a duration
	// back from now, like 24h), echoed in links so "the last 24h" stays
	// relative when shared.
	SinceRaw, UntilRaw string
	Service, Route     string
	Cause, Signature   string
	Verdict            string
	Refresh            int // seconds; 0 off; -1 the server's default
}

var timeLayouts = []string{time.RFC3339, "2006-01-02T15:04:05", "2006-01-02T15:04", "2006-01-02 15:04", "2006-01-02"}

// parseTime reads a point in time: RFC 3339, a date, a datetime-local
// value (UTC), or a duration back from now ("24h", "7d").
func parseTime(v string, now time.Time) (time.Time, error) {
	v = strings.TrimSpace(v)
	if v == "" {
		return time.Time{}, nil
	}
	if d, ok := strings.CutSuffix(v, "d"); ok {
		if n, err := strconv.Atoi(d); err == nil && n >= 0 {
			return now.Add(-time.Duration(n) * 24 * time.Hour), nil
		}
	}
	if d, err := time.ParseDuration(strings.TrimPrefix(v, "-")); err == nil && d >= 0 {
		return now.Add(-d), nil
	}
	for _, l := range timeLayouts {
		if t, err := time.ParseInLocation(l, v, time.UTC); err == nil {
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf("%q: want a time (2026-11-30T10:00:00Z, 2026-11-30) or a duration back from now (24h, 7d)", v)
}

// parseFilter reads a filter from a URL query; an error names the bad
// parameter.
func parseFilter(q url.Values, now time.Time) (Filter, error) {
	f := Filter{
		SinceRaw: strings.TrimSpace(q.Get("since")), UntilRaw: strings.TrimSpace(q.Get("until")),
		Service: strings.TrimSpace(q.Get("service")), Route: strings.TrimSpace(q.Get("route")),
		Cause: strings.TrimSpace(q.Get("cause")), Signature: q.Get("signature"),
		Verdict: strings.TrimSpace(q.Get("verdict")), Refresh: -1,
	}
	var err error
	if f.Since, err = parseTime(f.SinceRaw, now); err != nil {
		return f, fmt.Errorf("since: %w", err)
	}
	if f.Until, err = parseTime(f.UntilRaw, now); err != nil {
		return f, fmt.Errorf("until: %w", err)
	}
	if !f.Since.IsZero() && !f.Until.IsZero() && !f.Until.After(f.Since) {
		return f, fmt.Errorf("until %s is not after since %s", f.UntilRaw, f.SinceRaw)
	}
	if r := strings.TrimSpace(q.Get("refresh")); r != "" {
		n, err := strconv.Atoi(r)
		if err != nil || n < 0 || n > 86400 {
			return f, fmt.Errorf("refresh %q: want seconds between 0 (off) and 86400", r)
		}
		f.Refresh = n
	}
	switch f.Verdict {
	case "", "match", "mismatch", "noise", "error", "skipped", "moved-on", "accepted", "open":
	default:
		return f, fmt.Errorf("verdict %q: want match, mismatch, noise, error, skipped, moved-on, accepted or open", f.Verdict)
	}
	return f, nil
}

// Values is the filter as a URL query (only what is set).
func (f Filter) Values() url.Values {
	v := url.Values{}
	set := func(k, x string) {
		if x != "" {
			v.Set(k, x)
		}
	}
	set("since", f.SinceRaw)
	set("until", f.UntilRaw)
	set("service", f.Service)
	set("route", f.Route)
	set("cause", f.Cause)
	set("signature", f.Signature)
	set("verdict", f.Verdict)
	if f.Refresh >= 0 {
		v.Set("refresh", strconv.Itoa(f.Refresh))
	}
	return v
}

// With returns the filter's URL to path with some parameters replaced
// (pairs of name, value; an empty value drops the parameter).
func (f Filter) With(path string, kv ...string) string {
	v := f.Values()
	for i := 0; i+1 < len(kv); i += 2 {
		if kv[i+1] == "" {
			v.Del(kv[i])
		} else {
			v.Set(kv[i], kv[i+1])
		}
	}
	if len(v) == 0 {
		return path
	}
	return path + "?" + v.Encode()
}
