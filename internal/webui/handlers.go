package webui

import (
	"bytes"
	"context"
	"embed"
	"errors"
	"html/template"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/heal7/shadowcube/comparator"
)

//go:embed templates/*.html
var templateFS embed.FS // the UI's pages; the report's sections come from analyst

// pageData is what every page template gets.
type pageData struct {
	Title    string
	Nonce    string
	Refresh  int // seconds; 0 off
	Filter   Filter
	Here     string // this page's URL (path and query), for "back" after a change
	Path     string // this page's path, for the filter form
	Auth     authView
	Flash    string
	Error    string
	Now      time.Time
	Body     any // the page's own data
	Template string
}

type authView struct {
	Enabled  bool // a token is configured
	LoggedIn bool
	CSRF     string
}

// pageFunc fills a page's data; it returns the name of its content
// template. An error is shown on the page (status 400 for a badRequest).
type pageFunc func(ctx context.Context, r *http.Request, p *pageData) (string, error)

type badRequest struct{ error }

// page wraps a pageFunc: filters from the URL, auth state, the layout.
func (s *Server) page(fn pageFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		now := time.Now()
		p := &pageData{Now: now, Nonce: nonceOf(r), Here: r.URL.RequestURI(), Path: r.URL.Path, Flash: flash(r.URL.Query().Get("msg"))}
		id := s.auth.identify(r)
		p.Auth = authView{Enabled: s.auth.enabled, LoggedIn: id.ok, CSRF: id.csrf}
		f, err := parseFilter(r.URL.Query(), now)
		p.Filter = f
		p.Refresh = f.Refresh
		if p.Refresh < 0 {
			p.Refresh = max(0, int(s.cfg.Refresh/time.Second))
		}
		status := http.StatusOK
		name := "error"
		if err != nil {
			status, p.Error = http.StatusBadRequest, "bad filter: "+err.Error()
		} else if name, err = fn(r.Context(), r, p); err != nil {
			name = "error"
			p.Error = err.Error()
			status = http.StatusInternalServerError
			var br badRequest
			if errors.As(err, &br) {
				status = http.StatusBadRequest
			} else {
				s.log.Error("web UI page failed", "path", r.URL.Path, "err", err)
			}
		}
		s.render(w, status, name, p)
	}
}

// flash returns the message a POST redirected with, only when it is one
// this server writes: a crafted link cannot put words on the page.
func flash(msg string) string {
	for _, p := range []string{"logged in", "logged out", "accepted ", "unaccepted "} {
		if strings.HasPrefix(msg, p) {
			return msg
		}
	}
	return ""
}

func nonceOf(r *http.Request) string {
	n, _ := r.Context().Value(nonceKey{}).(string)
	return n
}

