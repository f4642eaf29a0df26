// Package pgsession holds the PostgreSQL session settings that keep values
// exact: with them the server prints every value the same way to the cdc
// snapshot, to pgoutput, to sync's re-reads and to reconcile, so values
// compare as text (docs/cdc-notes.md, "Values"). cdc, consumers (sync) and
// reconcile apply this one copy to every connection they open.
package pgsession

import (
	"maps"
	"strings"
)

var settings = map[string]string{
	"TimeZone":           "UTC",      // timestamptz in UTC
	"DateStyle":          "ISO, YMD", // ISO output; year-month-day input
	"IntervalStyle":      "postgres",
	"bytea_output":       "hex",
	"extra_float_digits": "3", // shortest exact float text
	"client_encoding":    "UTF8",
}

// Apply sets the pinned settings in params, the RuntimeParams of a pgx or
// pgconn configuration, replacing any value the URL gave them. Setting names
// are case-insensitive to the server, so a URL's "timezone" is removed too:
// left beside "TimeZone", whichever the startup message sent last would win.
func Apply(params map[string]string) {
	for k := range params {
		for p := range settings {
			if strings.EqualFold(k, p) {
				delete(params, k)
			}
		}
	}
	maps.Copy(params, settings)
}

// Settings returns a copy of the pinned settings.
func Settings() map[string]string {
	return maps.Clone(settings)
}
