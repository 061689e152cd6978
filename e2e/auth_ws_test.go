package e2e

import (
	"fmt"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/golang-jwt/jwt/v5"

	"github.com/sqlws/sqlws/internal/testenv"
	"github.com/sqlws/sqlws/models"
	"github.com/sqlws/sqlws/protocol"
)

// TestAuthWebSocket: the rules on the stream — a closed table refused with forbidden,
// a row rule ANDed with the client's where with moves in and out (live and replayed
// with since), never an image the rule hides, claims as values only, and a rules
// reload ending a subscription that lost its access.
func TestAuthWebSocket(t *testing.T) {
	t.Parallel()
	rulesFile := filepath.Join(t.TempDir(), "rules.json")
	writeFile(t, rulesFile, `{"tables": {
  "todos":   {"read": "owner=eq.{auth.sub}", "write": "owner=eq.{auth.sub}"},
  "notices": {"read": true},
  "audit":   {"read": false}
}, "default": {"read": false, "write": false}}`)
	db, srv := start(t, `
CREATE TABLE todos(id INTEGER PRIMARY KEY, owner TEXT, title TEXT, done INTEGER DEFAULT 0);
CREATE TABLE notices(id INTEGER PRIMARY KEY, body TEXT);
CREATE TABLE audit(id INTEGER PRIMARY KEY, what TEXT);`,
		"--jwt-secret-file", secretFile(t), "--rules", rulesFile)
	alice := hsToken(t, jwt.MapClaims{"sub": "alice"})
	c := testenv.Dial(t, srv.WSURL()+"?access_token="+alice)
	for _, tc := range []struct {
		id     string
		tables []string
		code   string
	}{
		{"audit", []string{"audit"}, "forbidden"},
		{"all", nil, "forbidden"},
		{"two", []string{"todos", "notices"}, "forbidden"},
		{"other", []string{"nope"}, "forbidden"}, // default read false: the name reveals nothing
	} {
		if r := c.SubscribeReply(tc.id, tc.tables, nil, ""); r.Type != protocol.TypeError || r.Code != tc.code {
			t.Errorf("subscribe %s: %s, want error %s", tc.id, r.Raw, tc.code)
		}
	}
	if r := subscribeFiltered(t, c, "mine", []string{"todos"}, "done=eq.0", "id,title", nil); r.Type != protocol.TypeSubscribed {
		t.Fatalf("alice's todos: %s", r.Raw)
	}
	c.Subscribe("notices", []string{"notices"}, nil, "")
	// Claims are values: an injected sub, or none, sees nothing.
	hostile := testenv.Dial(t, srv.WSURL()+"?access_token="+hsToken(t, jwt.MapClaims{"sub": "x') OR ('1'='1"}))
	hostile.Subscribe("h", []string{"todos"}, nil, "")
	nosub := testenv.Dial(t, srv.WSURL()+"?access_token="+hsToken(t, jwt.MapClaims{"role": "user"}))
	nosub.Subscribe("n", []string{"todos"}, nil, "")

	testenv.SQLite(t, db, `
INSERT INTO todos(owner, title) VALUES('alice', 'a1');    -- 1 visible
INSERT INTO todos(owner, title) VALUES('bob', 'b1');      -- 2 hidden
UPDATE todos SET owner = 'alice' WHERE id = 2;            -- 3 moves in
UPDATE todos SET owner = 'bob', title = 'x' WHERE id = 1; -- 4 moves out: new null, never bob's image
DELETE FROM todos WHERE id = 1;                           -- 5 hidden (bob's)
INSERT INTO audit(what) VALUES('secret');                 -- 6
INSERT INTO notices(body) VALUES('hello');                -- 7
`)
	check := func(what string, got []models.Change) {
		t.Helper()
		if fmt.Sprint(seqs(got)) != "[1 3 4]" {
			t.Fatalf("%s: seqs %v, want [1 3 4]", what, seqs(got))
		}
		checkChange(t, got[0], "todos", "insert", `{"id":1}`, "null", `{"id":1,"title":"a1"}`)
		checkChange(t, got[1], "todos", "update", `{"id":2}`, "null", `{"id":2,"title":"b1"}`)
		checkMoved(t, got[1], "in")
		checkChange(t, got[2], "todos", "update", `{"id":1}`, `{"id":1,"title":"a1"}`, "null")
		checkMoved(t, got[2], "out")
	}
	check("live", c.WaitChanges("mine", 3, timeout))
	if got := c.WaitChanges("notices", 1, timeout); got[0].Seq != 7 {
		t.Errorf("notices: seq %d, want 7", got[0].Seq)
	}
	replay := testenv.Dial(t, srv.WSURL()+"?access_token="+alice)
	if r := subscribeFiltered(t, replay, "r", []string{"todos"}, "done=eq.0", "id,title", testenv.Int64(0)); r.Type != protocol.TypeSubscribed {
		t.Fatalf("replay: %s", r.Raw)
	}
	check("replayed", replay.WaitChanges("r", 3, timeout))

	// A reload that closes notices ends alice's notices subscription at its next
	// change, with forbidden and its id; her todos go on.
	writeFile(t, rulesFile, `{"tables": {"todos": {"read": "owner=eq.{auth.sub}"}}, "default": {"read": false}}`)
	syscall.Kill(srv.PID(), syscall.SIGHUP)
	testenv.WaitFor(t, timeout, "the rules reloaded", func() bool { return strings.Contains(srv.Stderr(), "rules reloaded") })
	testenv.SQLite(t, db, `INSERT INTO notices(body) VALUES('after'); INSERT INTO todos(owner, title) VALUES('alice', 'a3');`)
	if m := c.Next(timeout); m.Type != protocol.TypeError || m.Code != "forbidden" || m.ID() != "notices" {
		t.Fatalf("after the reload: %s, want error forbidden for notices", m.Raw)
	}
	// Her todos subscription was granted under a rule that is the same after the
	// reload: it keeps going.
	if got := c.WaitChanges("mine", 1, timeout); got[0].Seq != 9 {
		t.Errorf("alice's todos after the reload: seq %d, want 9", got[0].Seq)
	}
	if extra := c.Take("notices"); len(extra) > 0 {
		t.Errorf("notices after access ended: %v", seqs(extra))
	}
	// An admin's token replaced in place by one that is no admin: the admin's
	// subscription to every table is checked again and ended, not left reading all.
	ops := testenv.Dial(t, srv.WSURL()+"?access_token="+hsToken(t, jwt.MapClaims{"sub": "ops", "role": "admin"}))
	ops.Subscribe("everything", nil, nil, "")
	ops.SendJSON(map[string]string{"type": "auth", "token": hsToken(t, jwt.MapClaims{"sub": "ops"})})
	if m := ops.Next(timeout); m.Type != protocol.TypeAuthed {
		t.Fatalf("auth: %s", m.Raw)
	}
	testenv.SQLite(t, db, `INSERT INTO todos(owner, title) VALUES('ops', 'o1');`)
	if m := ops.Next(timeout); m.Type != protocol.TypeError || m.Code != "forbidden" || m.ID() != "everything" {
		t.Fatalf("after the admin token was replaced: %s, want error forbidden for everything", m.Raw)
	}
	if got := ops.Take("everything"); len(got) > 0 {
		t.Errorf("records after the admin token was replaced: %v", seqs(got))
	}
	for _, cl := range []*testenv.Client{hostile, nosub} {
		for _, id := range []string{"h", "n"} {
			if got := cl.Take(id); len(got) > 0 {
				t.Errorf("%s saw %v", id, seqs(got))
			}
		}
	}
}

