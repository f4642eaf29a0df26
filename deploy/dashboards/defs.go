package dashboards

const (
	rate5m   = "[5m]"
	matched  = `verdict=~"match|noise|moved-on"`
	breakers = "0 closed, 1 half-open, 2 open"
)

var breakerMap = map[string]string{"0": "closed", "1": "half-open", "2": "open"}
var upMap = map[string]string{"0": "down", "1": "up"}

// matchRate is the share of judged pairs that matched, per service and route.
const matchRate = `sum by (service, route) (rate(shadowcube_compare_compared_total{` + matched + `}` + rate5m + `))
/ sum by (service, route) (rate(shadowcube_compare_compared_total{verdict!="error"}` + rate5m + `))`

func quantile(q, metric, by string) string {
	return "histogram_quantile(" + q + ", sum by (le, " + by + ") (rate(" + metric + "_bucket" + rate5m + ")))"
}

// All returns every dashboard: the overview first, then one per stage.
func All() []Dashboard {
	return []Dashboard{overview(), tap(), cdc(), syncStage(), shadow(), compare()}
}

func overview() Dashboard {
	return Dashboard{UID: "shadowcube-overview", Title: "shadowcube / pipeline overview", File: "overview.json", Rows: []Row{
		{Title: "Capture (tap)", Panels: []Panel{
			{Title: "Capture up (min over taps)", Stat: true, Width: 6, Mappings: upMap,
				Queries: []Query{{Expr: "min(shadowcube_tap_capture_up)"}}},
			{Title: "Capture drop ratio", Stat: true, Width: 6, Unit: "percentunit",
				Queries: []Query{{Expr: "sum(rate(shadowcube_tap_dropped_total[5m])) / sum(rate(shadowcube_tap_requests_total[5m]))"}}},
			{Title: "DLQ depth (dlq.sync)", Stat: true, Width: 6, Unit: "short",
				Queries: []Query{{Expr: "max(shadowcube_sync_dlq_depth)"}}},
			{Title: "AI rollback flags raised", Stat: true, Width: 6, Unit: "short",
				Queries: []Query{{Expr: "sum(shadowcube_compare_ai_rollback_flag) or vector(0)"}}},
			{Title: "Capture rate", Unit: "reqps", Queries: []Query{
				{Expr: "sum(rate(shadowcube_tap_captured_total[5m]))", Legend: "captured"},
				{Expr: "sum(rate(shadowcube_tap_published_total[5m]))", Legend: "published"}}},
			{Title: "Capture drops by reason", Unit: "reqps", Queries: []Query{
				{Expr: "sum by (reason) (rate(shadowcube_tap_dropped_total[5m]))", Legend: "{{reason}}"}}},
		}},
		{Title: "CDC and sync", Panels: []Panel{
			{Title: "CDC lag", Unit: "s", Width: 8, Queries: []Query{
				{Expr: "max by (instance) (shadowcube_cdc_lag_seconds)", Legend: "{{instance}}"}}},
			{Title: "CDC retained WAL", Unit: "bytes", Width: 8, Queries: []Query{
				{Expr: "max by (instance) (shadowcube_cdc_slot_retained_wal_bytes)", Legend: "retained {{instance}}"},
				{Expr: "max by (instance) (shadowcube_cdc_lag_bytes)", Legend: "unacknowledged {{instance}}"}}},
			{Title: "Sync lag by target", Unit: "s", Width: 8, Queries: []Query{
				{Expr: "max by (target) (shadowcube_sync_lag_seconds)", Legend: "{{target}}"}}},
			{Title: "Sync applied changes", Unit: "ops", Queries: []Query{
				{Expr: "sum by (target) (rate(shadowcube_sync_applied_changes_total[5m]))", Legend: "{{target}}"}}},
			{Title: "Dead letters", Unit: "short", Queries: []Query{
				{Expr: "max(shadowcube_sync_dlq_depth)", Legend: "dlq.sync depth"},
				{Expr: "sum by (target) (increase(shadowcube_sync_dlq_total[1h]))", Legend: "sync → DLQ {{target}} (1h)"},
				{Expr: `sum(increase(shadowcube_shadow_replays_total{outcome="dead-letter"}[1h]))`, Legend: "shadow → DLQ (1h)"},
				{Expr: "sum(increase(shadowcube_compare_dead_letters_total[1h]))", Legend: "compare → DLQ (1h)"}}},
		}},
		{Title: "Shadow replay", Panels: []Panel{
			{Title: "Replays by outcome", Unit: "reqps", Queries: []Query{
				{Expr: "sum by (outcome) (rate(shadowcube_shadow_replays_total[5m]))", Legend: "{{outcome}}"}}},
			{Title: "Latency p95: legacy vs cube", Unit: "s", Queries: []Query{
				{Expr: quantile("0.95", "shadowcube_shadow_replay_seconds", "side"), Legend: "p95 {{side}}"},
				{Expr: quantile("0.5", "shadowcube_shadow_replay_seconds", "side"), Legend: "p50 {{side}}"}}},
			{Title: "Circuit breakers (" + breakers + ")", Unit: "short", Mappings: breakerMap, Queries: []Query{
				{Expr: "max by (target) (shadowcube_shadow_breaker_state)", Legend: "{{target}}"}}},
		}},
		{Title: "Comparison", Panels: []Panel{
			{Title: "Match rate per route", Unit: "percentunit", Queries: []Query{
				{Expr: matchRate, Legend: "{{service}} {{route}}"}}},
			{Title: "Mismatches by cause", Unit: "reqps", Queries: []Query{
				{Expr: "sum by (cause) (rate(shadowcube_compare_mismatches_total[5m]))", Legend: "{{cause}}"}}},
			{Title: "AI accuracy: legacy vs cube", Unit: "percentunit", Queries: []Query{
				{Expr: "shadowcube_compare_ai_accuracy_ratio", Legend: "{{service}} {{route}} {{side}}"}}},
		}},
	}}
}

