package web

import (
	"embed"
	"io/fs"
	"net/http"

	"github.com/go-chi/chi/v5"
)

//go:embed static
var staticFS embed.FS

// dashboardCSP is the dashboard's Content-Security-Policy: its own scripts, styles
// and images only, no inline script, connections (fetch, WebSocket) to its own
// origin only, and no framing (clickjacking). An injected row value that reached
// the page as markup could then neither run nor send rows elsewhere.
const dashboardCSP = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
	"connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'; object-src 'none'"

// dashboardHeaders sets the browser-safety headers of the dashboard's files.
func dashboardHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", dashboardCSP)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("X-Frame-Options", "DENY") // frame-ancestors for browsers that predate it
		h.Set("Referrer-Policy", "no-referrer")
		next.ServeHTTP(w, r)
	})
}

// mountStatic serves the dashboard at /, the JS client at /sqlws.js and the other
// assets under /static/, with dashboardHeaders.
func mountStatic(r chi.Router) {
	r = r.With(dashboardHeaders)
	sub, err := fs.Sub(staticFS, "static")
	if err != nil {
		panic(err) // the embed pattern guarantees the directory
	}
	files := http.FileServer(http.FS(sub))
	serve := func(name string) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Cache-Control", "no-cache")
			http.ServeFileFS(w, r, sub, name)
		}
	}
	r.Get("/", serve("index.html"))
	r.Get("/sqlws.js", serve("sqlws.js"))
	r.Handle("/static/*", http.StripPrefix("/static/", files))
}
