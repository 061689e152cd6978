// Package web is sqlws's HTTP surface: the chi router, the REST handlers, middleware,
// and the embedded dashboard and JavaScript client.
package web

import (
	"encoding/json"
	"log/slog"
	"net"
	"net/http"

	"github.com/go-chi/chi/v5"

	"github.com/sqlws/sqlws/auth"
	"github.com/sqlws/sqlws/crud"
	"github.com/sqlws/sqlws/errors"
	"github.com/sqlws/sqlws/metrics"
	"github.com/sqlws/sqlws/rules"
)

// Config wires the HTTP surface.
type Config struct {
	// DB serves REST's reads and writes.
	DB *crud.DB
	// WebSocket serves GET /ws.
	WebSocket http.Handler
	// BodyLimit caps request bodies. Default 1 MiB.
	BodyLimit int64
	// Metrics, if set, is served at /metrics, answers /readyz and counts requests.
	Metrics *metrics.Metrics
	Logger  *slog.Logger

	// Auth verifies the tokens of the data routes (/api/…, /ws); nil turns
	// authentication off (cmd/sqlws then serves only loopback addresses, unless
	// Insecure).
	Auth *auth.Verifier
	// Rules are the access rules in force (nil: any valid token may do anything).
	Rules *rules.Live
	// Insecure is reported by /healthz: the server runs without authentication on
	// a non-loopback address (--insecure).
	Insecure bool
	// LoopbackBind says the server listens on a loopback address only: then only
	// loopback host names (localhost, 127.0.0.1, [::1]) and AllowedHosts are
	// accepted in the Host header, so a web page on another name that resolves to
	// 127.0.0.1 (DNS rebinding) cannot read or write through the visitor's browser.
	LoopbackBind bool
	// AllowedHosts are the host names (no port; "*.example.com" for subdomains)
	// the Host header may name; empty on a non-loopback bind: any.
	AllowedHosts []string
	// RESTRate limits the data routes' requests (REST and WebSocket upgrades) per
	// client address to this many per second, RESTBurst at once; over it a request
	// is 429 rate_limited with Retry-After. Zero: no limit. Loopback clients are not
	// limited unless RateLimitLoopback (a reverse proxy on the same host limits its
	// own clients).
	RESTRate          float64
	RESTBurst         int
	RateLimitLoopback bool
	// TrustedProxies are the proxies whose X-Forwarded-For names the client the
	// rate limit applies to (ClientIP); from any other peer the header is ignored.
	TrustedProxies []*net.IPNet
	// WebSocketEnforcesRules says the WebSocket handler applies the rules to
	// subscriptions itself (rules.FromContext on its request). Until it does, a
	// token whose reads the rules restrict is refused the WebSocket (403), since the
	// stream would show it every row.
	WebSocketEnforcesRules bool
	// AllowedOrigins are the patterns (--allowed-origins, as the WebSocket's
	// OriginPatterns) of the other origins whose pages may call the REST routes:
	// they get CORS headers, every other origin none.
	AllowedOrigins []string
}

// NewRouter returns the complete HTTP handler.
func NewRouter(cfg Config) http.Handler {
	if cfg.BodyLimit <= 0 {
		cfg.BodyLimit = 1 << 20
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	all, data := Protection(cfg)
	r := chi.NewRouter()
	r.Use(observeRequests(cfg.Metrics), recoverer(cfg.Logger), all)

	// Open routes: probes and metrics (no table names, no rows: docs/security.md)
	// and the dashboard's files, which hold no data.
	mountObservability(r, cfg.Metrics, cfg.Logger)
	r.Get("/healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		if cfg.Insecure {
			w.Write([]byte("ok\ninsecure: no authentication on a non-loopback address (--insecure)\n"))
			return
		}
		w.Write([]byte("ok\n"))
	})
	mountStatic(r)

	// Data routes: every one behind the token check. A route added here is
	// protected; one added above is open (TestEveryDataRouteNeedsAToken lists them).
	a := &api{db: cfg.DB, bodyLimit: cfg.BodyLimit, log: cfg.Logger, authOn: cfg.Auth != nil}
	r.Group(func(r chi.Router) {
		r.Use(data)
		if cfg.WebSocket != nil {
			r.Handle(wsPath, cfg.WebSocket)
		}
		r.Route("/api", a.mount)
	})
	return r
}