func tap() Dashboard {
	return Dashboard{UID: "shadowcube-tap", Title: "shadowcube / tap (capture)", File: "tap.json", Rows: []Row{
		{Title: "Traffic", Panels: []Panel{
			{Title: "Capture up", Unit: "short", Mappings: upMap, Queries: []Query{
				{Expr: "shadowcube_tap_capture_up", Legend: "{{instance}}"}}},
			{Title: "Requests by route and target", Unit: "reqps", Queries: []Query{
				{Expr: "sum by (route, target) (rate(shadowcube_tap_requests_total[5m]))", Legend: "{{route}} → {{target}}"}}},
			{Title: "Upstream latency p95", Unit: "s", Queries: []Query{
				{Expr: quantile("0.95", "shadowcube_tap_upstream_seconds", "route, target"), Legend: "{{route}} {{target}}"}}},
			{Title: "Cube fallbacks to legacy", Unit: "reqps", Queries: []Query{
				{Expr: "sum by (instance) (rate(shadowcube_tap_cube_fallback_total[5m]))", Legend: "{{instance}}"}}},
		}},
		{Title: "Capture", Panels: []Panel{
			{Title: "Captured by route", Unit: "reqps", Queries: []Query{
				{Expr: "sum by (route) (rate(shadowcube_tap_captured_total[5m]))", Legend: "{{route}}"}}},
			{Title: "Captured bytes", Unit: "Bps", Queries: []Query{
				{Expr: "sum by (route) (rate(shadowcube_tap_captured_bytes_total[5m]))", Legend: "{{route}}"}}},
			{Title: "Drops by reason", Unit: "reqps", Queries: []Query{
				{Expr: "sum by (reason) (rate(shadowcube_tap_dropped_total[5m]))", Legend: "{{reason}}"},
				{Expr: "sum(rate(shadowcube_tap_bodies_dropped_total[5m]))", Legend: "bodies removed (redaction)"}}},
			{Title: "Publish queue and NATS", Unit: "short", Queries: []Query{
				{Expr: "shadowcube_tap_queue_depth", Legend: "queue {{instance}}"},
				{Expr: "rate(shadowcube_tap_nats_connect_failures_total[5m])", Legend: "connect failures/s {{instance}}"}}},
			{Title: "Publish to ack p95", Unit: "s", Queries: []Query{
				{Expr: quantile("0.95", "shadowcube_tap_publish_seconds", "instance"), Legend: "{{instance}}"}}},
			{Title: "Published", Unit: "reqps", Queries: []Query{
				{Expr: "sum by (instance) (rate(shadowcube_tap_published_total[5m]))", Legend: "{{instance}}"}}},
		}},
	}}
}

