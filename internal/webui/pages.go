package webui

import (
	"bytes"
	"context"
	"fmt"
	"html/template"
	"net/http"
	"strings"
	"time"

	"github.com/heal7/shadowcube/comparator"
	"github.com/heal7/shadowcube/internal/analyst"
)

// uiFuncs are the web UI's template helpers, next to the report's
// (analyst.Funcs). page is bound per request to the page's data, so the
// report's templates (a signature) can reach the login state.
var uiFuncs = template.FuncMap{
	"page": func() *pageData { return nil },
	"link": func(f Filter, path string, kv ...string) string { return f.With(path, kv...) },
	"verdicts": func() []string {
		return []string{"", "open", "mismatch", "accepted", "match", "noise", "error", "moved-on", "skipped"}
	},
	"window": func(f *analyst.Figures) string {
		from := "the first roll-up"
		if !f.From.IsZero() {
			from = f.From.UTC().Format("2006-01-02 15:04Z")
		}
		return fmt.Sprintf("Hours %s to %s (UTC); generated %s.", from, f.To.UTC().Format("2006-01-02 15:04Z"),
			f.GeneratedAt.UTC().Format("2006-01-02 15:04:05Z"))
	},
	"total": func(s analyst.Service) analyst.Route {
		return analyst.Route{Service: s.Service, Stats: s.Total}
	},
	"sigService": func(sig string) string { svc, _, _ := strings.Cut(sig, ":"); return svc },
	"sigRoute": func(sig string) string {
		_, rest, _ := strings.Cut(sig, ":")
		route, _, _ := strings.Cut(rest, ":")
		return route
	},
}

// baseTemplates is the report's template set (analyst.Templates) with the
// UI's pages added and two of the report's templates wrapped: a route
// row links to its page, a signature gets its page link and the accept
// form (the report's own rendering kept as report-signature). It is never
// executed: each request renders a clone with page bound.
var baseTemplates = func() *template.Template {
	t := analyst.Templates().Funcs(uiFuncs)
	orig := t.Lookup("signature")
	if orig == nil {
		panic("webui: the report's templates have no signature template")
	}
	template.Must(t.AddParseTree("report-signature", orig.Tree))
	return template.Must(t.ParseFS(templateFS, "templates/*.html"))
}()

// query turns a filter into the analyst's query. The UI's "open" and
// "accepted" verdicts select mismatches; the tables then split them.
func (f Filter) query() analyst.Query {
	q := analyst.Query{Since: f.Since, Until: f.Until, Service: f.Service, Route: f.Route, Cause: f.Cause,
		Signature: f.Signature, Verdict: f.Verdict}
	if q.Verdict == "open" || q.Verdict == "accepted" {
		q.Verdict = string(comparator.VerdictMismatch)
	}
	return q
}

// figures builds the report's figures for a filter, judging acceptance
// by the store's accepted signatures (and the route rules of the accepted
// file), so a change shows at once.
// With gate, each service's gate verdict is evaluated too (the overview
// shows it; the other pages do not pay for it).
// examples bounds the examples per signature (0: Config.Examples).
func (s *Server) figures(ctx context.Context, f Filter, gate bool, examples int) (*analyst.Figures, error) {
	acc, err := s.accepted(ctx)
	if err != nil {
		return nil, err
	}
	q := f.query()
	if examples == 0 {
		examples = s.cfg.Examples
	}
	opts := analyst.Options{Accepted: acc, AI: s.cfg.AI, Examples: examples}
	if gate && s.cfg.Criteria != nil {
		// A filtered view's gate still judges whole services over the
		// window, with these acceptances (analyst.Evaluate).
		opts.Criteria, opts.Inputs = s.cfg.Criteria, analyst.GateInputs{JS: s.js}
	}
	fig, err := analyst.Build(ctx, s.store, q, opts)
	if err != nil {
		return nil, err
	}
	switch f.Verdict {
	case "open", "accepted":
		keepOpen := f.Verdict == "open"
		for i := range fig.Services {
			for j := range fig.Services[i].Routes {
				r := &fig.Services[i].Routes[j]
				if keepOpen {
					r.Accepted = nil
				} else {
					r.Signatures = nil
				}
			}
		}
	}
	return fig, nil
}

func (s *Server) overview(ctx context.Context, _ *http.Request, p *pageData) (string, error) {
	p.Title = "Services"
	fig, err := s.figures(ctx, p.Filter, true, 1) // no example shown
	if err != nil {
		return "", err
	}
	p.Body = fig
	return "ui-overview", nil
}

func (s *Server) routePage(ctx context.Context, _ *http.Request, p *pageData) (string, error) {
	if p.Filter.Service == "" || p.Filter.Route == "" {
		return "", badRequest{fmt.Errorf("a route page needs service= and route= in the URL")}
	}
	p.Title = p.Filter.Service + " " + p.Filter.Route
	fig, err := s.figures(ctx, p.Filter, false, 1) // one example each; all on the signature page
	if err != nil {
		return "", err
	}
	p.Body = fig
	return "ui-route", nil
}

type signatureBody struct {
	Sig            *analyst.Signature
	Service, Route string
	Audit          []comparator.AuditEntry
}

func (s *Server) signaturePage(ctx context.Context, _ *http.Request, p *pageData) (string, error) {
	if p.Filter.Signature == "" {
		return "", badRequest{fmt.Errorf("a signature page needs signature= in the URL")}
	}
	p.Title = "Signature " + p.Filter.Signature
	fig, err := s.figures(ctx, p.Filter, false, 0)
	if err != nil {
		return "", err
	}
	var b signatureBody
	for _, svc := range fig.Services {
		for _, r := range svc.Routes {
			for _, list := range [][]analyst.Signature{r.Signatures, r.Accepted} {
				for i := range list {
					if list[i].Signature == p.Filter.Signature {
						b.Sig, b.Service, b.Route = &list[i], r.Service, r.Route
					}
				}
			}
		}
	}
	if b.Audit, err = s.store.AcceptAudit(ctx, p.Filter.Signature, 50); err != nil {
		return "", err
	}
	p.Body = b
	return "ui-signature", nil
}

// report serves the view's figures as the report's HTML file (what
// `shadowcube report` writes), to save or forward.
func (s *Server) report(w http.ResponseWriter, r *http.Request) {
	f, err := parseFilter(r.URL.Query(), time.Now())
	if err != nil {
		http.Error(w, "bad filter: "+err.Error(), http.StatusBadRequest)
		return
	}
	fig, err := s.figures(r.Context(), f, true, 0)
	if err != nil {
		s.log.Error("web UI report failed", "err", err)
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	var buf bytes.Buffer
	if err := analyst.WriteHTML(&buf, fig); err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Content-Disposition", `inline; filename="shadowcube-report.html"`)
	w.Write(buf.Bytes())
}
