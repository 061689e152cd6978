package e2e

import (
	"database/sql"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
	_ "modernc.org/sqlite"

	"github.com/sqlws/sqlws/internal/testenv"
	"github.com/sqlws/sqlws/models"
)

// TestResume: a client that reconnects with since gets exactly what it missed —
// contiguous, nothing it already had, nothing extra.
func TestResume(t *testing.T) {
	t.Parallel()
	db, srv := start(t, `CREATE TABLE items(id INTEGER PRIMARY KEY, n INT);`)
	c1 := srv.Dial(t)
	c1.Subscribe("a", nil, testenv.Int64(0), "")
	testenv.SQLite(t, db, inserts("items", "n", 1, 10))
	first := c1.WaitChanges("a", 10, timeout)
	testenv.AssertContiguous(t, first, 1)
	last := first[len(first)-1].Seq
	c1.Close()

	testenv.SQLite(t, db, inserts("items", "n", 11, 50))

	c2 := srv.Dial(t)
	if c2.Hello.Head != last+50 || c2.Hello.Stream != c1.Hello.Stream {
		t.Errorf("hello after 60 writes = %+v, want head %d and stream %q", c2.Hello, last+50, c1.Hello.Stream)
	}
	sub := c2.Subscribe("a", nil, &last, c1.Hello.Stream)
	if sub.Head != last+50 {
		t.Errorf("subscribed.head = %d, want %d", sub.Head, last+50)
	}
	missed := c2.WaitChanges("a", 50, timeout)
	testenv.AssertContiguous(t, missed, last+1)
	for i, ch := range missed {
		if ch.Op != "insert" || intField(t, ch, "n") != int64(11+i) {
			t.Fatalf("resumed change %d = %+v, want insert of n=%d", i, ch, 11+i)
		}
	}
	expectMarker(t, c2, "a", db, "items", "n", last+51)
}

// writer inserts rows with the CLI, one process and one transaction per row, until
// stopped.
type writer struct {
	n    atomic.Int64
	stop chan struct{}
	done chan struct{}
	err  error
}

func startWriter(db, table, col string) *writer {
	w := &writer{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(w.done)
		for i := 1; ; i++ {
			select {
			case <-w.stop:
				return
			default:
			}
			if _, err := testenv.RunSQLite(db, fmt.Sprintf("INSERT INTO %s(%s) VALUES(%d);", table, col, i)); err != nil {
				w.err = err
				return
			}
			w.n.Store(int64(i))
		}
	}()
	return w
}

// finish stops the writer and returns how many rows it wrote.
func (w *writer) finish(t *testing.T) int64 {
	t.Helper()
	select {
	case <-w.stop:
	default:
		close(w.stop)
	}
	select {
	case <-w.done:
	case <-time.After(time.Minute):
		t.Fatal("writer did not stop")
	}
	if w.err != nil {
		t.Fatal(w.err)
	}
	return w.n.Load()
}

func (w *writer) waitCount(t *testing.T, n int64) {
	t.Helper()
	testenv.WaitFor(t, 30*time.Second, fmt.Sprintf("writer to reach %d rows", n), func() bool {
		select {
		case <-w.done:
			t.Fatalf("writer stopped: %v", w.err)
		default:
		}
		return w.n.Load() >= n
	})
}