func cdc() Dashboard {
	return Dashboard{UID: "shadowcube-cdc", Title: "shadowcube / cdc", File: "cdc.json", Rows: []Row{
		{Title: "Slot", Panels: []Panel{
			{Title: "Lag (age of last acknowledged commit)", Unit: "s", Queries: []Query{
				{Expr: "shadowcube_cdc_lag_seconds", Legend: "{{instance}}"}}},
			{Title: "WAL retained and unacknowledged", Unit: "bytes", Queries: []Query{
				{Expr: "shadowcube_cdc_slot_retained_wal_bytes", Legend: "retained {{instance}}"},
				{Expr: "shadowcube_cdc_lag_bytes", Legend: "unacknowledged {{instance}}"}}},
			{Title: "Sessions", Unit: "short", Queries: []Query{
				{Expr: "increase(shadowcube_cdc_sessions_total[1h])", Legend: "started (1h) {{instance}}"},
				{Expr: "increase(shadowcube_cdc_session_failures_total[1h])", Legend: "failed (1h) {{instance}}"},
				{Expr: "increase(shadowcube_nats_reconnects_total[1h])", Legend: "NATS reconnects (1h) {{instance}}"}}},
			{Title: "Snapshot progress", Unit: "short", Queries: []Query{
				{Expr: "shadowcube_cdc_snapshot_tables_done", Legend: "done {{instance}}"},
				{Expr: "shadowcube_cdc_snapshot_tables", Legend: "tables {{instance}}"}}},
		}},
		{Title: "Publishing", Panels: []Panel{
			{Title: "Events by op", Unit: "ops", Queries: []Query{
				{Expr: "sum by (op) (rate(shadowcube_cdc_events_total[5m]))", Legend: "{{op}}"}}},
			{Title: "Transactions", Unit: "ops", Queries: []Query{
				{Expr: "sum(rate(shadowcube_cdc_transactions_total[5m]))", Legend: "published"},
				{Expr: "sum(rate(shadowcube_cdc_skipped_transactions_total[5m]))", Legend: "skipped (ignored origin)"},
				{Expr: "sum(rate(shadowcube_cdc_spilled_transactions_total[5m]))", Legend: "spilled to disk"}}},
			{Title: "Publish to ack p95", Unit: "s", Queries: []Query{
				{Expr: quantile("0.95", "shadowcube_cdc_publish_seconds", "instance"), Legend: "{{instance}}"}}},
			{Title: "Bytes and in-flight", Unit: "short", Queries: []Query{
				{Expr: "rate(shadowcube_cdc_published_bytes_total[5m])", Legend: "bytes/s {{instance}}"},
				{Expr: "shadowcube_cdc_inflight_events", Legend: "in flight {{instance}}"},
				{Expr: "increase(shadowcube_cdc_publish_gaps_total[1h])", Legend: "publish gaps (1h) {{instance}}"}}},
		}},
	}}
}

