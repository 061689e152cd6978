package e2e

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/coder/websocket"
	"github.com/golang-jwt/jwt/v5"

	"github.com/sqlws/sqlws/broker"
	"github.com/sqlws/sqlws/internal/natstest"
	"github.com/sqlws/sqlws/internal/testenv"
)

// TestEdgeAuth: `sqlws edge` applies serve's access rules: without authentication
// it refuses a non-loopback --addr (before connecting to NATS), and with
// --jwt-secret-file it answers 401 to /ws and to proxied REST without a valid token,
// while a valid one streams a change written by the sqlite3 CLI.
func TestEdgeAuth(t *testing.T) {
	_, stderr, code := testenv.RunBinary(t, "edge", "--nats", "nats://127.0.0.1:1", "--addr", "0.0.0.0:0")
	if code == 0 || !strings.Contains(stderr, "without authentication") || !strings.Contains(stderr, "--jwt-secret-file") || !strings.Contains(stderr, "--insecure") {
		t.Errorf("edge --addr 0.0.0.0:0 without auth: exit %d\n%s", code, stderr)
	}

	secret := secretFile(t)
	rulesFile := filepath.Join(t.TempDir(), "rules.json")
	writeFile(t, rulesFile, `{"tables":{"t":{"read":true,"write":true},"mine":{"read":"owner=eq.{auth.sub}"}}}`)
	c := &cluster{ns: natstest.Start(t), db: testenv.NewDB(t, `CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT);
CREATE TABLE mine(id INTEGER PRIMARY KEY, owner TEXT, v TEXT);`), stream: broker.DefaultStream}
	c.srcArg = []string{"--publish", c.ns.URL, "--jwt-secret-file", secret, "--rules", rulesFile}
	c.src = testenv.StartServer(t, c.db, c.srcArg...)
	e := testenv.StartEdge(t, c.ns.URL, "--nats-stream", c.stream, "--jwt-secret-file", secret, "--rules", rulesFile, "--source", c.src.URL)
	e.WaitReady(t, timeout)

	good := hsToken(t, jwt.MapClaims{"sub": "alice"})
	wrongKey, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"sub": "alice", "exp": 4102444800}).SignedString([]byte("another-secret-another-secret-0123456"))
	if err != nil {
		t.Fatal(err)
	}
	for _, tok := range []string{"", wrongKey} {
		for _, path := range []string{"/ws", "/api/tables", "/api/tables/t/rows"} {
			r := authDo(t, e.URL, tok, "GET", path, "")
			expectStatus(t, r, 401, "unauthorized", "edge "+path)
			if !strings.HasPrefix(r.header.Get("WWW-Authenticate"), "Bearer") {
				t.Errorf("edge %s: WWW-Authenticate %q", path, r.header.Get("WWW-Authenticate"))
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		_, resp, err := websocket.Dial(ctx, e.WSURL()+"?access_token="+tok, nil)
		cancel()
		if err == nil || resp == nil || resp.StatusCode != 401 {
			t.Errorf("edge WebSocket with token %q: %v, %v; want 401 before the upgrade", tok, err, resp)
		}
	}
	if strings.Contains(e.Stderr(), wrongKey) {
		t.Errorf("the edge logged a token")
	}
	expectStatus(t, authDo(t, e.URL, "", "GET", "/healthz", ""), 200, "", "edge /healthz without a token")
	expectStatus(t, authDo(t, e.URL, good, "GET", "/api/tables/t/rows", ""), 200, "", "edge REST with a token")

	cl := testenv.Dial(t, e.WSURL()+"?access_token="+good)
	cl.Subscribe("a", []string{"t"}, nil, "")
	testenv.SQLite(t, c.db, `INSERT INTO t(v) VALUES('through the edge');`)
	if got := cl.WaitChanges("a", 1, timeout); !strings.Contains(string(got[0].New), "through the edge") {
		t.Fatalf("change through the edge: %+v", got[0])
	}

	// The edge applies the same row rules: alice's stream of mine carries her rows
	// only, bob's insert before hers never arrives.
	cl.Subscribe("m", []string{"mine"}, nil, "")
	testenv.SQLite(t, c.db, `INSERT INTO mine(owner, v) VALUES ('bob', 'not for alice'); INSERT INTO mine(owner, v) VALUES ('alice', 'hers');`)
	got := cl.WaitChanges("m", 1, timeout)
	if !strings.Contains(string(got[0].New), "hers") {
		t.Fatalf("alice's first change of mine through the edge: %s", got[0].New)
	}
	testenv.SQLite(t, c.db, `INSERT INTO t(v) VALUES ('marker');`)
	cl.WaitChanges("a", 1, timeout)
	if more := cl.Take("m"); len(more) != 0 {
		t.Errorf("more changes of mine through the edge: %+v", more)
	}
}
