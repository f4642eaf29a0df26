package publisher

import (
	"bufio"
	"errors"
	"net"
	"net/http"
	"time"

	"github.com/heal7/shadowcube/schemas"
)

// Middleware returns net/http middleware capturing every request the wrapped
// handler serves, through the same path as the tap (routes, sampling,
// privacy, bounded queue, drops). The handler's answer is never changed or
// delayed: the response writer only copies what passes, up to the body cap.
func Middleware(c *Capturer) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			start := time.Now()
			d := c.decide(r.Method, r.URL.Path, r.Header, c.priv.trusted.peer(r.RemoteAddr))
			d.m.legacyRequests.Inc()
			if !d.capture {
				next.ServeHTTP(w, r)
				d.m.legacySeconds.Observe(time.Since(start).Seconds())
				return
			}
			var reqBuf *capBuf
			if r.Body != nil && r.Body != http.NoBody {
				reqBuf = &capBuf{max: c.cfg.MaxBody}
				r.Body = &teeBody{rc: r.Body, buf: reqBuf}
			}
			cw := &captureWriter{ResponseWriter: w, buf: capBuf{max: c.cfg.MaxBody}}
			defer func() {
				d.m.legacySeconds.Observe(time.Since(start).Seconds())
				if cw.hijacked {
					return
				}
				status := cw.status
				if status == 0 {
					status = http.StatusOK
				}
				ev := &schemas.RequestEvent{
					V: schemas.Version, ID: newID(start), Service: c.cfg.Service, Route: d.route,
					Method: r.Method, Path: r.URL.Path, Query: r.URL.RawQuery,
					Headers: c.priv.headers(r.Header), UserKey: d.id.key,
					TraceParent: r.Header.Get("Traceparent"), CapturedAt: start, Source: schemas.SourceMiddleware,
					Response: schemas.HTTPResponse{Status: status, Headers: c.priv.headers(w.Header()), Latency: time.Since(start)},
				}
				if reqBuf != nil {
					ev.Body, ev.BodyTruncated = reqBuf.seal()
				}
				ev.Response.Body, ev.Response.BodyTruncated = cw.buf.seal()
				c.submit(&item{ev: ev, clean: true, owned: true, size: int64(len(ev.Body) + len(ev.Response.Body)), m: d.m})
			}()
			next.ServeHTTP(cw, r)
		})
	}
}

// captureWriter copies the status and the first bytes of the body. It
// implements Flusher and Hijacker by delegation and Unwrap for
// http.ResponseController.
type captureWriter struct {
	http.ResponseWriter
	status   int
	buf      capBuf
	hijacked bool
}

func (w *captureWriter) WriteHeader(code int) {
	if w.status == 0 && code >= 200 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *captureWriter) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	n, err := w.ResponseWriter.Write(p)
	w.buf.write(p[:n])
	return n, err
}

func (w *captureWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (w *captureWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	h, ok := w.ResponseWriter.(http.Hijacker)
	if !ok {
		return nil, nil, errors.New("capture middleware: the underlying ResponseWriter cannot be hijacked")
	}
	w.hijacked = true
	return h.Hijack()
}

func (w *captureWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