// TestCrashResume: kill -9 the server while a CLI writer runs, keep writing while it
// is down, restart and resume: no gap, no duplicate, exactly the changelog's rows.
func TestCrashResume(t *testing.T) {
	t.Parallel()
	db, srv := start(t, `CREATE TABLE items(id INTEGER PRIMARY KEY, n INT);`)
	c := srv.Dial(t)
	stream := c.Hello.Stream
	c.Subscribe("a", nil, testenv.Int64(0), "")
	w := startWriter(db, "items", "n")
	t.Cleanup(func() {
		select {
		case <-w.stop:
		default:
			close(w.stop)
		}
		<-w.done
	})

	got := c.WaitChanges("a", 30, timeout)
	srv.Kill()
	if code, err := c.WaitClosed(timeout); code == websocket.StatusGoingAway {
		t.Fatalf("connection closed with 1001 after SIGKILL? (%v)", err)
	}
	got = append(got, c.Take("a")...)
	testenv.AssertContiguous(t, got, 1)
	last := got[len(got)-1].Seq

	// Keep writing while the server is down.
	w.waitCount(t, w.n.Load()+30)

	srv2 := srv.Restart(t)
	c2 := srv2.Dial(t)
	if c2.Hello.Stream != stream {
		t.Errorf("stream changed across a crash: %q → %q", stream, c2.Hello.Stream)
	}
	c2.Subscribe("a", nil, &last, stream)
	more := c2.WaitChanges("a", 40, timeout) // the downtime writes and some live ones
	total := w.finish(t)
	head := testenv.SQLiteInt(t, db, "SELECT max(seq) FROM sqlws_changes;")
	if more[len(more)-1].Seq < head {
		more = append(more, c2.WaitSeq("a", head, timeout)...)
	}
	all := append(got, more...)
	testenv.AssertContiguous(t, all, 1)
	if want := cliSeqs(t, db); !slices.Equal(seqs(all), want) {
		t.Fatalf("received seqs %v…(%d) differ from the changelog's %v…(%d)",
			seqs(all)[:min(5, len(all))], len(all), want[:min(5, len(want))], len(want))
	}
	if int64(len(all)) != total {
		t.Fatalf("received %d changes for %d CLI inserts", len(all), total)
	}
	for i, ch := range all {
		if ch.Op != "insert" || intField(t, ch, "n") != int64(i+1) {
			t.Fatalf("change %d = %+v, want insert of n=%d", i, ch, i+1)
		}
	}
	expectMarker(t, c2, "a", db, "items", "n", head+1)
}

// TestConcurrentWriters: four sqlite3 processes and an in-process Go connection
// write at once; every subscriber sees every change, contiguous and in order.
func TestConcurrentWriters(t *testing.T) {
	t.Parallel()
	db, srv := start(t, `CREATE TABLE w(id INTEGER PRIMARY KEY, src TEXT, i INT);`)
	clients := []*testenv.Client{srv.Dial(t), srv.Dial(t), srv.Dial(t)}
	for k, c := range clients {
		// One live subscriber, one from since 0, one filtered to the table.
		switch k {
		case 0:
			c.Subscribe("s", nil, nil, "")
		case 1:
			c.Subscribe("s", nil, testenv.Int64(0), "")
		case 2:
			c.Subscribe("s", []string{"w"}, nil, "")
		}
	}
	const perWriter = 200
	srcs := []string{"cli1", "cli2", "cli3", "cli4", "go"}
	var wg sync.WaitGroup
	errs := make(chan error, len(srcs))
	for _, src := range srcs[:4] {
		wg.Go(func() {
			var b strings.Builder
			for i := range perWriter {
				fmt.Fprintf(&b, "INSERT INTO w(src, i) VALUES('%s', %d);\n", src, i)
			}
			if _, err := testenv.RunSQLite(db, b.String()); err != nil {
				errs <- err
			}
		})
	}
	wg.Go(func() {
		conn, err := sql.Open("sqlite", "file:"+db+"?_pragma=busy_timeout(10000)")
		if err != nil {
			errs <- err
			return
		}
		defer conn.Close()
		conn.SetMaxOpenConns(1)
		for i := range perWriter {
			tx, err := conn.Begin()
			if err == nil {
				_, err = tx.Exec("INSERT INTO w(src, i) VALUES('go', ?)", i)
				if err == nil {
					err = tx.Commit()
				} else {
					tx.Rollback()
				}
			}
			if err != nil {
				errs <- fmt.Errorf("go writer, row %d: %w", i, err)
				return
			}
		}
	})
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	total := perWriter * len(srcs)
	if n := testenv.SQLiteInt(t, db, "SELECT count(*) FROM sqlws_changes;"); n != int64(total) {
		t.Fatalf("changelog has %d rows, want %d", n, total)
	}
	for k, c := range clients {
		got := c.WaitChanges("s", total, 60*time.Second)
		testenv.AssertContiguous(t, got, 1)
		next := map[string]int64{}
		for _, ch := range got {
			var src string
			if err := json.Unmarshal(field(t, ch, "src"), &src); err != nil || ch.Op != models.OpInsert {
				t.Fatalf("client %d: unexpected change %+v", k, ch)
			}
			if i := intField(t, ch, "i"); i != next[src] {
				t.Fatalf("client %d: writer %s's row %d arrived when %d was expected (seq %d)", k, src, i, next[src], ch.Seq)
			}
			next[src]++
		}
		for _, src := range srcs {
			if next[src] != perWriter {
				t.Errorf("client %d: %d changes from %s, want %d", k, next[src], src, perWriter)
			}
		}
	}
	for _, c := range clients {
		if extra := c.Take("s"); len(extra) > 0 {
			t.Fatalf("extra changes after the expected %d: first seq %d", total, extra[0].Seq)
		}
	}
	testenv.SQLite(t, db, "INSERT INTO w(src, i) VALUES('marker', -1);")
	for k, c := range clients {
		if m := c.WaitChanges("s", 1, timeout)[0]; m.Seq != int64(total+1) {
			t.Errorf("client %d: marker arrived with seq %d, want %d", k, m.Seq, total+1)
		}
	}
}