// Protection is the middleware NewRouter puts in front of every route (all: the
// Host check and CORS) and in front of the data routes (data: the rate limit, then
// the token check and the rules), for a server that builds its own routes — sqlws
// edge, so that an edge checks hosts, origins and tokens exactly as serve does.
// Of cfg it reads the security fields and Logger.
func Protection(cfg Config) (all, data func(http.Handler) http.Handler) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	host, origins := checkHost(cfg.LoopbackBind, cfg.AllowedHosts, cfg.Logger), cors(cfg.AllowedOrigins)
	all = func(next http.Handler) http.Handler { return host(origins(next)) }
	sec := &security{verifier: cfg.Auth, rules: cfg.Rules, wsRules: cfg.WebSocketEnforcesRules, log: cfg.Logger}
	data = sec.require
	if cfg.RESTRate > 0 {
		// Rate first: a flood is refused before its tokens cost a signature check.
		limit := newIPLimiter(cfg.RESTRate, cfg.RESTBurst, cfg.RateLimitLoopback, cfg.TrustedProxies).middleware(cfg.Logger)
		data = func(next http.Handler) http.Handler { return limit(sec.require(next)) }
	}
	return all, data
}

// recoverer turns a handler panic into a 500 with no internal text, and logs it.
func recoverer(log *slog.Logger) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			defer func() {
				if v := recover(); v != nil {
					if v == http.ErrAbortHandler {
						panic(v)
					}
					log.Error("handler panic", "method", r.Method, "path", r.URL.Path, "panic", v)
					writeError(w, r, log, errors.E(errors.Internal, "internal error"))
				}
			}()
			next.ServeHTTP(w, r)
		})
	}
}

// writeJSON writes v as the response body with status.
func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	enc.Encode(v)
}

// writeError writes {"error":{"code","message"}} with the status of err's kind.
// Internal errors are logged and reach the client only as "internal error". A 503
// is logged only at debug level: the database layer logs each storage fault once
// per episode, and a line per refused request would bury the log while it lasts.
func writeError(w http.ResponseWriter, r *http.Request, log *slog.Logger, err error) {
	kind, code, msg := errors.Public(err)
	status := httpStatus(kind)
	countError(r, string(code))
	log = logFor(r, log)
	switch {
	case status == http.StatusServiceUnavailable:
		log.Debug("request refused", "method", r.Method, "path", errors.Clip(r.URL.Path), "code", code, "err", err)
		if code != errors.CodeReadOnly { // retrying soon cannot help a server without write access
			w.Header().Set("Retry-After", "1")
		}
	case status >= 500:
		log.Error("request failed", "method", r.Method, "path", errors.Clip(r.URL.Path), "err", err)
	}
	writeErrorBody(w, status, code, msg)
}

// writeErrorBody writes the error envelope.
func writeErrorBody(w http.ResponseWriter, status int, code errors.Code, msg string) {
	writeJSON(w, status, map[string]any{"error": map[string]string{"code": string(code), "message": msg}})
}

// httpStatus is how REST reports an error of each kind: the one place kinds meet
// HTTP statuses.
func httpStatus(k errors.Kind) int {
	switch k {
	case errors.Invalid:
		return http.StatusBadRequest
	case errors.NotFound:
		return http.StatusNotFound
	case errors.Conflict:
		return http.StatusConflict
	case errors.Unauthorized:
		return http.StatusUnauthorized
	case errors.Forbidden:
		return http.StatusForbidden
	case errors.TooLarge:
		return http.StatusRequestEntityTooLarge
	case errors.RateLimited:
		return http.StatusTooManyRequests
	case errors.Unavailable:
		return http.StatusServiceUnavailable
	case errors.Unsupported:
		return http.StatusUnsupportedMediaType
	}
	return http.StatusInternalServerError
}
