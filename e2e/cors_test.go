package e2e

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"github.com/sqlws/sqlws/internal/testenv"
)

// TestCORSFlag: serve's --allowed-origins admits a page on that origin to REST
// (preflight answered, Allow-Origin on responses, no credentials) and no other; a
// cross-site form post is refused with 415 and writes nothing.
func TestCORSFlag(t *testing.T) {
	db, srv := start(t, `CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT);`, "--allowed-origins", "app.example")
	send := func(method, path, body string, hdr map[string]string) *http.Response {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		req, err := http.NewRequestWithContext(ctx, method, srv.URL+path, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	pre := map[string]string{"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "content-type"}
	pre["Origin"] = "https://app.example"
	r := send("OPTIONS", "/api/tables/t/rows", "", pre)
	if r.StatusCode != 204 || r.Header.Get("Access-Control-Allow-Origin") != "https://app.example" ||
		!strings.Contains(r.Header.Get("Access-Control-Allow-Headers"), "Content-Type") || r.Header.Get("Access-Control-Allow-Credentials") != "" {
		t.Errorf("preflight from the allowed origin: %d %v", r.StatusCode, r.Header)
	}
	r = send("POST", "/api/tables/t/rows", `{"v":"x"}`, map[string]string{"Origin": "https://app.example", "Content-Type": "application/json"})
	if r.StatusCode != 201 || r.Header.Get("Access-Control-Allow-Origin") != "https://app.example" {
		t.Errorf("POST from the allowed origin: %d %v", r.StatusCode, r.Header)
	}
	pre["Origin"] = "https://evil.example"
	r = send("OPTIONS", "/api/tables/t/rows", "", pre)
	if r.Header.Get("Access-Control-Allow-Origin") != "" || r.Header.Get("Access-Control-Allow-Methods") != "" {
		t.Errorf("preflight from another origin got CORS headers: %v", r.Header)
	}
	for _, ct := range []string{"text/plain", "application/x-www-form-urlencoded"} {
		r = send("POST", "/api/tables/t/rows", `{"v":"form"}`, map[string]string{"Origin": "https://evil.example", "Content-Type": ct})
		if r.StatusCode != 415 || r.Header.Get("Access-Control-Allow-Origin") != "" {
			t.Errorf("cross-site form post (%s): %d %v, want 415 without CORS headers", ct, r.StatusCode, r.Header)
		}
	}
	if n := testenv.SQLiteInt(t, db, `SELECT count(*) FROM t WHERE v = 'form';`); n != 0 {
		t.Errorf("a form post wrote %d rows", n)
	}
}
