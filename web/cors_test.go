package web

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"github.com/golang-jwt/jwt/v5"

	"github.com/sqlws/sqlws/internal/testdb"
)

// corsDo sends a request with headers hdr and returns the response, body read.
func corsDo(t *testing.T, srv *httptest.Server, method, path, body string, hdr map[string]string) response {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, srv.URL+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return response{resp.StatusCode, resp.Header, b}
}

// TestCORS: pages on an --allowed-origins origin get CORS headers on REST (the
// preflight answered with the methods and headers, no credentials); other origins
// get none; the preflight is answered before the token check, since a browser
// sends none on it.
func TestCORS(t *testing.T) {
	path := filepath.Join(t.TempDir(), "app.db")
	cli(t, path, `CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT); INSERT INTO t(v) VALUES('x');`)
	d := testdb.Install(t, path, testdb.Options{})
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	srv := httptest.NewServer(NewRouter(Config{DB: d.CRUD, Logger: log, Auth: mustVerifier(t),
		AllowedOrigins: []string{"app.example", "https://*.trusted.example"}}))
	t.Cleanup(srv.Close)
	tok := token(t, jwt.MapClaims{"sub": "u"})

	preflight := func(origin string) response {
		return corsDo(t, srv, "OPTIONS", "/api/tables/t/rows", "", map[string]string{"Origin": origin,
			"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "authorization, content-type"})
	}
	for _, origin := range []string{"http://app.example", "https://app.example", "https://x.trusted.example", "HTTPS://A.Trusted.Example"} {
		r := preflight(origin)
		h := r.header
		if r.status != http.StatusNoContent || h.Get("Access-Control-Allow-Origin") != origin ||
			!strings.Contains(h.Get("Access-Control-Allow-Methods"), "POST") || !strings.Contains(h.Get("Access-Control-Allow-Methods"), "DELETE") ||
			!strings.Contains(h.Get("Access-Control-Allow-Headers"), "Authorization") || !strings.Contains(h.Get("Access-Control-Allow-Headers"), "Content-Type") {
			t.Errorf("preflight from %s: %d %v", origin, r.status, h)
		}
		if h.Get("Access-Control-Allow-Credentials") != "" {
			t.Errorf("preflight from %s allows credentials", origin)
		}
		r = corsDo(t, srv, "GET", "/api/tables/t/rows", "", map[string]string{"Origin": origin, "Authorization": "Bearer " + tok})
		if r.status != 200 || r.header.Get("Access-Control-Allow-Origin") != origin || r.header.Get("Access-Control-Allow-Credentials") != "" {
			t.Errorf("GET from %s: %d %v", origin, r.status, r.header)
		}
		// A refusal is readable too, so the page can tell a bad token from a network fault.
		r = corsDo(t, srv, "GET", "/api/tables/t/rows", "", map[string]string{"Origin": origin})
		if r.status != 401 || r.header.Get("Access-Control-Allow-Origin") != origin || !strings.Contains(r.header.Get("Access-Control-Expose-Headers"), "WWW-Authenticate") {
			t.Errorf("GET from %s without a token: %d %v", origin, r.status, r.header)
		}
	}
	for _, origin := range []string{"http://evil.example", "http://app.example.evil.example", "http://x.trusted.example", "null", "http://" + srv.Listener.Addr().String()} {
		r := preflight(origin)
		r2 := corsDo(t, srv, "GET", "/api/tables/t/rows", "", map[string]string{"Origin": origin, "Authorization": "Bearer " + tok})
		for _, h := range []http.Header{r.header, r2.header} {
			for k := range h {
				if strings.HasPrefix(k, "Access-Control-") {
					t.Errorf("origin %s got %s: %q", origin, k, h.Get(k))
				}
			}
		}
	}
	// Outside /api nothing changes.
	if r := preflight("http://app.example"); r.status != http.StatusNoContent {
		t.Fatal(r.status)
	}
	r := corsDo(t, srv, "GET", "/healthz", "", map[string]string{"Origin": "http://app.example"})
	if r.header.Get("Access-Control-Allow-Origin") != "" {
		t.Errorf("/healthz has CORS headers: %v", r.header)
	}
}

// TestCrossSiteFormPostRefused: an HTML form on any site can POST text/plain or
// urlencoded bodies without a preflight; REST refuses them with 415 and writes
// nothing, allowed origin or not, so a form cannot write through a visitor's
// browser even to a server without authentication.
func TestCrossSiteFormPostRefused(t *testing.T) {
	path := filepath.Join(t.TempDir(), "app.db")
	cli(t, path, `CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT);`)
	d := testdb.Install(t, path, testdb.Options{})
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	srv := httptest.NewServer(NewRouter(Config{DB: d.CRUD, Logger: log, AllowedOrigins: []string{"app.example"}}))
	t.Cleanup(srv.Close)
	for _, origin := range []string{"http://evil.example", "http://app.example"} {
		for _, c := range []struct{ ctype, body string }{
			{"text/plain", `{"v":"x"}`},
			{"text/plain; charset=utf-8", `{"v":"x"}`},
			{"application/x-www-form-urlencoded", `{"v":"x"}=`},
			{"multipart/form-data; boundary=b", "--b\r\nContent-Disposition: form-data; name=\"v\"\r\n\r\nx\r\n--b--\r\n"},
		} {
			for _, method := range []string{"POST", "PATCH"} {
				p := "/api/tables/t/rows"
				if method == "PATCH" {
					p += "/1"
				}
				r := corsDo(t, srv, method, p, c.body, map[string]string{"Origin": origin, "Content-Type": c.ctype})
				if r.status != http.StatusUnsupportedMediaType || !strings.Contains(string(r.body), "unsupported_media_type") {
					t.Errorf("%s %s from %s: %d %s, want 415", method, c.ctype, origin, r.status, r.body)
				}
			}
		}
	}
	if n := cli(t, path, "SELECT count(*) FROM t;"); strings.TrimSpace(n) != "0" {
		t.Errorf("a form post wrote %s rows", n)
	}
}