// TestBigTransaction: one 10,000-row transaction arrives whole and in order, live and
// by catch-up.
func TestBigTransaction(t *testing.T) {
	t.Parallel()
	const rows = 10000
	db, srv := start(t, `CREATE TABLE big(id INTEGER PRIMARY KEY, n INT, pad TEXT);`)
	live := srv.Dial(t)
	live.Subscribe("a", nil, nil, "")
	testenv.SQLite(t, db, fmt.Sprintf(`BEGIN;
WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < %d)
INSERT INTO big(n, pad) SELECT x, printf('%%050d', x) FROM c;
COMMIT;`, rows))
	check := func(name string, got []models.Change) {
		t.Helper()
		testenv.AssertContiguous(t, got, 1)
		ts := got[0].TS
		for i, ch := range got {
			if ch.Table != "big" || ch.Op != "insert" || intField(t, ch, "n") != int64(i+1) {
				t.Fatalf("%s: change %d = %+v, want insert of n=%d", name, i, ch, i+1)
			}
			if ch.TS != ts {
				// One commit, one commit time.
				t.Fatalf("%s: ts varies within one transaction: %d then %d", name, ts, ch.TS)
			}
		}
	}
	check("live", live.WaitChanges("a", rows, 60*time.Second))
	late := srv.Dial(t)
	if late.Hello.Head != rows {
		t.Errorf("hello.head = %d, want %d", late.Hello.Head, rows)
	}
	late.Subscribe("a", nil, testenv.Int64(0), "")
	check("catch-up", late.WaitChanges("a", rows, 60*time.Second))
	for _, c := range []*testenv.Client{live, late} {
		if extra := c.Take("a"); len(extra) > 0 {
			t.Fatalf("extra changes after the transaction, first seq %d", extra[0].Seq)
		}
	}
	testenv.SQLite(t, db, "INSERT INTO big(n) VALUES(-1);")
	for _, c := range []*testenv.Client{live, late} {
		if m := c.WaitChanges("a", 1, timeout)[0]; m.Seq != rows+1 || intField(t, m, "n") != -1 {
			t.Errorf("next change after the transaction = %+v, want the marker with seq %d", m, rows+1)
		}
	}
}

