package web

import (
	"net/http"
	"net/url"
	"path"
	"strings"
)

// CORS for the REST routes. A page on another origin may call /api/… only if its
// origin matches one of --allowed-origins, the patterns that admit it to the
// WebSocket; every other origin gets no CORS headers, so its browser keeps the
// responses from it. Credentials are never allowed: sqlws authenticates with a
// bearer token the page sends itself, never with cookies a browser would attach to
// a cross-site request on its own.

const (
	corsMethods = "GET, POST, PATCH, DELETE"
	corsHeaders = "Authorization, Content-Type"
	// corsExpose are the response headers a cross-origin page may read besides the
	// CORS-safelisted ones: why it was refused, and when to retry.
	corsExpose = "WWW-Authenticate, Retry-After, X-Request-Id"
	corsMaxAge = "600"
)

// cors is the middleware of the REST routes (under /api/). A preflight (OPTIONS
// with Access-Control-Request-Method) is answered here, before rate limits and
// token checks, because a browser never sends credentials on one.
func cors(patterns []string) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			origin := r.Header.Get("Origin")
			if origin == "" || !strings.HasPrefix(r.URL.Path, "/api/") {
				next.ServeHTTP(w, r)
				return
			}
			h := w.Header()
			h.Add("Vary", "Origin")
			allowed := len(patterns) > 0 && originAllowed(origin, patterns)
			if r.Method == http.MethodOptions && r.Header.Get("Access-Control-Request-Method") != "" {
				h.Add("Vary", "Access-Control-Request-Method")
				h.Add("Vary", "Access-Control-Request-Headers")
				if allowed {
					h.Set("Access-Control-Allow-Origin", origin)
					h.Set("Access-Control-Allow-Methods", corsMethods)
					h.Set("Access-Control-Allow-Headers", corsHeaders)
					h.Set("Access-Control-Max-Age", corsMaxAge)
				}
				// Without the headers the browser refuses the request it asked about.
				w.WriteHeader(http.StatusNoContent)
				return
			}
			if allowed {
				h.Set("Access-Control-Allow-Origin", origin)
				h.Set("Access-Control-Expose-Headers", corsExpose)
			}
			next.ServeHTTP(w, r)
		})
	}
}

// originAllowed matches an Origin header as the WebSocket's origin check
// (coder/websocket's OriginPatterns) does, so one flag means the same on both: a
// pattern is matched with path.Match, case-insensitively, against the origin's
// host[:port], or against scheme://host[:port] when the pattern has a scheme.
func originAllowed(origin string, patterns []string) bool {
	u, err := url.Parse(origin)
	if err != nil || u.Host == "" {
		return false
	}
	for _, p := range patterns {
		target := u.Host
		if strings.Contains(p, "://") {
			target = u.Scheme + "://" + u.Host
		}
		if ok, err := path.Match(strings.ToLower(p), strings.ToLower(target)); err == nil && ok {
			return true
		}
	}
	return false
}
