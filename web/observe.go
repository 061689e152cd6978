package web

import (
	"context"
	"log/slog"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/sqlws/sqlws/metrics"
)

// reqInfo is what the observing middleware keeps for a request: its id, for the log
// lines it causes, and the metrics its errors are counted in.
type reqInfo struct {
	id      string
	metrics *metrics.Metrics
}

type reqKey struct{}

// requestIDs numbers requests within the process; with the process's start time
// they are unique enough to find one request's lines in a log.
var requestIDs atomic.Uint64

// observeRequests is the middleware that gives each request an id (X-Request-Id, and
// "req" on every log line it causes) and records its route, status and latency.
func observeRequests(m *metrics.Metrics) func(http.Handler) http.Handler {
	start := strconv.FormatInt(time.Now().Unix()%100000, 36)
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
			id := start + "-" + strconv.FormatUint(requestIDs.Add(1), 36)
			w.Header().Set("X-Request-Id", id)
			req = req.WithContext(context.WithValue(req.Context(), reqKey{}, &reqInfo{id: id, metrics: m}))
			if m == nil || req.URL.Path == "/ws" {
				next.ServeHTTP(w, req) // a WebSocket's life is not a request's latency
				return
			}
			sw := &statusWriter{ResponseWriter: w, status: http.StatusOK}
			t0 := time.Now()
			next.ServeHTTP(sw, req)
			route := ""
			if rc := chi.RouteContext(req.Context()); rc != nil {
				route = rc.RoutePattern()
			}
			m.ObserveREST(route, req.Method, sw.status, time.Since(t0))
		})
	}
}

// mountObservability serves /readyz (ready when the database answers and the tailer
// keeps up; /healthz stays liveness only) and /metrics.
func mountObservability(r chi.Router, m *metrics.Metrics, log *slog.Logger) {
	r.Get("/readyz", func(w http.ResponseWriter, req *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		if m != nil {
			if err := m.Ready(req.Context()); err != nil {
				logFor(req, log).Warn("not ready", "reason", err)
				w.WriteHeader(http.StatusServiceUnavailable)
				w.Write([]byte("not ready: " + err.Error() + "\n"))
				return
			}
		}
		w.Write([]byte("ready\n"))
	})
	if m != nil {
		r.Handle("/metrics", m.Handler())
	}
}

// logFor is log with the request's id.
func logFor(r *http.Request, log *slog.Logger) *slog.Logger {
	if ri, ok := r.Context().Value(reqKey{}).(*reqInfo); ok {
		return log.With("req", ri.id)
	}
	return log
}

// countError counts an error answered to r by its code.
func countError(r *http.Request, code string) {
	if ri, ok := r.Context().Value(reqKey{}).(*reqInfo); ok && ri.metrics != nil {
		ri.metrics.RESTError(code)
	}
}

// statusWriter remembers the status a handler wrote.
type statusWriter struct {
	http.ResponseWriter
	status      int
	wroteHeader bool
}

func (w *statusWriter) WriteHeader(code int) {
	if !w.wroteHeader {
		w.status, w.wroteHeader = code, true
	}
	w.ResponseWriter.WriteHeader(code)
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