// TestStalledSubscriber: a subscriber that stops reading does not hold up the others
// nor make the server's memory grow; when it reads again (or reconnects after the
// server dropped it as a slow consumer) it gets everything, without a gap.
func TestStalledSubscriber(t *testing.T) {
	t.Parallel()
	const (
		rows       = 20000
		perTx      = 1000
		baseRSS    = 200 << 20        // bytes; a bounded server stays far below
		writeLimit = 10 * time.Second // the default
	)
	// A small fan-out window, so that the stalled subscriber falls out of it and
	// must be caught up from the database.
	db, srv := start(t, `CREATE TABLE fat(id INTEGER PRIMARY KEY, pad TEXT);`,
		"--write-timeout", writeLimit.String(), "--window-bytes", "4194304", "--window-changes", "2000")
	good := []*testenv.Client{srv.Dial(t), srv.Dial(t)}
	for _, c := range good {
		c.Subscribe("a", nil, nil, "")
	}
	stalled := srv.Dial(t)
	stalled.Subscribe("a", nil, nil, "")
	stalled.Pause()
	stalledAt := time.Now()

	for i := 0; i < rows; i += perTx {
		// ~2 KB per change: 2,000 hex characters of random bytes.
		testenv.SQLite(t, db, fmt.Sprintf(`BEGIN;
WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < %d)
INSERT INTO fat(pad) SELECT hex(randomblob(1000)) FROM c;
COMMIT;`, perTx))
	}
	t.Logf("wrote %d rows in %v", rows, time.Since(stalledAt).Round(time.Millisecond))
	for k, c := range good {
		got := c.WaitChanges("a", rows, 120*time.Second)
		testenv.AssertContiguous(t, got, 1)
		if n := len(field(t, got[rows-1], "pad")); n < 2000 {
			t.Fatalf("client %d: pad is %d bytes", k, n)
		}
	}
	t.Logf("good clients got everything after %v", time.Since(stalledAt).Round(time.Millisecond))
	rssLimit := int64(baseRSS)
	if testenv.RaceBinary() {
		rssLimit *= 3 // the race detector's shadow memory
	}
	rss, peak := srv.RSS(), srv.PeakRSS()
	t.Logf("server RSS %d MB, peak %d MB, after %d × 2 KB changes with a stalled subscriber", rss>>20, peak>>20, rows)
	if peak > rssLimit {
		t.Errorf("server peak RSS %d MB exceeds %d MB: memory is not bounded with a stalled subscriber", peak>>20, rssLimit>>20)
	}
	stallFor := time.Since(stalledAt)
	stalled.Resume()

	var all []models.Change
	got, err := stalled.WaitChangesErr("a", rows, 120*time.Second)
	all = append(all, got...)
	if err != nil {
		closed, cerr := stalled.Closed()
		if !closed {
			t.Fatalf("stalled client: %v", err)
		}
		code := websocket.CloseStatus(cerr)
		t.Logf("stalled client was disconnected after %d changes (close code %d: %v); reconnecting", len(all), code, cerr)
		// docs/protocol.md: a slow consumer's TCP connection is dropped (1006, no
		// close frame); 1008 if the stall also outlasted the ping timeout.
		if code != -1 && code != websocket.StatusPolicyViolation {
			t.Errorf("stalled client closed with code %d, want an abnormal close without a close frame (1006)", code)
		}
		testenv.AssertContiguous(t, all, 1)
		var since int64
		if len(all) > 0 {
			since = all[len(all)-1].Seq
		}
		c := srv.Dial(t)
		c.Subscribe("a", nil, &since, c.Hello.Stream)
		rest := c.WaitChanges("a", rows-len(all), 120*time.Second)
		all = append(all, rest...)
		stalled = c
	} else if stallFor > 3*writeLimit {
		t.Errorf("a subscriber that read nothing for %v (write timeout %v) while %d × 2 KB changes flowed was not disconnected as a slow consumer",
			stallFor.Round(time.Second), writeLimit, rows)
	}
	testenv.AssertContiguous(t, all, 1)
	if len(all) != rows {
		t.Fatalf("stalled subscriber got %d changes, want %d", len(all), rows)
	}
	if rss, peak := srv.RSS(), srv.PeakRSS(); peak > rssLimit || rss > rssLimit {
		t.Errorf("server RSS %d MB, peak %d MB, exceeds %d MB", rss>>20, peak>>20, rssLimit>>20)
	}
	testenv.SQLite(t, db, "INSERT INTO fat(pad) VALUES('marker');")
	for _, c := range append(good, stalled) {
		if m := c.WaitChanges("a", 1, timeout)[0]; m.Seq != rows+1 {
			t.Errorf("marker arrived with seq %d, want %d", m.Seq, rows+1)
		}
	}
}