func syncStage() Dashboard {
	return Dashboard{UID: "shadowcube-sync", Title: "shadowcube / sync", File: "sync.json", Rows: []Row{
		{Title: "Freshness", Panels: []Panel{
			{Title: "Lag by target", Unit: "s", Queries: []Query{
				{Expr: "max by (target) (shadowcube_sync_lag_seconds)", Legend: "{{target}}"}}},
			{Title: "Stopped at a poison transaction", Unit: "short", Queries: []Query{
				{Expr: "max by (target) (shadowcube_sync_stopped)", Legend: "{{target}}"}}},
		}},
		{Title: "Applying", Panels: []Panel{
			{Title: "Applied changes and transactions", Unit: "ops", Queries: []Query{
				{Expr: "sum by (target) (rate(shadowcube_sync_applied_changes_total[5m]))", Legend: "changes {{target}}"},
				{Expr: "sum by (target) (rate(shadowcube_sync_applied_transactions_total[5m]))", Legend: "transactions {{target}}"}}},
			{Title: "Batch commit time p95", Unit: "s", Queries: []Query{
				{Expr: quantile("0.95", "shadowcube_sync_batch_seconds", "target"), Legend: "{{target}}"}}},
			{Title: "Events per batch (mean)", Unit: "short", Queries: []Query{
				{Expr: "sum by (target) (rate(shadowcube_sync_batch_events_sum[5m])) / sum by (target) (rate(shadowcube_sync_batch_events_count[5m]))", Legend: "{{target}}"}}},
			{Title: "Retries, duplicates, re-selected rows", Unit: "ops", Queries: []Query{
				{Expr: "sum by (target) (rate(shadowcube_sync_retries_total[5m]))", Legend: "retries {{target}}"},
				{Expr: "sum by (target) (rate(shadowcube_sync_duplicates_skipped_total[5m]))", Legend: "duplicates skipped {{target}}"},
				{Expr: "sum by (target) (rate(shadowcube_sync_reselected_rows_total[5m]))", Legend: "re-selected {{target}}"}}},
		}},
		{Title: "Dead letters", Panels: []Panel{
			{Title: "dlq.sync depth", Unit: "short", Queries: []Query{
				{Expr: "max(shadowcube_sync_dlq_depth)", Legend: "depth"}}},
			{Title: "Sent to the DLQ", Unit: "short", Queries: []Query{
				{Expr: "sum by (target) (increase(shadowcube_sync_dlq_total[1h]))", Legend: "{{target}} (1h)"}}},
		}},
	}}
}

func shadow() Dashboard {
	return Dashboard{UID: "shadowcube-shadow", Title: "shadowcube / shadow (replay)", File: "shadow.json", Rows: []Row{
		{Title: "Replays", Panels: []Panel{
			{Title: "Replays by outcome", Unit: "reqps", Queries: []Query{
				{Expr: "sum by (outcome) (rate(shadowcube_shadow_replays_total[5m]))", Legend: "{{outcome}}"}}},
			{Title: "Not replayed, by reason", Unit: "reqps", Queries: []Query{
				{Expr: "sum by (reason) (rate(shadowcube_shadow_skipped_total[5m]))", Legend: "{{reason}}"}}},
			{Title: "Latency p95 by route: legacy vs cube", Unit: "s", Queries: []Query{
				{Expr: quantile("0.95", "shadowcube_shadow_replay_seconds", "service, route, side"), Legend: "{{service}} {{route}} {{side}}"}}},
			{Title: "Legacy re-checks", Unit: "reqps", Queries: []Query{
				{Expr: "sum by (outcome) (rate(shadowcube_shadow_legacy_rechecks_total[5m]))", Legend: "{{outcome}}"}}},
		}},
		{Title: "Cube health and freshness", Panels: []Panel{
			{Title: "Circuit breakers (" + breakers + ")", Unit: "short", Mappings: breakerMap, Queries: []Query{
				{Expr: "max by (target) (shadowcube_shadow_breaker_state)", Legend: "{{target}}"}}},
			{Title: "Breaker transitions", Unit: "short", Queries: []Query{
				{Expr: "sum by (target, state) (increase(shadowcube_shadow_breaker_transitions_total[1h]))", Legend: "{{target}} → {{state}} (1h)"}}},
			{Title: "Freshness wait p95", Unit: "s", Queries: []Query{
				{Expr: quantile("0.95", "shadowcube_shadow_freshness_wait_seconds", "service"), Legend: "{{service}}"}}},
			{Title: "Waiting, in flight, stale", Unit: "short", Queries: []Query{
				{Expr: "sum by (service) (shadowcube_shadow_freshness_waiting)", Legend: "waiting {{service}}"},
				{Expr: "sum(shadowcube_shadow_in_flight)", Legend: "in flight"},
				{Expr: "sum by (service) (rate(shadowcube_shadow_stale_cube_total[5m]))", Legend: "stale/s {{service}}"},
				{Expr: "sum(rate(shadowcube_shadow_publish_failures_total[5m]))", Legend: "publish failures/s"}}},
		}},
	}}
}

