package web

import (
	"embed"
	"io/fs"
	"net/http"

	"github.com/go-chi/chi/v5"
)

//go:embed static
var staticFS embed.FS

// mountStatic serves the dashboard at /, the JS client at /sqlws.js and the other
// assets under /static/.
func mountStatic(r chi.Router) {
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
