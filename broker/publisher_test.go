package broker_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/sqlws/sqlws/broker"
	"github.com/sqlws/sqlws/internal/natstest"
	"github.com/sqlws/sqlws/internal/testenv"
	"github.com/sqlws/sqlws/models"
)

const todos = `CREATE TABLE todos(id INTEGER PRIMARY KEY, title TEXT);`

// inserts is SQL inserting n rows into todos in one transaction.
func inserts(n int) string {
	return fmt.Sprintf(`WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM c WHERE i < %d)
INSERT INTO todos(title) SELECT 'row ' || i FROM c;`, n)
}

// TestPublisherStreamExistsAtStart: Setup creates the stream (first sequence the
// changelog's next seq, the database's stream id in its metadata) and the schema
// bucket before any change.
func TestPublisherStreamExistsAtStart(t *testing.T) {
	ns := natstest.Start(t)
	src := startSource(t, ns, "", todos, "s1", broker.PublisherOptions{})
	js := ns.JetStream(t)
	info := streamInfo(t, js, "s1")
	if info.State.FirstSeq != 1 || info.State.LastSeq != 0 || info.State.Msgs != 0 {
		t.Errorf("stream state before any change = %+v, want first 1, last 0, empty", info.State)
	}
	if got := info.Config.Metadata[broker.MetaStreamID]; got != src.d.Store.StreamID() {
		t.Errorf("stream metadata %s = %q, want %q", broker.MetaStreamID, got, src.d.Store.StreamID())
	}
	if want := "sqlws." + src.d.Store.StreamID() + ".>"; len(info.Config.Subjects) != 1 || info.Config.Subjects[0] != want {
		t.Errorf("subjects = %v, want [%s]", info.Config.Subjects, want)
	}
	kv, err := js.KeyValue(context.Background(), broker.SchemaBucket("s1"))
	if err != nil {
		t.Fatal(err)
	}
	e, err := kv.Get(context.Background(), "tables")
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Stream string
		Tables []models.Table
	}
	if err := json.Unmarshal(e.Value(), &doc); err != nil || doc.Stream != src.d.Store.StreamID() || len(doc.Tables) != 1 || doc.Tables[0].Name != "todos" {
		t.Errorf("schema bucket tables = %s (%v), want todos of stream %s", e.Value(), err, src.d.Store.StreamID())
	}
}

// TestPublisherOneMessagePerChange: every change becomes one message, at the stream
// sequence equal to its seq, with the record's bytes as sqlws encodes them, on the
// subject of its table; a table with an awkward name included.
func TestPublisherOneMessagePerChange(t *testing.T) {
	ns := natstest.Start(t)
	src := startSource(t, ns, "", todos+`CREATE TABLE "odd.name *>x"(k TEXT PRIMARY KEY, v BLOB);`, "s1", broker.PublisherOptions{})
	testenv.SQLite(t, src.path, inserts(700)+`
INSERT INTO "odd.name *>x" VALUES('a', x'00ff'), ('b', 1.5);
UPDATE todos SET title = 'x' WHERE id % 7 = 0;
DELETE FROM todos WHERE id % 11 = 0;`)
	head := src.head()
	src.waitPublished(head)
	js := ns.JetStream(t)
	info := streamInfo(t, js, "s1")
	if info.State.FirstSeq != 1 || int64(info.State.LastSeq) != head || int64(info.State.Msgs) != head {
		t.Fatalf("stream state = %+v, want 1..%d, %d messages", info.State, head, head)
	}
	want, _ := readDB(t, src.d, 0)
	got, gap := readAll(t, openSource(t, js, "s1"), 0)
	if gap {
		t.Fatal("gap in the stream")
	}
	sameRecords(t, got, want)
	s, _ := js.Stream(context.Background(), "s1")
	m, err := s.GetMsg(context.Background(), uint64(head-1))
	if err != nil {
		t.Fatal(err)
	}
	if wantSubj := "sqlws." + src.d.Store.StreamID() + ".todos"; m.Subject != wantSubj {
		t.Errorf("subject of seq %d = %q, want %q", head-1, m.Subject, wantSubj)
	}
	for _, r := range want {
		if r.Table != "todos" {
			m, _ := s.GetMsg(context.Background(), uint64(r.Seq))
			if wantSubj := "sqlws." + src.d.Store.StreamID() + ".odd%2Ename%20%2A%3Ex"; m.Subject != wantSubj {
				t.Errorf("subject of seq %d = %q, want %q", r.Seq, m.Subject, wantSubj)
			}
		}
	}
}