// TestSubscribeDuringWrites: clients that subscribe while changes are flowing — from
// since 0, from the middle, or live — each get a contiguous run from where they
// asked up to the final head: the hand-off from catch-up (database, then the fan-out
// window, which is kept small here) to live delivery loses and repeats nothing.
func TestSubscribeDuringWrites(t *testing.T) {
	t.Parallel()
	const (
		procs    = 40 // CLI processes, one after another
		txPer    = 10 // transactions per process
		rowsPer  = 10 // rows per transaction
		total    = procs * txPer * rowsPer
		nClients = 6
	)
	db, srv := start(t, `CREATE TABLE f(id INTEGER PRIMARY KEY, n INT);`, "--window-changes", "300")
	var written atomic.Int64
	done := make(chan error, 1)
	go func() {
		for p := range procs {
			var b strings.Builder
			for tx := range txPer {
				b.WriteString("BEGIN;\n")
				for r := range rowsPer {
					fmt.Fprintf(&b, "INSERT INTO f(n) VALUES(%d);\n", (p*txPer+tx)*rowsPer+r+1)
				}
				b.WriteString("COMMIT;\n")
			}
			if _, err := testenv.RunSQLite(db, b.String()); err != nil {
				done <- err
				return
			}
			written.Add(txPer * rowsPer)
		}
		done <- nil
	}()
	type sub struct {
		c    *testenv.Client
		from int64
		mode string
	}
	var subs []sub
	overlapped := 0
	for k := range nClients {
		target := int64(k+1) * total / (nClients + 1)
		testenv.WaitFor(t, time.Minute, fmt.Sprintf("%d rows written", target), func() bool {
			return written.Load() >= target || len(done) > 0
		})
		c := srv.Dial(t)
		var s sub
		switch k % 3 {
		case 0:
			c.Subscribe("a", nil, testenv.Int64(0), "")
			s = sub{c, 1, "since 0"}
		case 1:
			since := c.Hello.Head / 2
			c.Subscribe("a", nil, &since, "")
			s = sub{c, since + 1, fmt.Sprintf("since %d", since)}
		case 2:
			m := c.Subscribe("a", nil, nil, "")
			s = sub{c, m.Head + 1, fmt.Sprintf("live at head %d", m.Head)}
		}
		if written.Load() < total {
			overlapped++
		}
		subs = append(subs, s)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(2 * time.Minute):
		t.Fatal("writer did not finish")
	}
	t.Logf("%d of %d subscriptions were made while the writer ran", overlapped, nClients)
	head := testenv.SQLiteInt(t, db, "SELECT max(seq) FROM sqlws_changes;")
	if head != total {
		t.Fatalf("head = %d, want %d", head, total)
	}
	for _, s := range subs {
		if s.from > head {
			continue // subscribed live after the last write
		}
		got := s.c.WaitSeq("a", head, time.Minute)
		if len(got) == 0 || got[0].Seq != s.from {
			t.Errorf("subscription %s: first seq %v, want %d", s.mode, seqs(got[:min(1, len(got))]), s.from)
		}
		testenv.AssertContiguous(t, got, -1)
		for _, ch := range got {
			if intField(t, ch, "n") != ch.Seq {
				t.Fatalf("subscription %s: seq %d carries n=%d", s.mode, ch.Seq, intField(t, ch, "n"))
			}
		}
	}
	testenv.SQLite(t, db, "INSERT INTO f(n) VALUES(-1);")
	for _, s := range subs {
		if extra := s.c.WaitChanges("a", 1, timeout); extra[0].Seq != head+1 {
			t.Errorf("subscription %s: after head %d came seq %d, want the marker %d", s.mode, head, extra[0].Seq, head+1)
		}
	}
}

// TestTinyWindow: a fan-out window smaller than one change still delivers
// everything, live and by catch-up.
func TestTinyWindow(t *testing.T) {
	t.Parallel()
	const rows = 300
	db, srv := start(t, `CREATE TABLE f(id INTEGER PRIMARY KEY, n INT, pad TEXT);`,
		"--window-bytes", "1024", "--window-changes", "1")
	live := srv.Dial(t)
	live.Subscribe("a", nil, nil, "")
	testenv.SQLite(t, db, fmt.Sprintf(`BEGIN;
WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < %d)
INSERT INTO f(n, pad) SELECT x, hex(randomblob(1000)) FROM c;
COMMIT;`, rows))
	testenv.AssertContiguous(t, live.WaitChanges("a", rows, timeout), 1)
	late := srv.Dial(t)
	late.Subscribe("a", nil, testenv.Int64(0), "")
	testenv.AssertContiguous(t, late.WaitChanges("a", rows, timeout), 1)
	testenv.SQLite(t, db, inserts("f", "n", rows+1, 5))
	for _, c := range []*testenv.Client{live, late} {
		testenv.AssertContiguous(t, c.WaitChanges("a", 5, timeout), rows+1)
	}
}
