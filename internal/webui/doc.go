// Package webui is `shadowcube serve`: the report (internal/analyst) as a
// live web UI over the mismatch store, for the analysts who decide a
// cutover. It reads only what the report reads (roll-ups, examples,
// reconcile results) and writes only acceptances.
//
// Pages: / (services and their routes), /route (a route's trend, paths,
// causes and signatures), /signature (a signature's examples side by side
// and its history), /audit (accepted signatures and every change),
// /report (the view as the report's HTML file), /accepted.yaml, /healthz.
// Every view's filters (since, until, service, route, cause, signature,
// verdict, refresh) are URL query parameters, so a link shares a view.
// Pages render through the report's own templates (analyst.Templates),
// so the UI and the report file show the same figures; html/template
// escapes every value from the store, and a strict Content-Security-Policy
// lets only each response's own refresh script run.
//
// Changes (accepting a signature as expected, un-accepting it) need the
// UI token (Config.Token, SHADOWCUBE_UI_TOKEN): as a bearer header, or
// through /login, which sets a signed HttpOnly, SameSite=Strict session
// cookie (Secure over TLS) whose forms carry a per-session CSRF token;
// cross-origin POSTs are refused (http.CrossOriginProtection). Without a
// token the UI is read-only. Each change is one transaction in the store
// (comparator.Store.Accept / Unaccept: the accepted table and an audit
// row), then the accepted-signatures YAML file (Config.AcceptedOut) is
// rewritten atomically in the format `compare --accepted` reads.
package webui