// TestPublisherResumes: a publisher stopped and started again (the source
// restarting), with changes written meanwhile, and one started on a database with
// history, publish every change once.
func TestPublisherResumes(t *testing.T) {
	ns := natstest.Start(t)
	path := testenv.NewDB(t, todos)
	src := startSource(t, ns, path, "", "s1", broker.PublisherOptions{})
	testenv.SQLite(t, path, inserts(300))
	src.waitPublished(300)
	src.stop()
	testenv.SQLite(t, path, inserts(200))
	src = startSource(t, ns, path, "", "s1", broker.PublisherOptions{})
	testenv.SQLite(t, path, inserts(100))
	src.waitPublished(600)
	js := ns.JetStream(t)
	info := streamInfo(t, js, "s1")
	if info.State.FirstSeq != 1 || info.State.LastSeq != 600 || info.State.Msgs != 600 {
		t.Fatalf("stream state = %+v, want 1..600", info.State)
	}
	want, _ := readDB(t, src.d, 0)
	got, _ := readAll(t, openSource(t, js, "s1"), 0)
	sameRecords(t, got, want)

	// A stream created for a database with history starts at its oldest change.
	testenv.SQLite(t, path, `DELETE FROM sqlws_changes WHERE seq <= 250;`)
	src.stop()
	if err := js.DeleteStream(context.Background(), "s1"); err != nil {
		t.Fatal(err)
	}
	src = startSource(t, ns, path, "", "s1", broker.PublisherOptions{})
	src.waitPublished(600)
	info = streamInfo(t, js, "s1")
	if info.State.FirstSeq != 251 || info.State.LastSeq != 600 {
		t.Fatalf("new stream on a database with history = %+v, want 251..600", info.State)
	}
}

// TestPublisherNATSRestart: NATS restarts (with its store) while changes are
// written: the publisher gets every change in once, by itself.
func TestPublisherNATSRestart(t *testing.T) {
	ns := natstest.Start(t)
	src := startSource(t, ns, "", todos, "s1", broker.PublisherOptions{})
	for i := range 6 {
		testenv.SQLite(t, src.path, inserts(200))
		if i == 2 {
			ns.Restart()
		}
	}
	ns.Restart()
	testenv.SQLite(t, src.path, inserts(200))
	src.waitPublished(1400)
	js := ns.JetStream(t)
	info := streamInfo(t, js, "s1")
	if info.State.FirstSeq != 1 || info.State.LastSeq != 1400 || info.State.Msgs != 1400 {
		t.Fatalf("stream state = %+v, want 1..1400", info.State)
	}
	want, _ := readDB(t, src.d, 0)
	got, _ := readAll(t, openSource(t, js, "s1"), 0)
	sameRecords(t, got, want)
}

// TestPublisherPrunedHole: changes pruned before they were published (retention while
// NATS was away): the stream restarts after them, and readers behind it find a gap.
func TestPublisherPrunedHole(t *testing.T) {
	ns := natstest.Start(t)
	path := testenv.NewDB(t, todos)
	src := startSource(t, ns, path, "", "s1", broker.PublisherOptions{})
	testenv.SQLite(t, path, inserts(100))
	src.waitPublished(100)
	src.stop()
	testenv.SQLite(t, path, inserts(100)+`DELETE FROM sqlws_changes WHERE seq <= 150;`)
	src = startSource(t, ns, path, "", "s1", broker.PublisherOptions{})
	testenv.SQLite(t, path, inserts(10))
	src.waitPublished(210)
	js := ns.JetStream(t)
	info := streamInfo(t, js, "s1")
	if info.State.FirstSeq != 151 || info.State.LastSeq != 210 || info.State.Msgs != 60 {
		t.Fatalf("stream state = %+v, want 151..210", info.State)
	}
	rd := openSource(t, js, "s1")
	if got, gap := readAll(t, rd, 99); len(got) != 0 || !gap {
		t.Errorf("read after 99: %d records, gap %v; want none and a gap", len(got), gap)
	}
	got, gap := readAll(t, rd, 150)
	want, _ := readDB(t, src.d, 150)
	if gap {
		t.Error("gap after 150")
	}
	sameRecords(t, got, want)
	if p, _ := rd.Position(context.Background()); p.Oldest != 151 || p.Head != 210 {
		t.Errorf("position = %+v, want oldest 151, head 210", p)
	}
}