func compare() Dashboard {
	return Dashboard{UID: "shadowcube-compare", Title: "shadowcube / compare", File: "compare.json", Rows: []Row{
		{Title: "Verdicts", Panels: []Panel{
			{Title: "Match rate per route", Unit: "percentunit", Queries: []Query{
				{Expr: matchRate, Legend: "{{service}} {{route}}"}}},
			{Title: "Match ratio since start", Unit: "percentunit", Queries: []Query{
				{Expr: "shadowcube_compare_match_ratio", Legend: "{{service}} {{route}}"}}},
			{Title: "Pairs by verdict", Unit: "reqps", Queries: []Query{
				{Expr: "sum by (verdict) (rate(shadowcube_compare_compared_total[5m]))", Legend: "{{verdict}}"}}},
			{Title: "Not compared (skipped by shadow)", Unit: "reqps", Queries: []Query{
				{Expr: "sum by (reason) (rate(shadowcube_compare_skipped_total[5m]))", Legend: "{{reason}}"}}},
		}},
		{Title: "Mismatches", Panels: []Panel{
			{Title: "Mismatches by cause", Unit: "reqps", Queries: []Query{
				{Expr: "sum by (cause) (rate(shadowcube_compare_mismatches_total[5m]))", Legend: "{{cause}}"}}},
			{Title: "Unexplained mismatches by route", Unit: "reqps", Queries: []Query{
				{Expr: `sum by (service, route) (rate(shadowcube_compare_mismatches_total{cause="unexplained"}[5m]))`, Legend: "{{service}} {{route}}"}}},
			{Title: "Top signatures (1h)", Unit: "short", Queries: []Query{
				{Expr: "topk(10, sum by (signature, accepted) (increase(shadowcube_compare_signature_mismatches_total[1h])))", Legend: "{{signature}} accepted={{accepted}}"}}},
			{Title: "Accepted mismatches and noise", Unit: "reqps", Queries: []Query{
				{Expr: "sum by (route) (rate(shadowcube_compare_accepted_total[5m]))", Legend: "accepted {{route}}"},
				{Expr: "sum by (route) (rate(shadowcube_compare_noise_suppressed_total[5m]))", Legend: "noise-only pairs {{route}}"},
				{Expr: "sum by (route) (rate(shadowcube_compare_noise_suppressed_diffs_total[5m]))", Legend: "noise diffs {{route}}"}}},
		}},
		{Title: "Cube answers", Panels: []Panel{
			{Title: "Latency p95: legacy vs cube", Unit: "s", Queries: []Query{
				{Expr: quantile("0.95", "shadowcube_compare_replay_latency_seconds", "route, side"), Legend: "{{route}} {{side}}"}}},
			{Title: "Cube errors and stale pairs", Unit: "reqps", Queries: []Query{
				{Expr: "sum by (kind) (rate(shadowcube_compare_cube_errors_total[5m]))", Legend: "{{kind}}"},
				{Expr: "sum(rate(shadowcube_compare_stale_cube_total[5m]))", Legend: "stale"},
				{Expr: "sum by (reason) (rate(shadowcube_compare_dead_letters_total[5m]))", Legend: "dead letter {{reason}}"}}},
		}},
		{Title: "AI", Panels: []Panel{
			{Title: "Accuracy against truth labels", Unit: "percentunit", Queries: []Query{
				{Expr: "shadowcube_compare_ai_accuracy_ratio", Legend: "{{service}} {{route}} {{side}}"}}},
			{Title: "Rollback flag", Unit: "short", Queries: []Query{
				{Expr: "shadowcube_compare_ai_rollback_flag", Legend: "{{service}} {{route}}"}}},
		}},
	}}
}
