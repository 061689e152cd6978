package e2e

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/sqlws/sqlws/internal/testenv"
	"github.com/sqlws/sqlws/models"
	"github.com/sqlws/sqlws/protocol"
)

// TestHandDeletedSeqIsNotSkipped: a change deleted from the changelog by hand is a
// hole that no reader steps over silently: the WebSocket delivers what comes before
// it and then resets (pruned), /api/changes answers what comes before it and then
// 410, and a client already past the hole resumes normally.
func TestHandDeletedSeqIsNotSkipped(t *testing.T) {
	t.Parallel()
	db, srv := start(t, `CREATE TABLE t(id INTEGER PRIMARY KEY, v INT);`)
	testenv.SQLite(t, db, inserts("t", "v", 1, 10))
	testenv.WaitFor(t, timeout, "10 changes", func() bool { return len(cliSeqs(t, db)) == 10 })
	srv.Stop()
	testenv.SQLite(t, db, "DELETE FROM sqlws_changes WHERE seq = 7;")
	srv = srv.Restart(t)

	c := srv.Dial(t)
	c.Subscribe("a", nil, testenv.Int64(0), "")
	got := c.WaitChanges("a", 6, timeout)
	if s := seqs(got); len(s) != 6 || s[0] != 1 || s[5] != 6 {
		t.Fatalf("before the hole: seqs %v, want 1..6", s)
	}
	if m := c.Next(timeout); m.Type != protocol.TypeReset || m.Reason != protocol.ResetPruned || m.ID() != "a" {
		t.Fatalf("at the hole: got %s, want reset pruned for a", m.Raw)
	}
	// A client that already had 7 is not affected.
	c.Subscribe("b", nil, testenv.Int64(7), "")
	if s := seqs(c.WaitChanges("b", 3, timeout)); s[0] != 8 || s[2] != 10 {
		t.Fatalf("after the hole: seqs %v, want 8..10", s)
	}

	m := restOK(t, srv, http.StatusOK, "GET", "/api/changes?since=0", "")
	var changes []models.Change
	if err := json.Unmarshal(m["changes"], &changes); err != nil || len(changes) != 6 || changes[5].Seq != 6 {
		t.Fatalf("/api/changes?since=0: %s (%v), want 1..6", m["changes"], err)
	}
	r := restDo(t, srv, "GET", "/api/changes?since=6", "", "")
	if r.status != http.StatusGone || !jsonHas(r.body, `"code":"pruned"`) {
		t.Fatalf("/api/changes?since=6: %d %s, want 410 pruned", r.status, r.body)
	}
}

func jsonHas(body []byte, s string) bool {
	return json.Valid(body) && strings.Contains(string(body), s)
}

// TestDropTableEndsItsSubscriptions: a subscription naming a dropped table receives
// the table's changes up to the drop, then error table_dropped, and never a change of
// a table created later under the same name; subscriptions to every table go on.
// The same holds replayed with since, and after a restart.
func TestDropTableEndsItsSubscriptions(t *testing.T) {
	t.Parallel()
	db, srv := start(t, `CREATE TABLE t(id INTEGER PRIMARY KEY, v INT); CREATE TABLE u(id INTEGER PRIMARY KEY, v INT);`)
	c := srv.Dial(t)
	c.Subscribe("only-t", []string{"t"}, nil, "")
	c.Subscribe("t-and-u", []string{"t", "u"}, nil, "")
	c.Subscribe("all", nil, nil, "")

	testenv.SQLite(t, db, "INSERT INTO t(v) VALUES (1), (2);")
	// Dropped and created again in one go: a different table under the same name.
	testenv.SQLite(t, db, "DROP TABLE t; CREATE TABLE t(k TEXT PRIMARY KEY, w INT);")
	ended := map[string]bool{}
	for _, id := range []string{"only-t", "t-and-u"} {
		if got := c.WaitChanges(id, 2, timeout); got[1].Table != "t" || intField(t, got[1], "v") != 2 {
			t.Fatalf("%s: before the drop: %+v", id, got)
		}
		m := c.Next(timeout)
		if m.Type != protocol.TypeError || m.Code != "table_dropped" {
			t.Fatalf("after the drop: %s, want error table_dropped", m.Raw)
		}
		ended[m.ID()] = true
	}
	if !ended["only-t"] || !ended["t-and-u"] {
		t.Fatalf("table_dropped for %v, want only-t and t-and-u", ended)
	}
	testenv.WaitTriggers(t, db, "t")
	testenv.SQLite(t, db, "INSERT INTO t(k, w) VALUES ('new', 1); INSERT INTO u(v) VALUES (9);")
	all := c.WaitChanges("all", 4, timeout)
	if all[2].Table != "t" || all[3].Table != "u" {
		t.Fatalf("all tables: %+v", all)
	}
	jsonEq(t, "the new table's key", all[2].PK, `{"k":"new"}`)
	if extra := c.Take("only-t"); len(extra) > 0 {
		t.Fatalf("an ended subscription received %d more changes", len(extra))
	}

	check := func(c *testenv.Client, what string) {
		t.Helper()
		c.Subscribe("replay", []string{"t"}, testenv.Int64(0), "")
		if got := c.WaitChanges("replay", 2, timeout); intField(t, got[1], "v") != 2 {
			t.Fatalf("%s: replay before the drop: %+v", what, got)
		}
		if m := c.Next(timeout); m.Type != protocol.TypeError || m.Code != "table_dropped" {
			t.Fatalf("%s: replay: %s, want error table_dropped", what, m.Raw)
		}
		// Following the new table from the drop's position on (as a client that loaded
		// the new table over REST at that seq would) works.
		c.Subscribe("new", []string{"t"}, testenv.Int64(all[1].Seq), "")
		if got := c.WaitChanges("new", 1, timeout); got[0].Table != "t" || string(field(t, got[0], "k")) != `"new"` {
			t.Fatalf("%s: the new table: %+v", what, got)
		}
	}
	check(srv.Dial(t), "live server")
	srv = srv.Restart(t)
	check(srv.Dial(t), "after a restart")
}