// TestPublisherMiddleHole: rows deleted by hand from the middle of the changelog
// before they were published become tombstones: readers get what came before, then a
// gap, as from the source; what follows is published.
func TestPublisherMiddleHole(t *testing.T) {
	ns := natstest.Start(t)
	path := testenv.NewDB(t, todos)
	src := startSource(t, ns, path, "", "s1", broker.PublisherOptions{})
	src.stop()
	testenv.SQLite(t, path, inserts(100)+`DELETE FROM sqlws_changes WHERE seq BETWEEN 40 AND 49;`)
	src = startSource(t, ns, path, "", "s1", broker.PublisherOptions{})
	src.waitPublished(100)
	js := ns.JetStream(t)
	info := streamInfo(t, js, "s1")
	if info.State.FirstSeq != 1 || info.State.LastSeq != 100 || info.State.Msgs != 100 {
		t.Fatalf("stream state = %+v, want 1..100 (tombstones included)", info.State)
	}
	rd := openSource(t, js, "s1")
	got, gap := readAll(t, rd, 0)
	want, wantGap := readDB(t, src.d, 0)
	if !gap || !wantGap {
		t.Errorf("gap from the edge %v, from the source %v; want both", gap, wantGap)
	}
	sameRecords(t, got, want)
	got, _ = readAll(t, rd, 49)
	want, _ = readDB(t, src.d, 49)
	sameRecords(t, got, want)
}

// TestPublisherTooLarge: a change larger than NATS's max_payload cannot cross; it
// becomes a tombstone (readers get a gap, never a silent skip) and the changes after
// it are published.
func TestPublisherTooLarge(t *testing.T) {
	ns := natstest.StartWith(t, func(o *server.Options) { o.MaxPayload = 64 << 10 })
	src := startSource(t, ns, "", todos, "s1", broker.PublisherOptions{})
	testenv.SQLite(t, src.path, `INSERT INTO todos(title) VALUES('small');
INSERT INTO todos(title) VALUES(printf('%.100000c', 'x'));
INSERT INTO todos(title) VALUES('after');`)
	src.waitPublished(3)
	rd := openSource(t, ns.JetStream(t), "s1")
	got, gap := readAll(t, rd, 0)
	if len(got) != 1 || got[0].Seq != 1 || !gap {
		t.Fatalf("read from 0: %d records, gap %v; want seq 1 then a gap", len(got), gap)
	}
	got, gap = readAll(t, rd, 2)
	if len(got) != 1 || got[0].Seq != 3 || gap {
		t.Fatalf("read from 2: %d records, gap %v; want seq 3", len(got), gap)
	}
}

// TestPublisherForeignStream: a stream of that name holding another database's
// changes is refused, never written to.
func TestPublisherForeignStream(t *testing.T) {
	ns := natstest.Start(t)
	a := startSource(t, ns, "", todos, "shared", broker.PublisherOptions{})
	a.stop()
	path := testenv.NewDB(t, todos)
	b := startSourceErr(t, ns, path, "shared")
	var fe *broker.ForeignStreamError
	if !errors.As(b, &fe) || !strings.Contains(b.Error(), "another database") {
		t.Fatalf("Setup on another database's stream: %v, want a ForeignStreamError", b)
	}
}

// startSourceErr runs only a publisher's Setup on path, for its error.
func startSourceErr(t *testing.T, ns *natstest.Server, path, stream string) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	d := openDB(t, path)
	nc := ns.Connect(t)
	pub, err := broker.NewPublisher(nc, d.Log, broker.PublisherOptions{Stream: stream, Tables: d.Schema.Tables})
	if err != nil {
		t.Fatal(err)
	}
	return pub.Setup(ctx)
}