func (s *Server) render(w http.ResponseWriter, status int, name string, p *pageData) {
	p.Template = name
	var buf bytes.Buffer
	t, err := baseTemplates.Clone()
	if err == nil {
		err = t.Funcs(template.FuncMap{"page": func() *pageData { return p }}).ExecuteTemplate(&buf, "layout", p)
	}
	if err != nil {
		s.log.Error("web UI render failed", "template", name, "err", err)
		http.Error(w, "render failed: "+err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	w.Write(buf.Bytes())
}

// safeBack returns a same-site path to go back to after a POST: only a
// relative path of this server (never //host or a scheme).
func safeBack(v string) string {
	if v == "" || !strings.HasPrefix(v, "/") || strings.HasPrefix(v, "//") || strings.HasPrefix(v, "/\\") {
		return "/"
	}
	u, err := url.Parse(v)
	if err != nil || u.Host != "" || u.Scheme != "" {
		return "/"
	}
	return u.RequestURI()
}

// withMsg adds a flash message to a back URL (replacing an older one).
func withMsg(back, msg string) string {
	u, err := url.Parse(back)
	if err != nil {
		return "/"
	}
	q := u.Query()
	q.Set("msg", msg)
	u.RawQuery = q.Encode()
	return u.RequestURI()
}

func (s *Server) loginPage(_ context.Context, r *http.Request, p *pageData) (string, error) {
	p.Title = "Log in"
	p.Body = safeBack(r.URL.Query().Get("back"))
	p.Refresh = 0
	return "ui-login", nil
}

func (s *Server) doLogin(w http.ResponseWriter, r *http.Request) {
	if !s.auth.enabled {
		http.Error(w, "read-only: no SHADOWCUBE_UI_TOKEN is configured", http.StatusForbidden)
		return
	}
	back := safeBack(r.PostFormValue("back"))
	if !s.login.Allow() {
		http.Error(w, "too many login attempts; wait a few seconds", http.StatusTooManyRequests)
		return
	}
	if !s.auth.tokenOK(r.PostFormValue("token")) {
		s.log.Warn("web UI login refused: wrong token", "remote", r.RemoteAddr)
		p := &pageData{Title: "Log in", Nonce: nonceOf(r), Now: time.Now(), Body: back, Error: "wrong token",
			Auth: authView{Enabled: true}}
		s.render(w, http.StatusUnauthorized, "ui-login", p)
		return
	}
	v, err := s.auth.newSession()
	if err != nil {
		http.Error(w, "session: "+err.Error(), http.StatusInternalServerError)
		return
	}
	setSession(w, r, v, int(sessionTTL/time.Second))
	s.log.Info("web UI login", "remote", r.RemoteAddr)
	http.Redirect(w, r, withMsg(back, "logged in"), http.StatusSeeOther)
}

func (s *Server) doLogout(w http.ResponseWriter, r *http.Request) {
	id := s.auth.identify(r)
	if id.ok && !id.bearer && !id.csrfOK(r) {
		http.Error(w, "missing or wrong CSRF token", http.StatusForbidden)
		return
	}
	setSession(w, r, "", -1)
	http.Redirect(w, r, withMsg(safeBack(r.PostFormValue("back")), "logged out"), http.StatusSeeOther)
}

// change accepts (or un-accepts) a signature: token required (bearer or
// session with its CSRF token), who and why required; the store records
// it with an audit row, then the YAML export is rewritten.
func (s *Server) change(accept bool) http.HandlerFunc {
	action := "unaccept"
	if accept {
		action = "accept"
	}
	return func(w http.ResponseWriter, r *http.Request) {
		if !s.auth.enabled {
			http.Error(w, "read-only: no SHADOWCUBE_UI_TOKEN is configured", http.StatusForbidden)
			return
		}
		id := s.auth.identify(r)
		if !id.ok {
			w.Header().Set("WWW-Authenticate", `Bearer realm="shadowcube"`)
			http.Error(w, "log in (or send Authorization: Bearer <SHADOWCUBE_UI_TOKEN>) to change acceptances", http.StatusUnauthorized)
			return
		}
		if !id.csrfOK(r) {
			http.Error(w, "missing or wrong CSRF token: reload the page and try again", http.StatusForbidden)
			return
		}
		sig := r.PostFormValue("signature")
		who := strings.TrimSpace(r.PostFormValue("who"))
		why := strings.TrimSpace(r.PostFormValue("reason"))
		var err error
		if accept {
			err = s.store.Accept(r.Context(), comparator.Acceptance{Signature: sig, Service: r.PostFormValue("service"),
				Route: r.PostFormValue("route"), By: who, Reason: why}, r.RemoteAddr)
		} else {
			err = s.store.Unaccept(r.Context(), sig, who, why, r.RemoteAddr)
		}
		switch {
		case errors.Is(err, comparator.ErrNotAccepted):
			http.Error(w, err.Error(), http.StatusConflict)
			return
		case err != nil && (who == "" || why == "" || strings.TrimSpace(sig) == ""):
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		case err != nil:
			s.log.Error("web UI change failed", "action", action, "signature", sig, "err", err)
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		s.log.Info("signature "+action+"ed", "signature", sig, "by", who, "reason", why, "remote", r.RemoteAddr)
		msg := action + "ed " + sig
		if err := s.export(r.Context()); err != nil {
			s.log.Error("accepted-signatures export failed", "file", s.cfg.AcceptedOut, "err", err)
			msg += "; the YAML export failed: " + err.Error()
		}
		if id.bearer {
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			w.Write([]byte(msg + "\n"))
			return
		}
		http.Redirect(w, r, withMsg(safeBack(r.PostFormValue("back")), msg), http.StatusSeeOther)
	}
}

// export rewrites the accepted-signatures file, when one is configured.
func (s *Server) export(ctx context.Context) error {
	if s.cfg.AcceptedOut == "" {
		return nil
	}
	s.exportMu.Lock()
	defer s.exportMu.Unlock()
	return s.store.ExportAccepted(ctx, s.cfg.AcceptedOut)
}

// acceptedYAML serves the accepted signatures in the file format `compare`
// reads (what --accepted-out writes, without that file's route rules).
func (s *Server) acceptedYAML(w http.ResponseWriter, r *http.Request) {
	accs, err := s.store.AcceptedSignatures(r.Context())
	if err == nil {
		var data []byte
		if data, err = comparator.MarshalAccepted(nil, accs); err == nil {
			w.Header().Set("Content-Type", "application/yaml; charset=utf-8")
			w.Write(data)
			return
		}
	}
	http.Error(w, err.Error(), http.StatusInternalServerError)
}

type auditBody struct {
	Entries   []comparator.AuditEntry
	Accepted  []comparator.Acceptance
	Signature string
}

func (s *Server) auditPage(ctx context.Context, _ *http.Request, p *pageData) (string, error) {
	p.Title = "Acceptances and their audit"
	entries, err := s.store.AcceptAudit(ctx, p.Filter.Signature, 500)
	if err != nil {
		return "", err
	}
	accs, err := s.store.AcceptedSignatures(ctx)
	if err != nil {
		return "", err
	}
	p.Body = auditBody{Entries: entries, Accepted: accs, Signature: p.Filter.Signature}
	return "ui-audit", nil
}
