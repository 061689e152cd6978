package e2e

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/golang-jwt/jwt/v5"

	"github.com/sqlws/sqlws/internal/testenv"
)

// The access-control tests (docs/security.md) against the real binary over
// loopback: tokens, rules, bind refusal, SIGHUP reload.

const authSecret = "e2e-secret-e2e-secret-e2e-secret-0123"

// secretFile writes the HS256 secret (with the newline an editor leaves) to a file.
func secretFile(t *testing.T) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "jwt.secret")
	if err := os.WriteFile(p, []byte(authSecret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// hsToken signs claims with authSecret; exp is an hour ahead unless claims set it.
func hsToken(t *testing.T, claims jwt.MapClaims) string {
	t.Helper()
	if _, ok := claims["exp"]; !ok {
		claims["exp"] = time.Now().Add(time.Hour).Unix()
	}
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString([]byte(authSecret))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

type authResp struct {
	status int
	header http.Header
	body   string
}

// authDo sends a request with tok as its bearer token ("" for none).
func authDo(t *testing.T, base, tok, method, path, body string) authResp {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, base+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return authResp{resp.StatusCode, resp.Header, string(b)}
}

func expectStatus(t *testing.T, r authResp, status int, code, what string) {
	t.Helper()
	if r.status != status || code != "" && !strings.Contains(r.body, `"code":"`+code+`"`) {
		t.Errorf("%s: %d %s, want %d %s", what, r.status, r.body, status, code)
	}
}

// TestAuthTokens: every way a token can be wrong is 401 with WWW-Authenticate,
// before any WebSocket upgrade; a token in the URL is never logged.
func TestAuthTokens(t *testing.T) {
	_, srv := start(t, `CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT); INSERT INTO t(v) VALUES('x');`,
		"--jwt-secret-file", secretFile(t), "--jwt-audience", "app", "--log-level", "debug")
	ok := jwt.MapClaims{"sub": "alice", "aud": "app"}
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	rsTok, err := jwt.NewWithClaims(jwt.SigningMethodRS256, jwt.MapClaims{"sub": "alice", "aud": "app", "exp": time.Now().Add(time.Hour).Unix()}).SignedString(rsaKey)
	if err != nil {
		t.Fatal(err)
	}
	none, err := jwt.NewWithClaims(jwt.SigningMethodNone, jwt.MapClaims{"sub": "alice", "aud": "app", "exp": time.Now().Add(time.Hour).Unix()}).SignedString(jwt.UnsafeAllowNoneSignatureType)
	if err != nil {
		t.Fatal(err)
	}
	good := hsToken(t, ok)
	forged := good[:strings.LastIndexByte(good, '.')+1] + "AAAA" + good[strings.LastIndexByte(good, '.')+2:]
	for _, c := range []struct{ name, tok, says string }{
		{"no token", "", ""},
		{"bad signature", forged, "signature"},
		{"alg none", none, "algorithm"},
		{"RS256 against an HS256 server", rsTok, "algorithm"},
		{"expired", hsToken(t, jwt.MapClaims{"sub": "alice", "aud": "app", "exp": time.Now().Add(-time.Hour).Unix()}), "expired"},
		{"wrong audience", hsToken(t, jwt.MapClaims{"sub": "alice", "aud": "other"}), "audience"},
	} {
		r := authDo(t, srv.URL, c.tok, "GET", "/api/tables/t/rows", "")
		expectStatus(t, r, 401, "unauthorized", c.name)
		wa := r.header.Get("WWW-Authenticate")
		if !strings.HasPrefix(wa, "Bearer") || (c.tok != "") != strings.Contains(wa, `error="invalid_token"`) {
			t.Errorf("%s: WWW-Authenticate %q", c.name, wa)
		}
		if c.says != "" && !strings.Contains(r.body, c.says) {
			t.Errorf("%s: message %s does not say %q", c.name, r.body, c.says)
		}
		// The same token on the WebSocket: refused before the upgrade.
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		_, resp, err := websocket.Dial(ctx, srv.WSURL()+"?access_token="+c.tok, nil)
		cancel()
		if err == nil || resp == nil || resp.StatusCode != 401 {
			t.Errorf("%s: WebSocket dial: %v, %v; want 401 before the upgrade", c.name, err, resp)
		}
	}
	expectStatus(t, authDo(t, srv.URL, good, "GET", "/api/tables/t/rows", ""), 200, "", "valid token")
	expectStatus(t, authDo(t, srv.URL, "", "GET", "/healthz", ""), 200, "", "/healthz without a token")
	expectStatus(t, authDo(t, srv.URL, "", "GET", "/", ""), 200, "", "the dashboard's page without a token")

	// A valid token in the URL opens the stream (no rules: everything readable), and
	// neither it nor a refused one appears in the log.
	c := testenv.Dial(t, srv.WSURL()+"?access_token="+good)
	c.Subscribe("a", []string{"t"}, nil, "")
	testenv.SQLite(t, srv.DB, `INSERT INTO t(v) VALUES('y');`)
	c.WaitChanges("a", 1, timeout)
	c.Close()
	srv.Stop()
	for _, tok := range []string{good, forged, none} {
		if strings.Contains(srv.Stderr(), tok) {
			t.Errorf("the server log holds a token")
		}
	}
}

// TestAuthRules runs the example rules against a real server: tables denied,
// 404-not-403, writes outside the rule refused with nothing written, claim
// injection, admins, /api/changes.
func TestAuthRules(t *testing.T) {
	rulesFile := filepath.Join(t.TempDir(), "rules.json")
	writeFile(t, rulesFile, `{"tables": {
  "todos":   {"read": "owner=eq.{auth.sub}", "write": "owner=eq.{auth.sub}"},
  "notices": {"read": true},
  "audit":   {"read": false}
}, "default": {"read": false, "write": false}}`)
	db, srv := start(t, `
CREATE TABLE todos(id INTEGER PRIMARY KEY, owner TEXT, title TEXT);
CREATE TABLE notices(id INTEGER PRIMARY KEY, body TEXT);
CREATE TABLE audit(id INTEGER PRIMARY KEY, what TEXT);
INSERT INTO todos VALUES (1,'alice','a1'),(2,'bob','b1');
INSERT INTO notices VALUES (1,'hello');
INSERT INTO audit VALUES (1,'secret');`,
		"--jwt-secret-file", secretFile(t), "--rules", rulesFile)
	alice := hsToken(t, jwt.MapClaims{"sub": "alice"})
	admin := hsToken(t, jwt.MapClaims{"sub": "ops", "role": "admin"})

	r := authDo(t, srv.URL, alice, "GET", "/api/tables", "")
	if !strings.Contains(r.body, `"todos"`) || !strings.Contains(r.body, `"notices"`) || strings.Contains(r.body, `"audit"`) {
		t.Errorf("alice's /api/tables: %s", r.body)
	}
	expectStatus(t, authDo(t, srv.URL, alice, "GET", "/api/tables/audit/rows", ""), 403, "forbidden", "audit, read false")
	expectStatus(t, authDo(t, srv.URL, alice, "GET", "/api/tables/todos/rows/2", ""), 404, "not_found", "bob's todo")
	expectStatus(t, authDo(t, srv.URL, alice, "GET", "/api/tables/todos/rows/1", ""), 200, "", "alice's todo")
	if r := authDo(t, srv.URL, alice, "GET", "/api/tables/todos/rows", ""); strings.Contains(r.body, "b1") || !strings.Contains(r.body, "a1") {
		t.Errorf("alice's list: %s", r.body)
	}

	before := testenv.SQLite(t, db, "SELECT group_concat(id||owner||title) FROM todos;")
	expectStatus(t, authDo(t, srv.URL, alice, "POST", "/api/tables/todos/rows", `{"owner":"bob","title":"x"}`), 403, "forbidden", "create outside the rule")
	expectStatus(t, authDo(t, srv.URL, alice, "PATCH", "/api/tables/todos/rows/1", `{"owner":"bob"}`), 403, "forbidden", "update moving the row out")
	expectStatus(t, authDo(t, srv.URL, alice, "PATCH", "/api/tables/todos/rows/2", `{"title":"x"}`), 404, "not_found", "update of bob's")
	expectStatus(t, authDo(t, srv.URL, alice, "DELETE", "/api/tables/todos/rows/2", ""), 404, "not_found", "delete of bob's")
	expectStatus(t, authDo(t, srv.URL, alice, "POST", "/api/tables/notices/rows", `{"body":"x"}`), 403, "forbidden", "write to a read-only table")
	if after := testenv.SQLite(t, db, "SELECT group_concat(id||owner||title) FROM todos;"); after != before {
		t.Errorf("refused writes changed the table: %s → %s", before, after)
	}
	expectStatus(t, authDo(t, srv.URL, alice, "POST", "/api/tables/todos/rows", `{"owner":"alice","title":"a2"}`), 201, "", "create inside the rule")

	for _, sub := range []any{"1) OR (1=1", "alice' OR '1'='1", nil} {
		claims := jwt.MapClaims{}
		if sub != nil {
			claims["sub"] = sub
		}
		r := authDo(t, srv.URL, hsToken(t, claims), "GET", "/api/tables/todos/rows", "")
		if r.status != 200 || !strings.HasPrefix(r.body, `{"rows":[]`) {
			t.Errorf("sub %v: %d %s, want no rows", sub, r.status, r.body)
		}
	}
	if r := authDo(t, srv.URL, admin, "GET", "/api/tables/audit/rows", ""); !strings.Contains(r.body, "secret") {
		t.Errorf("admin reads audit: %d %s", r.status, r.body)
	}

	// /api/changes: alice gets notices (read true) and her own todos (row rule, as a
	// filtered subscription gets them: bob's todo given to her moves in, hers given
	// to bob moves out with new null), never audit or an image of bob's.
	testenv.SQLite(t, db, `INSERT INTO notices(body) VALUES('n'); INSERT INTO audit(what) VALUES('w');
UPDATE todos SET owner='alice' WHERE id=2; UPDATE todos SET owner='bob', title='gone' WHERE id=1;`)
	var page struct {
		Changes []struct {
			Table string          `json:"table"`
			Moved string          `json:"moved"`
			New   json.RawMessage `json:"new"`
		} `json:"changes"`
	}
	r = authDo(t, srv.URL, alice, "GET", "/api/changes?since=0", "")
	if err := json.Unmarshal([]byte(r.body), &page); err != nil {
		t.Fatalf("alice's /api/changes: %d %s", r.status, r.body)
	}
	var got []string
	for _, c := range page.Changes {
		got = append(got, c.Table+":"+c.Moved)
		if c.Moved == "out" && string(c.New) != "null" {
			t.Errorf("moved out with an image: %s", c.New)
		}
	}
	if strings.Join(got, " ") != "todos: notices: todos:in todos:out" || strings.Contains(r.body, "gone") {
		t.Errorf("alice's /api/changes: %v\n%s", got, r.body)
	}

	// The admin's stream reads everything (TestAuthWebSocket covers alice's).
	testenv.Dial(t, srv.WSURL()+"?access_token="+admin).Close()
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	// Write and rename, so a reload never reads half a file.
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// TestRulesReload: SIGHUP applies a valid rules file and keeps the old rules,
// logging why, for an invalid one; an invalid file refuses to start.
func TestRulesReload(t *testing.T) {
	rulesFile := filepath.Join(t.TempDir(), "rules.json")
	writeFile(t, rulesFile, `{"tables":{"notices":{"read":true}}}`)
	_, srv := start(t, `CREATE TABLE notices(id INTEGER PRIMARY KEY, body TEXT);`,
		"--jwt-secret-file", secretFile(t), "--rules", rulesFile)
	user := hsToken(t, jwt.MapClaims{"sub": "u"})
	expectStatus(t, authDo(t, srv.URL, user, "GET", "/api/tables/notices/rows", ""), 200, "", "before reload")

	writeFile(t, rulesFile, `{"tables":{"notices":{"read":false}}}`)
	syscall.Kill(srv.PID(), syscall.SIGHUP)
	testenv.WaitFor(t, timeout, "the rules reloaded", func() bool { return strings.Count(srv.Stderr(), "rules reloaded") == 1 })
	expectStatus(t, authDo(t, srv.URL, user, "GET", "/api/tables/notices/rows", ""), 403, "forbidden", "after reload")

	writeFile(t, rulesFile, `{"tables":{"notices":{"read":"nosuchcolumn=eq.1"}}}`)
	syscall.Kill(srv.PID(), syscall.SIGHUP)
	testenv.WaitFor(t, timeout, "the refused reload logged", func() bool { return strings.Contains(srv.Stderr(), "rules not reloaded") })
	if !strings.Contains(srv.Stderr(), "nosuchcolumn") {
		t.Errorf("the log does not name the problem:\n%s", srv.Stderr())
	}
	expectStatus(t, authDo(t, srv.URL, user, "GET", "/api/tables/notices/rows", ""), 403, "forbidden", "after a refused reload (old rules kept)")

	// An invalid file at start: refused, naming the problem.
	_, stderr, code := testenv.RunBinary(t, "serve", "--db", srv.DB, "--addr", "127.0.0.1:0", "--jwt-secret-file", secretFile(t), "--rules", rulesFile)
	if code == 0 || !strings.Contains(stderr, "nosuchcolumn") || !strings.Contains(stderr, `table "notices": read`) {
		t.Errorf("serve with an invalid rules file: exit %d, stderr:\n%s", code, stderr)
	}
}

// TestSafeByDefault: without authentication sqlws serves loopback only; another
// address is refused with how to configure authentication, unless --insecure, which
// warns and shows in /healthz.
func TestSafeByDefault(t *testing.T) {
	db := testenv.NewDB(t, `CREATE TABLE t(id INTEGER PRIMARY KEY);`)
	for _, addr := range []string{"0.0.0.0:0", ":0"} {
		_, stderr, code := testenv.RunBinary(t, "serve", "--db", db, "--addr", addr)
		if code == 0 || !strings.Contains(stderr, "--jwt-secret-file") || !strings.Contains(stderr, "--insecure") {
			t.Errorf("serve --addr %s without auth: exit %d, stderr:\n%s", addr, code, stderr)
		}
	}
	if n := testenv.SQLiteInt(t, db, `SELECT count(*) FROM sqlite_master WHERE name LIKE 'sqlws%';`); n != 0 {
		t.Errorf("a refused start installed %d sqlws objects", n)
	}

	srv := testenv.StartServer(t, db, "--addr", "0.0.0.0:0", "--insecure")
	r := authDo(t, "http://"+strings.Replace(srv.Addr, "0.0.0.0", "127.0.0.1", 1), "", "GET", "/healthz", "")
	if r.status != 200 || !strings.Contains(r.body, "insecure") {
		t.Errorf("/healthz with --insecure: %d %q", r.status, r.body)
	}
	if !strings.Contains(srv.Stderr(), "INSECURE") {
		t.Errorf("no warning at start:\n%s", srv.Stderr())
	}

	// Loopback needs nothing, and says nothing about insecurity.
	srv2 := testenv.StartServer(t, db)
	if r := authDo(t, srv2.URL, "", "GET", "/healthz", ""); r.body != "ok\n" {
		t.Errorf("/healthz on loopback: %q", r.body)
	}
}

// TestDNSRebinding: a loopback server answers only loopback host names (and
// --allowed-hosts): a page on evil.example that resolves to 127.0.0.1 gets no rows,
// no write and no WebSocket, even with a matching Origin.
func TestDNSRebinding(t *testing.T) {
	db, srv := start(t, `CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT);`, "--allowed-hosts", "app.example")
	send := func(host, method, path, body string, hdr map[string]string) int {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		var rd io.Reader
		if body != "" {
			rd = strings.NewReader(body)
		}
		req, err := http.NewRequestWithContext(ctx, method, srv.URL+path, rd)
		if err != nil {
			t.Fatal(err)
		}
		req.Host = host
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	evil := "evil.example:" + strings.Split(srv.Addr, ":")[1]
	ws := map[string]string{"Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Version": "13",
		"Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==", "Origin": "http://" + evil}
	for _, c := range []struct {
		method, path, body string
		hdr                map[string]string
	}{
		{"GET", "/api/tables/t/rows", "", nil},
		{"POST", "/api/tables/t/rows", `{"v":"x"}`, map[string]string{"Content-Type": "application/json", "Origin": "http://" + evil}},
		{"GET", "/ws", "", ws},
		{"GET", "/", "", nil},
	} {
		if got := send(evil, c.method, c.path, c.body, c.hdr); got != 403 {
			t.Errorf("Host %s: %s %s = %d, want 403", evil, c.method, c.path, got)
		}
	}
	if n := testenv.SQLiteInt(t, db, "SELECT count(*) FROM t;"); n != 0 {
		t.Errorf("a rebinding write wrote %d rows", n)
	}
	for _, host := range []string{srv.Addr, "localhost", "app.example"} {
		if got := send(host, "GET", "/api/tables/t/rows", "", nil); got != 200 {
			t.Errorf("Host %s: %d, want 200", host, got)
		}
	}
}

// TestSecurityEnv: the access-control flags read SQLWS_* variables like every flag,
// and the HS256 secret itself comes from SQLWS_JWT_SECRET.
func TestSecurityEnv(t *testing.T) {
	db := testenv.NewDB(t, `CREATE TABLE t(id INTEGER PRIMARY KEY);`)
	missing := filepath.Join(t.TempDir(), "no-rules.json")
	t.Setenv("SQLWS_RULES", missing)
	// Without a secret, rules are refused for want of authentication…
	_, stderr, code := testenv.RunBinary(t, "serve", "--db", db, "--addr", "127.0.0.1:0")
	if code == 0 || !strings.Contains(stderr, "need authentication") {
		t.Errorf("SQLWS_RULES without a key: exit %d\n%s", code, stderr)
	}
	// …with SQLWS_JWT_SECRET, the rules file named by SQLWS_RULES is read (and missing).
	t.Setenv("SQLWS_JWT_SECRET", authSecret)
	_, stderr, code = testenv.RunBinary(t, "serve", "--db", db, "--addr", "127.0.0.1:0")
	if code == 0 || !strings.Contains(stderr, "no-rules.json") {
		t.Errorf("SQLWS_JWT_SECRET and SQLWS_RULES: exit %d\n%s", code, stderr)
	}
	// A short secret is refused, saying how long it must be.
	t.Setenv("SQLWS_JWT_SECRET", "short")
	_, stderr, code = testenv.RunBinary(t, "serve", "--db", db, "--addr", "127.0.0.1:0")
	if code == 0 || !strings.Contains(stderr, "at least 32") {
		t.Errorf("a short secret: exit %d\n%s", code, stderr)
	}
	// SQLWS_INSECURE is --insecure: the wildcard bind starts, with its warning.
	os.Unsetenv("SQLWS_JWT_SECRET") // t.Setenv restores both at the end
	os.Unsetenv("SQLWS_RULES")
	t.Setenv("SQLWS_INSECURE", "true")
	srv := testenv.StartServer(t, db, "--addr", "0.0.0.0:0")
	if !strings.Contains(srv.Stderr(), "INSECURE") {
		t.Errorf("SQLWS_INSECURE=true: no warning\n%s", srv.Stderr())
	}
}