// TestPublisherRestoredDatabase: the database goes back to an older copy (a backup
// restored) while the stream holds later changes: the publisher starts the stream
// afresh from the database, so that no seq carries two different changes.
func TestPublisherRestoredDatabase(t *testing.T) {
	ns := natstest.Start(t)
	path := testenv.NewDB(t, todos)
	backup := path + ".bak"
	src := startSource(t, ns, path, "", "s1", broker.PublisherOptions{})
	testenv.SQLite(t, path, inserts(50))
	src.waitPublished(50)
	testenv.SQLite(t, path, ".backup "+testenv.QuoteLiteral(backup))
	testenv.SQLite(t, path, inserts(50))
	src.waitPublished(100)
	src.stop()
	testenv.SQLite(t, path, ".restore "+testenv.QuoteLiteral(backup))
	src = startSource(t, ns, path, "", "s1", broker.PublisherOptions{})
	testenv.SQLite(t, path, `INSERT INTO todos(title) VALUES('new timeline');`)
	src.waitPublished(51)
	js := ns.JetStream(t)
	info := streamInfo(t, js, "s1")
	if info.State.LastSeq != 51 || info.State.Msgs != 51 {
		t.Fatalf("stream after the restore = %+v, want 1..51", info.State)
	}
	got, _ := readAll(t, openSource(t, js, "s1"), 0)
	want, _ := readDB(t, src.d, 0)
	sameRecords(t, got, want)
}

// TestEscapeToken: table names become subject tokens that NATS accepts and that
// decode back to the name, and nothing else decodes.
func TestEscapeToken(t *testing.T) {
	names := []string{"todos", "", "a.b", "*", ">", "a b", "tab\there", "line\nbreak", "100%", "%", "%%", "%2E",
		"ünïcode", "日本", "x\x00y", "\xff\xfe", "-_-", "Mixed_Case-9", strings.Repeat(".", 40)}
	seen := map[string]string{}
	for _, n := range names {
		tok := broker.EscapeToken(n)
		if tok == "" || strings.ContainsAny(tok, ".*> \t\r\n") {
			t.Errorf("EscapeToken(%q) = %q: not a valid subject token", n, tok)
		}
		for _, c := range []byte(tok) {
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-' || c == '%') {
				t.Errorf("EscapeToken(%q) = %q holds %q", n, tok, c)
			}
		}
		back, err := broker.UnescapeToken(tok)
		if err != nil || back != n {
			t.Errorf("UnescapeToken(EscapeToken(%q) = %q) = %q, %v", n, tok, back, err)
		}
		if o, dup := seen[tok]; dup {
			t.Errorf("%q and %q both escape to %q", o, n, tok)
		}
		seen[tok] = n
	}
	for _, bad := range []string{"", "a%", "%4", "%zz", "%2e", "%41", "a.b", "a b", "%gap", "x*"} {
		if got, err := broker.UnescapeToken(bad); err == nil {
			t.Errorf("UnescapeToken(%q) = %q, want an error", bad, got)
		}
	}
}

// TestPublisherTwoSources: two servers on one database file (which sqlws allows)
// both publish: JetStream still holds every seq once, in order.
func TestPublisherTwoSources(t *testing.T) {
	ns := natstest.Start(t)
	path := testenv.NewDB(t, todos)
	a := startSource(t, ns, path, "", "s1", broker.PublisherOptions{Batch: 50})
	b := startSource(t, ns, path, "", "s1", broker.PublisherOptions{Batch: 70})
	for range 5 {
		testenv.SQLite(t, path, inserts(300))
	}
	a.waitPublished(1500)
	b.waitPublished(1500)
	js := ns.JetStream(t)
	info := streamInfo(t, js, "s1")
	if info.State.FirstSeq != 1 || info.State.LastSeq != 1500 || info.State.Msgs != 1500 {
		t.Fatalf("stream state = %+v, want 1..1500", info.State)
	}
	got, _ := readAll(t, openSource(t, js, "s1"), 0)
	want, _ := readDB(t, a.d, 0)
	sameRecords(t, got, want)
}