// TestAuthTokenExpiry: a connection whose token expires gets error token_expired and
// close 4001; one that sends auth with a later token for the same subject before
// then is answered authed and keeps streaming; a token for another subject is
// refused.
func TestAuthTokenExpiry(t *testing.T) {
	t.Parallel()
	db, srv := start(t, `CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT);`, "--jwt-secret-file", secretFile(t))
	exp := time.Now().Add(3 * time.Second)
	short := hsToken(t, jwt.MapClaims{"sub": "u", "exp": exp.Unix()})
	expiring := testenv.Dial(t, srv.WSURL()+"?access_token="+short)
	expiring.Subscribe("a", []string{"t"}, nil, "")
	refreshed := testenv.Dial(t, srv.WSURL()+"?access_token="+short)
	refreshed.Subscribe("a", []string{"t"}, nil, "")

	refreshed.SendJSON(map[string]string{"type": "auth", "token": hsToken(t, jwt.MapClaims{"sub": "other"})})
	if m := refreshed.Next(timeout); m.Type != protocol.TypeError || m.Code != "forbidden" {
		t.Fatalf("auth for another subject: %s, want forbidden", m.Raw)
	}
	later := time.Now().Add(time.Hour).Unix()
	refreshed.SendJSON(map[string]any{"type": "auth", "token": hsToken(t, jwt.MapClaims{"sub": "u", "exp": later})})
	if m := refreshed.Next(timeout); m.Type != protocol.TypeAuthed || !strings.Contains(string(m.Raw), fmt.Sprintf(`"exp":%d`, later)) {
		t.Fatalf("auth: %s, want authed with exp %d", m.Raw, later)
	}

	if m := expiring.Next(timeout); m.Type != protocol.TypeError || m.Code != "token_expired" || m.ID() != "null" {
		t.Fatalf("at expiry: %s, want error token_expired", m.Raw)
	}
	if code, _ := expiring.WaitClosed(timeout); code != websocket.StatusCode(4001) {
		t.Fatalf("close code %d, want 4001", code)
	}
	// The refreshed connection outlives the first token and still streams.
	testenv.WaitFor(t, timeout, "the first token's expiry to pass", func() bool { return time.Now().After(exp.Add(time.Second)) })
	testenv.SQLite(t, db, `INSERT INTO t(v) VALUES('after');`)
	if got := refreshed.WaitChanges("a", 1, timeout); got[0].Seq != 1 {
		t.Errorf("after the first token's expiry: %v", seqs(got))
	}
	if closed, _ := refreshed.Closed(); closed {
		t.Error("the refreshed connection was closed")
	}
}

// TestWebSocketLimits: subscriptions per connection and client messages per second,
// each tripping with its error code, and a client that keeps flooding closed with
// 1008; the server goes on serving others.
func TestWebSocketLimits(t *testing.T) {
	t.Parallel()
	_, srv := start(t, `CREATE TABLE t(id INTEGER PRIMARY KEY);`, "--max-subscriptions", "2", "--message-rate", "1", "--message-burst", "3")
	c := srv.Dial(t)
	c.Subscribe("1", []string{"t"}, nil, "")
	c.Subscribe("2", []string{"t"}, nil, "")
	if r := c.SubscribeReply("3", []string{"t"}, nil, ""); r.Type != protocol.TypeError || r.Code != "too_many_subscriptions" {
		t.Fatalf("third subscription: %s, want too_many_subscriptions", r.Raw)
	}
	// The burst is spent: the next message is refused, then flooding closes.
	if r := c.SubscribeReply("4", []string{"t"}, nil, ""); r.Type != protocol.TypeError || r.Code != "rate_limited" {
		t.Fatalf("over the rate: %s, want rate_limited", r.Raw)
	}
	for i := range 10 {
		c.Send(fmt.Sprintf(`{"type":"unsubscribe","id":"x%d"}`, i))
	}
	if code, _ := c.WaitClosed(timeout); code != websocket.StatusPolicyViolation {
		t.Fatalf("flooding client closed with %d, want 1008", code)
	}
	other := srv.Dial(t)
	other.Subscribe("ok", []string{"t"}, nil, "")
}
