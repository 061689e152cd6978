package e2e

// Browser tests: the dashboard (web/static) and the JS client (/sqlws.js) driven in
// Debian's headless Chromium through chromedp, against the real sqlws binary and the
// real sqlite3 CLI.
//
// Every wait polls a condition in the page with a bound; nothing synchronises with
// sleep. Each test also checks that the page logged no console error or uncaught
// exception and requested nothing from another host.
//
// SQLWS_SCREENSHOT=1 makes TestBrowserScreenshot write docs/dashboard.png.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"image/png"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"

	"github.com/sqlws/sqlws/internal/testenv"
)

// chromiumPath is Debian's Chromium; `make test` installs it.
const chromiumPath = "/usr/bin/chromium"

// bwWait bounds a wait for something the page should show soon; bwSlow bounds waits
// that include a server restart or bulk work on the small shared machine.
const (
	bwWait = 20 * time.Second
	bwSlow = 60 * time.Second
)

// ---------------------------------------------------------------------------
// The browser harness

// bwPage is one Chromium tab with its own browser process and profile. It records
// console errors, uncaught exceptions and requests to hosts other than host.
type bwPage struct {
	t    *testing.T
	ctx  context.Context
	host string // the only host:port the page may talk to

	mu      sync.Mutex
	errs    []string
	foreign []string
}

// bwRequireChromium fails (never skips) when Chromium is missing.
func bwRequireChromium(t *testing.T) {
	t.Helper()
	if _, err := os.Stat(chromiumPath); err != nil {
		t.Fatalf("the browser tests need Debian's Chromium at %s (%v). Run `make test`, which installs it "+
			"(or: apt-get update && apt-get install -y chromium)", chromiumPath, err)
	}
}

// bwNewPage starts a headless Chromium with a fresh profile and opens one tab. host
// is the server's host:port, the only one the page may contact.
func bwNewPage(t *testing.T, host string) *bwPage {
	t.Helper()
	bwRequireChromium(t)
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(chromiumPath),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-extensions", true),
		chromedp.Flag("disable-default-apps", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("disable-background-timer-throttling", true),
		chromedp.Flag("disable-renderer-backgrounding", true),
		chromedp.Flag("disable-features", "Translate,MediaRouter,OptimizationHints"),
		chromedp.Flag("password-store", "basic"),
		chromedp.Flag("use-mock-keychain", true),
		chromedp.UserDataDir(t.TempDir()),
		// Chromium leaves a singleton socket directory in TMPDIR when it is stopped;
		// keep it inside the test's temporary directory.
		chromedp.Env("TMPDIR=" + t.TempDir()),
		chromedp.WindowSize(1280, 800),
	}
	actx, acancel := chromedp.NewExecAllocator(context.Background(), opts...)
	p := &bwPage{t: t, host: host}
	ctx, cancel := chromedp.NewContext(actx, chromedp.WithListener(p.onEvent))
	p.ctx = ctx
	t.Cleanup(func() {
		cancel()
		acancel()
	})
	// The first Run starts the browser; it must not carry a timeout (see chromedp.Run).
	if err := chromedp.Do(ctx, chromedp.EmulateViewport(1280, 800)); err != nil {
		t.Fatalf("start %s: %v", chromiumPath, err)
	}
	// Runs before the browser is closed (cleanups run last-registered first).
	t.Cleanup(p.assertClean)
	return p
}

func (p *bwPage) onEvent(ev any) {
	switch ev := ev.(type) {
	case *runtime.EventConsoleAPICalled:
		if ev.Type == runtime.ConsoleAPICalledTypeError || ev.Type == runtime.ConsoleAPICalledTypeAssert {
			var parts []string
			for _, a := range ev.Args {
				switch {
				case len(a.Value) > 0:
					parts = append(parts, string(a.Value))
				case a.Description != "":
					parts = append(parts, a.Description)
				default:
					parts = append(parts, string(a.Type))
				}
			}
			p.record(&p.errs, fmt.Sprintf("console.%s: %s", ev.Type, strings.Join(parts, " ")))
		}
	case *runtime.EventExceptionThrown:
		d := ev.ExceptionDetails
		msg := d.Text
		if d.Exception != nil && d.Exception.Description != "" {
			msg += " " + d.Exception.Description
		}
		p.record(&p.errs, fmt.Sprintf("uncaught exception at %s:%d: %s", d.URL, d.LineNumber+1, msg))
	case *network.EventRequestWillBeSent:
		if ev.Request != nil {
			p.checkURL(ev.Request.URL)
		}
	case *network.EventWebSocketCreated:
		p.checkURL(ev.URL)
	}
}

func (p *bwPage) record(list *[]string, s string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	*list = append(*list, s)
}

func (p *bwPage) checkURL(raw string) {
	u, err := url.Parse(raw)
	if err != nil {
		p.record(&p.foreign, raw+" (unparsable)")
		return
	}
	switch u.Scheme {
	case "data", "blob", "about":
		return
	}
	if u.Host != p.host {
		p.record(&p.foreign, raw)
	}
}

// assertClean fails the test if the page logged an error or contacted another host.
func (p *bwPage) assertClean() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.errs) > 0 {
		p.t.Errorf("the page logged %d console error(s)/exception(s):\n  %s", len(p.errs), strings.Join(p.errs, "\n  "))
	}
	if len(p.foreign) > 0 {
		p.t.Errorf("the page requested %d URL(s) from a host other than %s:\n  %s", len(p.foreign), p.host, strings.Join(p.foreign, "\n  "))
	}
}

// do runs actions with a bound.
func (p *bwPage) do(what string, actions ...chromedp.Action[chromedp.Void]) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, bwWait)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		p.t.Fatalf("%s: %v\npage state: %s", what, err, p.state())
	}
}

// navigate loads a URL and waits for the dashboard (or any page) to load.
func (p *bwPage) navigate(u string) {
	p.t.Helper()
	p.do("navigate to "+u, chromedp.Navigate(u))
}

// bwEval evaluates a JavaScript expression (awaiting a promise) and decodes it into T.
func bwEval[T any](p *bwPage, expr string) T {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, bwWait)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr, chromedp.EvalAwaitPromise))
	if err != nil {
		p.t.Fatalf("evaluate %s: %v\npage state: %s", bwShort(expr), err, p.state())
	}
	return v
}

// waitJS polls the JavaScript predicate expr (every 40 ms) until it is truthy,
// failing the test after timeout. A predicate that throws counts as false.
func (p *bwPage) waitJS(what string, timeout time.Duration, expr string) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, timeout+10*time.Second)
	defer cancel()
	pred := fmt.Sprintf("(() => { try { return !!(%s); } catch (e) { return false; } })()", expr)
	_, err := chromedp.Run(ctx, chromedp.Poll[chromedp.Void](pred,
		chromedp.WithPollingInterval(40*time.Millisecond), chromedp.WithPollingTimeout(timeout)))
	if err != nil {
		if errors.Is(err, chromedp.ErrPollingTimeout) {
			p.t.Fatalf("timed out after %v waiting for %s\npage state: %s", timeout, what, p.state())
		}
		p.t.Fatalf("waiting for %s: %v\npage state: %s", what, err, p.state())
	}
}

// state describes the page for failure messages; it never fails the test.
func (p *bwPage) state() string {
	ctx, cancel := context.WithTimeout(p.ctx, 3*time.Second)
	defer cancel()
	s, err := chromedp.Run(ctx, chromedp.Evaluate[string](`JSON.stringify({
		url: location.href,
		sqlws: window.__sqlws,
		status: document.querySelector('[data-testid="status"]')?.dataset.state,
		statusText: document.querySelector('[data-testid="status"]')?.textContent.trim(),
		notice: document.querySelector('[data-testid="notice"]')?.textContent,
		gridMessage: document.querySelector('[data-testid="grid-message"]')?.textContent,
		T: window.T,
	})`))
	if err != nil {
		return "(unavailable: " + err.Error() + ")"
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.errs) > 0 {
		s += "\nconsole errors so far: " + strings.Join(p.errs, "; ")
	}
	return s
}

func bwShort(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > 200 {
		return s[:200] + "…"
	}
	return s
}

// bwJS quotes s as a JavaScript string literal.
func bwJS(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// bwRow is a JavaScript expression for the grid row with key (the JSON of the
// primary key object, e.g. {"id":4}), or null.
func bwRow(key string) string {
	return fmt.Sprintf(`document.querySelector('[data-testid="rows"] [data-key="' + CSS.escape(%s) + '"]')`, bwJS(key))
}

// bwCell is a JavaScript expression for the text of one cell of a grid row.
func bwCell(key, col string) string {
	return fmt.Sprintf(`%s?.querySelector('[data-col="' + CSS.escape(%s) + '"]')?.textContent`, bwRow(key), bwJS(col))
}

// fill sets form fields of the open row dialog (column → text) as typing would,
// firing input events.
func (p *bwPage) fill(fields map[string]string) {
	p.t.Helper()
	b, _ := json.Marshal(fields)
	missing := bwEval[string](p, fmt.Sprintf(`(() => {
		const missing = [];
		for (const [col, v] of Object.entries(%s)) {
			const el = document.querySelector('[data-testid="row-dialog"] [data-testid="field"][data-col="' + CSS.escape(col) + '"]');
			if (!el) { missing.push(col); continue; }
			el.focus();
			el.value = v;
			el.dispatchEvent(new Event('input', {bubbles: true}));
		}
		return missing.join(",");
	})()`, b))
	if missing != "" {
		p.t.Fatalf("row dialog has no field for %s\npage state: %s", missing, p.state())
	}
}

// bwRestartSameAddr starts a new server on the database and address of old (which
// must have exited), as a restarted deployment would.
func bwRestartSameAddr(t *testing.T, old *testenv.Server) *testenv.Server {
	t.Helper()
	args := append(append([]string(nil), old.Args...), "--addr", old.Addr)
	s := testenv.StartServer(t, old.DB, args...)
	if s.Addr != old.Addr {
		t.Fatalf("restarted server listens on %s, want the old address %s", s.Addr, old.Addr)
	}
	return s
}

// bwOpenDashboard opens path on the server and waits until the dashboard has loaded
// its table and is live.
func bwOpenDashboard(t *testing.T, srv *testenv.Server, path string) *bwPage {
	t.Helper()
	p := bwNewPage(t, srv.Addr)
	p.navigate(srv.URL + path)
	p.waitJS("the dashboard to load", bwWait, `window.__sqlws && window.__sqlws.ready && window.__sqlws.subscribed`)
	p.waitJS("the status to say connected", bwWait, `document.querySelector('[data-testid="status"]').dataset.state === "connected"`)
	return p
}

// ---------------------------------------------------------------------------
// Dashboard

// TestBrowserLiveGrid: the page shows the seeded rows, then a CLI insert, update and
// delete each show up live, in the grid and in the change log.
func TestBrowserLiveGrid(t *testing.T) {
	db := testenv.NewDB(t, `
CREATE TABLE todos(id INTEGER PRIMARY KEY, title TEXT NOT NULL, done INTEGER NOT NULL DEFAULT 0);
INSERT INTO todos(id, title, done) VALUES (1, 'milk', 0), (2, 'eggs', 1), (3, 'tea', 0);`)
	srv := testenv.StartServer(t, db)
	p := bwOpenDashboard(t, srv, "/")

	// One table: it opens by itself and the URL names it.
	p.waitJS("three seeded rows", bwWait, `window.__sqlws.rows === 3 && window.__sqlws.table === "todos"`)
	if got := bwEval[string](p, bwCell(`{"id":1}`, "title")); got != "milk" {
		t.Errorf("row 1 title cell = %q, want milk", got)
	}
	if got := bwEval[string](p, bwCell(`{"id":2}`, "done")); got != "1" {
		t.Errorf("row 2 done cell = %q, want 1", got)
	}
	if got := bwEval[string](p, `new URLSearchParams(location.search).get("table")`); got != "todos" {
		t.Errorf("?table= after opening the only table = %q, want todos", got)
	}
	if got := bwEval[string](p, `document.querySelector('[data-table="todos"] [data-testid="table-count"]').textContent`); got != "3" {
		t.Errorf("table list count = %q, want 3", got)
	}

	testenv.SQLite(t, db, `INSERT INTO todos(id, title) VALUES (4, 'jam');`)
	p.waitJS("the CLI insert to appear", bwWait, bwCell(`{"id":4}`, "title")+` === "jam"`)
	p.waitJS("the insert in the change log", bwWait,
		`[...document.querySelectorAll('[data-testid="log-entry"]')].some(e => e.dataset.op === "insert" && e.textContent.includes("todos"))`)
	p.waitJS("the row count to follow", bwWait, `document.querySelector('[data-table="todos"] [data-testid="table-count"]').textContent === "4"`)

	testenv.SQLite(t, db, `UPDATE todos SET title = 'oat milk', done = 1 WHERE id = 1;`)
	p.waitJS("the CLI update to appear", bwWait, bwCell(`{"id":1}`, "title")+` === "oat milk" && `+bwCell(`{"id":1}`, "done")+` === "1"`)
	// The changed cell is highlighted, the unchanged one is not.
	if got := bwEval[string](p, bwRow(`{"id":1}`)+`.querySelector('[data-col="title"]').dataset.flash || ""`); !strings.HasPrefix(got, "cell-") {
		t.Errorf("updated cell has data-flash %q, want a cell highlight", got)
	}
	if got := bwEval[string](p, bwRow(`{"id":1}`)+`.querySelector('[data-col="id"]').dataset.flash || ""`); got != "" {
		t.Errorf("unchanged cell has data-flash %q, want none", got)
	}

	testenv.SQLite(t, db, `DELETE FROM todos WHERE id = 2;`)
	p.waitJS("the CLI delete to remove the row", bwWait, bwRow(`{"id":2}`)+` === null && window.__sqlws.rows === 3`)

	// The status area shows the server's lag and delivery rate, read from /metrics.
	p.waitJS("the server's figures in the status area", bwWait,
		`(e => !e.hidden && /^lag \d+ · [\d.]+[kM]? changes\/s$/.test(e.textContent) && e.dataset.lag === "0")(document.querySelector('[data-testid="server-stats"]'))`)

	// Every change is in the log with its seq; clicking one shows old and new rows.
	head := testenv.SQLiteInt(t, db, `SELECT max(seq) FROM sqlws_changes;`)
	p.waitJS("the log to reach the head", bwWait, fmt.Sprintf(`document.querySelector('[data-testid="log-entry"][data-seq="%d"]')`, head))
	p.waitJS("window.__sqlws.lastSeq to reach the head", bwWait, fmt.Sprintf(`window.__sqlws.lastSeq === %d`, head))
	update := testenv.SQLiteInt(t, db, `SELECT seq FROM sqlws_changes WHERE op = 'update';`)
	p.do("open the update's details", chromedp.Click(chromedp.CSS(fmt.Sprintf(`[data-testid="log-entry"][data-seq="%d"]`, update))))
	p.waitJS("the change dialog", bwWait, `document.querySelector('[data-testid="change-dialog"]').open`)
	diff := bwEval[string](p, `document.querySelector('[data-testid="change-diff"]').textContent`)
	if !strings.Contains(diff, "milk") || !strings.Contains(diff, "oat milk") {
		t.Errorf("change details = %q, want the old and new titles", diff)
	}
	p.do("press Escape", chromedp.KeyEvent(kb.Escape))
	p.waitJS("Escape to close the dialog", bwWait, `!document.querySelector('[data-testid="change-dialog"]').open`)

	// Pause freezes the log; resume shows what arrived meanwhile; clear empties it.
	p.do("pause the log", chromedp.Click(chromedp.CSS(`[data-testid="log-pause"]`)))
	testenv.SQLite(t, db, `INSERT INTO todos(id, title) VALUES (5, 'bread');`)
	p.waitJS("the paused insert to reach the grid", bwWait, bwCell(`{"id":5}`, "title")+` === "bread"`)
	if n := bwEval[int](p, `document.querySelectorAll('[data-testid="log-entry"][data-op="insert"]').length`); n != 1 {
		t.Errorf("paused log shows %d inserts, want 1 (the one before the pause)", n)
	}
	p.do("resume the log", chromedp.Click(chromedp.CSS(`[data-testid="log-pause"]`)))
	p.waitJS("the resumed log to show the insert", bwWait, `document.querySelectorAll('[data-testid="log-entry"][data-op="insert"]').length === 2`)
	p.do("clear the log", chromedp.Click(chromedp.CSS(`[data-testid="log-clear"]`)))
	p.waitJS("the log to be empty", bwWait, `document.querySelectorAll('[data-testid="log-entry"]').length === 0`)
}

// TestBrowserReconnect: kill -9 the server, write while it is down, restart it on
// the same address: the page reconnects, catches up by itself and stays live.
func TestBrowserReconnect(t *testing.T) {
	db := testenv.NewDB(t, `
CREATE TABLE todos(id INTEGER PRIMARY KEY, title TEXT NOT NULL);
INSERT INTO todos(id, title) VALUES (1, 'milk'), (2, 'eggs');`)
	srv := testenv.StartServer(t, db)
	p := bwOpenDashboard(t, srv, "/")
	p.waitJS("two seeded rows", bwWait, `window.__sqlws.rows === 2`)
	testenv.SQLite(t, db, `INSERT INTO todos(id, title) VALUES (3, 'tea');`)
	p.waitJS("a live insert before the crash", bwWait, bwCell(`{"id":3}`, "title")+` === "tea"`)
	before := testenv.SQLiteInt(t, db, `SELECT max(seq) FROM sqlws_changes;`)

	srv.Kill()
	p.waitJS("the status to say reconnecting", bwWait, `document.querySelector('[data-testid="status"]').dataset.state === "reconnecting"`)
	if txt := bwEval[string](p, `document.querySelector('[data-testid="status"]').textContent`); !strings.Contains(txt, "attempt") {
		t.Errorf("reconnecting status text = %q, want it to show the attempt", txt)
	}
	testenv.SQLite(t, db, `
INSERT INTO todos(id, title) VALUES (4, 'written while down');
UPDATE todos SET title = 'milk (edited while down)' WHERE id = 1;
DELETE FROM todos WHERE id = 2;`)

	srv2 := bwRestartSameAddr(t, srv)
	_ = srv2
	p.waitJS("the page to catch up by itself", bwSlow,
		bwCell(`{"id":4}`, "title")+` === "written while down" && `+
			bwCell(`{"id":1}`, "title")+` === "milk (edited while down)" && `+bwRow(`{"id":2}`)+` === null`)
	p.waitJS("the status to say connected", bwWait, `document.querySelector('[data-testid="status"]').dataset.state === "connected"`)
	p.waitJS("the resume report", bwWait, `window.__sqlws.resumed && window.__sqlws.resumed.caughtUp === 3`)
	if from := bwEval[int64](p, `window.__sqlws.resumed.fromSeq`); from != before {
		t.Errorf("resumed.fromSeq = %d, want %d (the last seq seen before the crash)", from, before)
	}
	notice := bwEval[string](p, `document.querySelector('[data-testid="notice"]').textContent`)
	if want := fmt.Sprintf("Resumed from seq %d with 3 changes caught up", before); notice != want {
		t.Errorf("notice = %q, want %q", notice, want)
	}

	// Live again.
	testenv.SQLite(t, db, `INSERT INTO todos(id, title) VALUES (5, 'after restart');`)
	p.waitJS("a live insert after the restart", bwWait, bwCell(`{"id":5}`, "title")+` === "after restart"`)
	p.waitJS("every row exactly once", bwWait, `window.__sqlws.rows === 4 && document.querySelectorAll('[data-testid="rows"] [data-key]').length === 4`)
}

// TestBrowserSchemaChange: a column added and a table created while the page is
// open show up without a reload.
func TestBrowserSchemaChange(t *testing.T) {
	db := testenv.NewDB(t, `
CREATE TABLE todos(id INTEGER PRIMARY KEY, title TEXT);
INSERT INTO todos(id, title) VALUES (1, 'milk');`)
	srv := testenv.StartServer(t, db)
	p := bwOpenDashboard(t, srv, "/")
	p.waitJS("the seeded row", bwWait, bwCell(`{"id":1}`, "title")+` === "milk"`)

	testenv.SQLite(t, db, `ALTER TABLE todos ADD COLUMN note TEXT;`)
	testenv.WaitFor(t, bwWait, "capture triggers with the new column", func() bool {
		return testenv.SQLiteInt(t, db, `SELECT count(*) FROM sqlite_master WHERE type = 'trigger' AND tbl_name = 'todos' AND sql LIKE '%"note"%';`) >= 3
	})
	testenv.SQLite(t, db, `UPDATE todos SET note = 'oat' WHERE id = 1;`)
	p.waitJS("the new column in the grid", bwWait, bwCell(`{"id":1}`, "note")+` === "oat"`)
	if got := bwEval[string](p, `[...document.querySelectorAll('[data-testid="grid-head"] [data-col]')].map(e => e.dataset.col).join(",")`); got != "id,title,note" {
		t.Errorf("grid columns = %q, want id,title,note", got)
	}

	testenv.SQLite(t, db, `CREATE TABLE later(id INTEGER PRIMARY KEY, v TEXT);`)
	testenv.WaitTriggers(t, db, "later")
	testenv.SQLite(t, db, `INSERT INTO later(v) VALUES ('new table');`)
	p.waitJS("the new table in the list", bwWait, `document.querySelector('[data-testid="table-item"][data-table="later"]')`)
	p.waitJS("its change in the log", bwWait, `document.querySelector('[data-testid="log-entry"][data-table="later"]')`)
}

// TestBrowserReset: when the server cannot continue the page's stream (the changes it
// missed were pruned, or the database is another one), the page reloads the table,
// says so, and is live again.
func TestBrowserReset(t *testing.T) {
	db := testenv.NewDB(t, `
CREATE TABLE todos(id INTEGER PRIMARY KEY, title TEXT NOT NULL);
INSERT INTO todos(id, title) VALUES (1, 'milk');`)
	srv := testenv.StartServer(t, db)
	p := bwOpenDashboard(t, srv, "/")
	testenv.SQLite(t, db, `INSERT INTO todos(id, title) VALUES (2, 'eggs');`)
	p.waitJS("a live insert", bwWait, bwCell(`{"id":2}`, "title")+` === "eggs" && window.__sqlws.lastSeq === 1`)

	// Pruned: while the server is down, 20 changes happen and retention (done here
	// with the CLI) drops all but the last two, so the page's since of 1 is gone.
	srv.Kill()
	p.waitJS("reconnecting", bwWait, `document.querySelector('[data-testid="status"]').dataset.state === "reconnecting"`)
	testenv.SQLite(t, db, `
WITH RECURSIVE c(i) AS (SELECT 100 UNION ALL SELECT i + 1 FROM c WHERE i < 119)
INSERT INTO todos(id, title) SELECT i, 'row ' || i FROM c;
DELETE FROM sqlws_changes WHERE seq < 20;`)
	srv = bwRestartSameAddr(t, srv)
	p.waitJS("the reset and reload", bwSlow, `window.__sqlws.resets === 1 && window.__sqlws.ready && window.__sqlws.rows === 22`)
	if got := bwEval[string](p, `window.__sqlws.lastReset.reason`); got != "pruned" {
		t.Errorf("reset reason = %q, want pruned", got)
	}
	if got := bwEval[string](p, `document.querySelector('[data-testid="notice"]').textContent`); got != "Change stream reset (pruned): reloaded todos" {
		t.Errorf("notice = %q", got)
	}
	p.waitJS("the row written while down", bwWait, bwCell(`{"id":119}`, "id")+` === "119"`)
	testenv.SQLite(t, db, `UPDATE todos SET title = 'oat milk' WHERE id = 1;`)
	p.waitJS("live after the reset", bwWait, bwCell(`{"id":1}`, "title")+` === "oat milk"`)

	// Another database: the stream id differs, so the page reloads again.
	srv.Kill()
	testenv.SQLite(t, db, `UPDATE sqlws_meta SET value = 'another-stream' WHERE key = 'stream_id'; DELETE FROM todos WHERE id >= 100;`)
	bwRestartSameAddr(t, srv)
	p.waitJS("the second reset and reload", bwSlow, `window.__sqlws.resets === 2 && window.__sqlws.ready && window.__sqlws.rows === 2`)
	if got := bwEval[string](p, `window.__sqlws.lastReset.reason + " " + window.__sqlws.stream`); got != "stream another-stream" {
		t.Errorf("second reset = %q, want reason stream and the new stream id", got)
	}
	testenv.SQLite(t, db, `INSERT INTO todos(id, title) VALUES (3, 'tea');`)
	p.waitJS("live on the new stream", bwWait, bwCell(`{"id":3}`, "title")+` === "tea"`)
}

// TestBrowserForms: create, edit and delete through the dialogs land in the database
// file; a constraint error shows next to the field it names; deep links and the
// table list switch tables; a table without a primary key works by rowid.
func TestBrowserForms(t *testing.T) {
	db := testenv.NewDB(t, `
CREATE TABLE people(id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, age INTEGER, score REAL);
INSERT INTO people(id, name, age, score) VALUES (1, 'Grace', 85, 9.5);
CREATE TABLE notes(body TEXT, n INTEGER);
INSERT INTO notes(body, n) VALUES ('first', 1);`)
	srv := testenv.StartServer(t, db)
	p := bwOpenDashboard(t, srv, "/?table=people")
	p.waitJS("the deep-linked table", bwWait, `window.__sqlws.table === "people" && window.__sqlws.rows === 1`)
	if n := bwEval[int](p, `document.querySelectorAll('[data-testid="table-item"]').length`); n != 2 {
		t.Errorf("table list has %d items, want 2", n)
	}

	dialogOpen := `document.querySelector('[data-testid="row-dialog"]').open`

	// Create.
	p.do("open the new-row dialog", chromedp.Click(chromedp.CSS(`[data-testid="new-row"]`)))
	p.waitJS("the row dialog", bwWait, dialogOpen)
	p.fill(map[string]string{"name": "Ada", "age": "36", "score": ""})
	p.do("submit", chromedp.Click(chromedp.CSS(`[data-testid="row-save"]`)))
	p.waitJS("the dialog to close after the insert", bwWait, `!`+dialogOpen)
	if got := strings.TrimSpace(testenv.SQLite(t, db, `SELECT id, name, age, typeof(age), quote(score) FROM people WHERE name = 'Ada';`)); got != "2|Ada|36|integer|NULL" {
		t.Fatalf("created row in the database = %q, want 2|Ada|36|integer|NULL", got)
	}
	p.waitJS("the created row in the grid", bwWait, bwCell(`{"id":2}`, "name")+` === "Ada"`)

	// A constraint error shows next to the field the server names.
	p.do("open the new-row dialog again", chromedp.Click(chromedp.CSS(`[data-testid="new-row"]`)))
	p.waitJS("the row dialog", bwWait, dialogOpen)
	p.fill(map[string]string{"name": "Ada"})
	p.do("submit a duplicate name", chromedp.Click(chromedp.CSS(`[data-testid="row-save"]`)))
	p.waitJS("the UNIQUE error next to the name field", bwWait,
		`(e => e && !e.hidden && /unique/i.test(e.textContent))(document.querySelector('[data-testid="field-error"][data-col="name"]'))`)
	if n := testenv.SQLiteInt(t, db, `SELECT count(*) FROM people;`); n != 2 {
		t.Errorf("people has %d rows after a refused insert, want 2", n)
	}
	p.do("press Escape", chromedp.KeyEvent(kb.Escape))
	p.waitJS("Escape to close the dialog", bwWait, `!`+dialogOpen)

	// Edit.
	p.do("edit Ada", chromedp.Click(chromedp.CSS(`[data-testid="rows"] [data-key='{"id":2}'] [data-testid="row-edit"]`)))
	p.waitJS("the edit dialog", bwWait, dialogOpen+` && document.querySelector('[data-testid="row-dialog"] [data-col="age"]').value === "36"`)
	p.fill(map[string]string{"age": "37", "score": "1.25"})
	p.do("save", chromedp.Click(chromedp.CSS(`[data-testid="row-save"]`)))
	p.waitJS("the dialog to close after the update", bwWait, `!`+dialogOpen)
	if got := strings.TrimSpace(testenv.SQLite(t, db, `SELECT name, age, score, typeof(score) FROM people WHERE id = 2;`)); got != "Ada|37|1.25|real" {
		t.Fatalf("edited row in the database = %q, want Ada|37|1.25|real", got)
	}
	p.waitJS("the edit in the grid", bwWait, bwCell(`{"id":2}`, "age")+` === "37"`)

	// Delete, with confirmation.
	p.do("delete Ada", chromedp.Click(chromedp.CSS(`[data-testid="rows"] [data-key='{"id":2}'] [data-testid="row-delete-btn"]`)))
	p.waitJS("the confirmation", bwWait, `document.querySelector('[data-testid="confirm-dialog"]').open`)
	p.do("confirm", chromedp.Click(chromedp.CSS(`[data-testid="confirm-delete"]`)))
	p.waitJS("the row to go", bwWait, bwRow(`{"id":2}`)+` === null && !document.querySelector('[data-testid="confirm-dialog"]').open`)
	if n := testenv.SQLiteInt(t, db, `SELECT count(*) FROM people WHERE id = 2;`); n != 0 {
		t.Errorf("deleted row still in the database")
	}

	// Switch tables through the list: the URL follows; rowid rows work.
	p.do("open notes", chromedp.Click(chromedp.CSS(`[data-testid="table-item"][data-table="notes"]`)))
	p.waitJS("the notes table", bwWait, `window.__sqlws.table === "notes" && window.__sqlws.ready && window.__sqlws.rows === 1`)
	if got := bwEval[string](p, `new URLSearchParams(location.search).get("table")`); got != "notes" {
		t.Errorf("?table= after switching = %q, want notes", got)
	}
	p.waitJS("the rowid-keyed row", bwWait, bwCell(`{"rowid":1}`, "body")+` === "first"`)
	p.do("open the new-row dialog on notes", chromedp.Click(chromedp.CSS(`[data-testid="new-row"]`)))
	p.waitJS("the row dialog", bwWait, dialogOpen)
	p.fill(map[string]string{"body": "second", "n": "2"})
	p.do("create a note", chromedp.Click(chromedp.CSS(`[data-testid="row-save"]`)))
	p.waitJS("the dialog to close", bwWait, `!`+dialogOpen)
	p.waitJS("the new note in the grid", bwWait, bwCell(`{"rowid":2}`, "body")+` === "second"`)
	p.do("edit the first note", chromedp.Click(chromedp.CSS(`[data-testid="rows"] [data-key='{"rowid":1}'] [data-testid="row-edit"]`)))
	p.waitJS("the edit dialog", bwWait, dialogOpen)
	p.fill(map[string]string{"body": "first, edited"})
	p.do("save the note", chromedp.Click(chromedp.CSS(`[data-testid="row-save"]`)))
	p.waitJS("the dialog to close", bwWait, `!`+dialogOpen)
	if got := strings.TrimSpace(testenv.SQLite(t, db, `SELECT rowid, body, n FROM notes ORDER BY rowid;`)); got != "1|first, edited|1\n2|second|2" {
		t.Errorf("notes in the database = %q", got)
	}
	p.waitJS("the edited note in the grid", bwWait, bwCell(`{"rowid":1}`, "body")+` === "first, edited"`)
}

// TestBrowserOddKeys: a table whose name needs quoting, with a composite primary key
// whose text part holds ',', '/' and '%': rows are keyed as in change records, shown
// with their storage classes, and edited and deleted through the forms.
func TestBrowserOddKeys(t *testing.T) {
	db := testenv.NewDB(t, `
CREATE TABLE "odd table"(a TEXT, b INTEGER, v BLOB, r REAL, PRIMARY KEY(a, b));
INSERT INTO "odd table" VALUES ('x,y/z%', 1, x'00FF', 1e999), ('plain', 2, NULL, 0.5);
CREATE TABLE other(id INTEGER PRIMARY KEY);`)
	srv := testenv.StartServer(t, db)
	p := bwOpenDashboard(t, srv, "/?table="+url.QueryEscape("odd table"))
	p.waitJS("two rows", bwWait, `window.__sqlws.table === "odd table" && window.__sqlws.rows === 2`)
	odd := `{"a":"x,y/z%","b":1}`
	if got := bwEval[string](p, bwCell(odd, "v")); got != "x'00FF' (2 bytes)" {
		t.Errorf("blob cell = %q, want x'00FF' (2 bytes)", got)
	}
	if got := bwEval[string](p, bwCell(odd, "r")); got != "∞" {
		t.Errorf("infinity cell = %q, want ∞", got)
	}
	if got := bwEval[string](p, bwCell(`{"a":"plain","b":2}`, "v")); got != "NULL" {
		t.Errorf("null cell = %q, want NULL", got)
	}

	testenv.SQLite(t, db, `UPDATE "odd table" SET r = 2.5 WHERE b = 1;`)
	p.waitJS("the CLI update", bwWait, bwCell(odd, "r")+` === "2.5"`)

	dialogOpen := `document.querySelector('[data-testid="row-dialog"]').open`
	p.do("edit the odd row", chromedp.Click(chromedp.CSS(`[data-testid="rows"] [data-key='`+odd+`'] [data-testid="row-edit"]`)))
	p.waitJS("the edit dialog", bwWait, dialogOpen)
	p.fill(map[string]string{"v": "x'CAFE'", "r": "-inf"})
	p.do("save", chromedp.Click(chromedp.CSS(`[data-testid="row-save"]`)))
	p.waitJS("the dialog to close", bwWait, `!`+dialogOpen)
	if got := strings.TrimSpace(testenv.SQLite(t, db, `SELECT hex(v), r FROM "odd table" WHERE a = 'x,y/z%' AND b = 1;`)); got != "CAFE|-Inf" {
		t.Errorf("edited odd row in the database = %q, want CAFE|-Inf", got)
	}
	p.waitJS("the edit in the grid", bwWait, bwCell(odd, "r")+` === "−∞" && `+bwCell(odd, "v")+` === "x'CAFE' (2 bytes)"`)

	p.do("delete the odd row", chromedp.Click(chromedp.CSS(`[data-testid="rows"] [data-key='`+odd+`'] [data-testid="row-delete-btn"]`)))
	p.waitJS("the confirmation", bwWait, `document.querySelector('[data-testid="confirm-dialog"]').open`)
	p.do("confirm", chromedp.Click(chromedp.CSS(`[data-testid="confirm-delete"]`)))
	p.waitJS("the row to go", bwWait, bwRow(odd)+` === null`)
	if n := testenv.SQLiteInt(t, db, `SELECT count(*) FROM "odd table";`); n != 1 {
		t.Errorf("odd table has %d rows after the delete, want 1", n)
	}
}

// TestBrowserLoad: 10,000 rows load into the grid, and a sustained 1,000 changes/s
// keep the page responsive (animation frames keep coming) and end consistent.
func TestBrowserLoad(t *testing.T) {
	const rows = 10000
	db := testenv.NewDB(t, fmt.Sprintf(`
CREATE TABLE items(id INTEGER PRIMARY KEY, name TEXT NOT NULL, n INTEGER NOT NULL);
WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c WHERE i < %d)
INSERT INTO items(id, name, n) SELECT i, 'item ' || i, 0 FROM c;`, rows))
	srv := testenv.StartServer(t, db)
	p := bwNewPage(t, srv.Addr)
	p.navigate(srv.URL + "/")
	p.waitJS("10,000 rows", bwSlow, fmt.Sprintf(`window.__sqlws.ready && window.__sqlws.rows === %d && window.__sqlws.subscribed`, rows))

	// Measure the longest gap between animation frames from now on.
	bwEval[bool](p, `(() => {
		const g = window.__gap = {max: 0, frames: 0};
		let last = performance.now();
		const f = (t) => { g.max = Math.max(g.max, t - last); g.frames++; last = t; requestAnimationFrame(f); };
		requestAnimationFrame(f);
		return true;
	})()`)

	// 1,000 changes/s for 5 s: every 100 ms, one transaction updating 100 rows.
	const ticks, perTick = 50, 100
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	begin := time.Now()
	for i := range ticks {
		<-tick.C
		lo := (i*perTick)%rows + 1
		testenv.SQLite(t, db, fmt.Sprintf(`UPDATE items SET n = n + 1 WHERE id BETWEEN %d AND %d;`, lo, lo+perTick-1))
	}
	took := time.Since(begin)
	head := testenv.SQLiteInt(t, db, `SELECT max(seq) FROM sqlws_changes;`)
	p.waitJS("every change applied", bwSlow, fmt.Sprintf(`window.__sqlws.lastSeq === %d && window.__sqlws.pending === 0`, head))
	p.waitJS("the last updated row", bwWait, bwCell(fmt.Sprintf(`{"id":%d}`, ticks*perTick), "n")+` === "1"`)
	if got := bwEval[string](p, bwCell(fmt.Sprintf(`{"id":%d}`, ticks*perTick+1), "n")); got != "0" {
		t.Errorf("row %d n = %q, want 0 (not updated)", ticks*perTick+1, got)
	}
	if n := bwEval[int](p, `window.__sqlws.rows`); n != rows {
		t.Errorf("grid has %d rows after the updates, want %d", n, rows)
	}
	gap := bwEval[float64](p, `window.__gap.max`)
	frames := bwEval[int](p, `window.__gap.frames`)
	logN := bwEval[int](p, `window.__sqlws.logEntries`)
	perf := bwEval[string](p, `JSON.stringify(window.__sqlws.perf)`)
	t.Logf("%d changes in %v; longest frame gap %.0f ms over %d frames; log holds %d entries; change application %s",
		ticks*perTick, took.Round(time.Millisecond), gap, frames, logN, perf)
	if logN != 500 {
		t.Errorf("the change log holds %d entries, want 500 (its cap)", logN)
	}
	if n := bwEval[int](p, `document.querySelectorAll('[data-testid="log-entry"]').length`); n > 100 {
		t.Errorf("the change log renders %d entries, want only those in view", n)
	}
	// Generous for a small shared machine; a page that re-rendered the grid per
	// change would stall for seconds.
	if gap > 1500 {
		t.Errorf("longest gap between animation frames = %.0f ms, want < 1500 ms", gap)
	}
}

// TestBrowserScreenshot: the dashboard fits 1280×800 and a 390 px phone without
// horizontal page scrolling, and SQLWS_SCREENSHOT=1 writes docs/dashboard.png.
func TestBrowserScreenshot(t *testing.T) {
	db := testenv.NewDB(t, `
CREATE TABLE todos(
  id INTEGER PRIMARY KEY,
  title TEXT NOT NULL,
  done INTEGER NOT NULL DEFAULT 0,
  due TEXT,
  estimate REAL
);
INSERT INTO todos(id, title, done, due, estimate) VALUES
  (1, 'Buy oat milk', 1, '2026-11-20', 0.25),
  (2, 'Renew the TLS certificate', 0, '2026-11-24', 1.5),
  (3, 'Write the release notes for v1.2', 0, '2026-11-25', 2),
  (4, 'Review pull request #481', 1, NULL, 0.75),
  (5, 'Back up the production database', 0, '2026-11-23', NULL),
  (6, 'Call the plumber', 0, NULL, 0.5),
  (7, 'Book flights to Lisbon', 0, '2026-12-02', 1),
  (8, 'Fix flaky reconnect test', 1, '2026-11-21', 3),
  (9, 'Plan the team offsite', 0, '2026-12-10', 4),
  (10, 'Water the plants', 0, '2026-11-22', 0.1);
CREATE TABLE users(id INTEGER PRIMARY KEY, email TEXT UNIQUE NOT NULL, name TEXT);
INSERT INTO users(email, name) VALUES ('ada@example.com', 'Ada'), ('grace@example.com', 'Grace'), ('linus@example.com', 'Linus');
CREATE TABLE events(at TEXT, kind TEXT, payload BLOB);
INSERT INTO events VALUES ('2026-11-22T09:00:00Z', 'login', x'CAFE'), ('2026-11-22T09:01:10Z', 'logout', NULL);`)
	srv := testenv.StartServer(t, db)
	p := bwOpenDashboard(t, srv, "/?table=todos")
	p.waitJS("ten todos", bwWait, `window.__sqlws.rows === 10`)

	testenv.SQLite(t, db, `
INSERT INTO users(email, name) VALUES ('margaret@example.com', 'Margaret');
INSERT INTO todos(id, title, due, estimate) VALUES (11, 'Type an INSERT in sqlite3 and watch it appear', '2026-11-22', 0.1);
UPDATE todos SET done = 1 WHERE id = 5;
DELETE FROM todos WHERE id = 6;
UPDATE todos SET title = 'Renew the TLS certificate (expires Friday)' WHERE id = 2;
INSERT INTO events VALUES ('2026-11-22T09:05:00Z', 'login', x'BEEF');`)
	head := testenv.SQLiteInt(t, db, `SELECT max(seq) FROM sqlws_changes;`)
	p.waitJS("the changes", bwWait, fmt.Sprintf(`window.__sqlws.lastSeq === %d && window.__sqlws.pending === 0 && window.__sqlws.logEntries === %d`, head, head))

	fits := `document.documentElement.scrollWidth <= window.innerWidth`
	if !bwEval[bool](p, fits) {
		t.Errorf("at 1280×800 the page scrolls horizontally: scrollWidth %d", bwEval[int](p, `document.documentElement.scrollWidth`))
	}
	if os.Getenv("SQLWS_SCREENSHOT") == "1" {
		ctx, cancel := context.WithTimeout(p.ctx, bwWait)
		defer cancel()
		img, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
		if err != nil {
			t.Fatalf("screenshot: %v", err)
		}
		cfg, err := png.DecodeConfig(strings.NewReader(string(img)))
		if err != nil || cfg.Width != 1280 || cfg.Height != 800 {
			t.Fatalf("screenshot is %dx%d (%v), want 1280x800", cfg.Width, cfg.Height, err)
		}
		root, err := testenv.ModuleRoot()
		if err != nil {
			t.Fatal(err)
		}
		out := filepath.Join(root, "docs", "dashboard.png")
		if err := os.WriteFile(out, img, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("wrote %s (%d bytes)", out, len(img))
	}

	p.do("phone viewport", chromedp.EmulateViewport(390, 844, chromedp.EmulateMobile, chromedp.EmulateTouch))
	p.waitJS("the layout to settle at 390 px", bwWait, `window.innerWidth === 390`)
	if !bwEval[bool](p, fits) {
		t.Errorf("at 390 px the page scrolls horizontally: scrollWidth %d", bwEval[int](p, `document.documentElement.scrollWidth`))
	}
	// The grid, the new-row button and the log are all reachable on a phone.
	for _, sel := range []string{`[data-testid="new-row"]`, `[data-testid="grid"]`, `[data-testid="log"]`, `[data-testid="status"]`} {
		w := bwEval[float64](p, fmt.Sprintf(`document.querySelector(%s).getBoundingClientRect().width`, bwJS(sel)))
		if w <= 0 || w > 390 && sel != `[data-testid="grid"]` {
			t.Errorf("%s is %.0f px wide at 390 px", sel, w)
		}
	}
}

// ---------------------------------------------------------------------------
// The JS client library, in the browser against the real server

// bwClientSetup imports /sqlws.js into the page and starts the clients the test
// drives; results accumulate on window.T.
const bwClientSetup = `(async () => {
  const m = await import('/sqlws.js');
  const T = window.T = {
    url: m.resolveURL('/ws'),
    states: [], seqs: [], resumed: [], reconnecting: 0, opened: 0,
    dupSeqs: [], dupStats: null,
    lostSeqs: [], lostStats: null, lostSent: [],
    resets: [], errors: [],
  };

  // c1: plain client; reconnects and resumes.
  const c1 = window.c1 = m.connect('/ws', {minDelay: 50, maxDelay: 400});
  c1.on('status', s => T.states.push(s.state));
  c1.on('open', () => T.opened++);
  c1.on('reconnecting', () => T.reconnecting++);
  c1.on('resumed', d => T.resumed.push({fromSeq: d.fromSeq, caughtUp: d.caughtUp, head: d.head}));
  window.s1 = c1.subscribe({tables: ['items'], since: 0}, recs => T.seqs.push(...recs.map(r => r.seq)));

  // c2: every frame arrives twice.
  class DupWS extends WebSocket {
    set onmessage(fn) { super.onmessage = fn && (ev => { fn(ev); fn(ev); }); }
    get onmessage() { return super.onmessage; }
  }
  const c2 = window.c2 = m.connect('/ws', {WebSocket: DupWS});
  window.s2 = c2.subscribe({tables: ['items'], since: 0}, recs => {
    T.dupSeqs.push(...recs.map(r => r.seq));
    T.dupStats = {...window.s2.stats};
  });
  return true;
})()`

// TestBrowserClient tests /sqlws.js in Chromium against the real server: delivery,
// reconnect with backoff, resume with a catch-up count, dedupe of duplicated frames
// and of a resume from an older seq, reset, errors and close.
func TestBrowserClient(t *testing.T) {
	db := testenv.NewDB(t, `CREATE TABLE items(id INTEGER PRIMARY KEY, v TEXT);`)
	srv := testenv.StartServer(t, db)
	p := bwNewPage(t, srv.Addr)
	// Any same-origin document will do: the client is imported dynamically.
	p.navigate(srv.URL + "/sqlws.js")
	bwEval[bool](p, bwClientSetup)
	if got := bwEval[string](p, `T.url`); got != "ws://"+srv.Addr+"/ws" {
		t.Errorf("resolveURL('/ws') = %q, want ws://%s/ws", got, srv.Addr)
	}
	p.waitJS("both clients open and subscribed", bwWait, `c1.state === "open" && c2.state === "open" && s1.lastSeq === 0 && s2.lastSeq === 0`)

	testenv.SQLite(t, db, `INSERT INTO items(v) VALUES ('a'); INSERT INTO items(v) VALUES ('b'); INSERT INTO items(v) VALUES ('c');`)
	p.waitJS("three changes on c1", bwWait, `T.seqs.length === 3`)
	if got := bwEval[string](p, `JSON.stringify(T.seqs)`); got != "[1,2,3]" {
		t.Errorf("c1 seqs = %s, want [1,2,3]", got)
	}

	// Dedupe: every frame arrived twice, each record was delivered once.
	p.waitJS("three changes on c2", bwWait, `T.dupSeqs.length >= 3`)
	if got := bwEval[string](p, `JSON.stringify(T.dupSeqs)`); got != "[1,2,3]" {
		t.Errorf("duplicated frames: delivered seqs = %s, want [1,2,3]", got)
	}
	if got := bwEval[string](p, `JSON.stringify(s2.stats)`); got != `{"received":6,"delivered":3,"dropped":3}` {
		t.Errorf("duplicated frames: stats = %s, want 6 received, 3 delivered, 3 dropped", got)
	}

	// Dedupe of a resume from an older seq (a client that lost its acknowledgement):
	// the socket rewrites since to 0, the server resends 1..3, the client keeps only
	// what follows its since of 2.
	bwEval[bool](p, `(async () => {
	  const m = await import('/sqlws.js');
	  class LostAckWS extends WebSocket {
	    send(data) {
	      const msg = JSON.parse(data);
	      if (msg.type === 'subscribe') { msg.since = 0; T.lostSent.push(msg); }
	      super.send(JSON.stringify(msg));
	    }
	  }
	  const c3 = window.c3 = m.connect('/ws', {WebSocket: LostAckWS});
	  window.s3 = c3.subscribe({tables: ['items'], since: 2}, recs => {
	    T.lostSeqs.push(...recs.map(r => r.seq));
	  });
	  return true;
	})()`)
	p.waitJS("the resend from seq 0 to be filtered", bwWait, `s3.stats.received === 3`)
	if got := bwEval[string](p, `JSON.stringify({seqs: T.lostSeqs, stats: s3.stats, since: T.lostSent[0].since})`); got != `{"seqs":[3],"stats":{"received":3,"delivered":1,"dropped":2},"since":0}` {
		t.Errorf("resume from an older seq: %s, want only seq 3 delivered and 2 dropped", got)
	}

	// Reconnect and resume: kill -9, write while down, restart on the same address.
	srv.Kill()
	p.waitJS("c1 to be reconnecting", bwWait, `c1.state === "reconnecting" && T.reconnecting >= 1`)
	testenv.SQLite(t, db, `INSERT INTO items(v) VALUES ('d'); UPDATE items SET v = 'A' WHERE id = 1;`)
	p.waitJS("backoff to retry at least twice", bwSlow, `T.reconnecting >= 2`)
	bwRestartSameAddr(t, srv)
	p.waitJS("c1 to resume", bwSlow, `T.resumed.length === 1`)
	if got := bwEval[string](p, `JSON.stringify(T.resumed[0])`); got != `{"fromSeq":3,"caughtUp":2,"head":5}` {
		t.Errorf("resumed = %s, want fromSeq 3, caughtUp 2, head 5", got)
	}
	testenv.SQLite(t, db, `DELETE FROM items WHERE id = 2;`)
	p.waitJS("live changes after the resume", bwWait, `T.seqs.length === 6`)
	if got := bwEval[string](p, `JSON.stringify(T.seqs)`); got != "[1,2,3,4,5,6]" {
		t.Errorf("c1 seqs across the restart = %s, want [1,2,3,4,5,6]", got)
	}
	p.waitJS("c2 to catch up too, once each", bwWait, `T.dupSeqs.length === 6`)
	if got := bwEval[string](p, `JSON.stringify(T.dupSeqs)`); got != "[1,2,3,4,5,6]" {
		t.Errorf("c2 seqs across the restart = %s, want [1,2,3,4,5,6]", got)
	}
	// The resume carried the stream id of the first hello.
	if !bwEval[bool](p, `c1.stream === c1.hello.stream && typeof c1.stream === "string" && c1.stream.length > 0`) {
		t.Errorf("c1.stream = %v, want the hello's stream", bwEval[any](p, `c1.stream`))
	}

	// Reset: a since beyond the head is refused with reason "future".
	bwEval[bool](p, `(() => {
	  window.s4 = c1.subscribe({since: 1000, onReset: d => T.resets.push(d.reason)}, () => {});
	  window.s5 = c1.subscribe({tables: ['nope'], onError: d => T.errors.push(d.code)}, () => {});
	  return true;
	})()`)
	p.waitJS("the reset", bwWait, `T.resets.length === 1 && T.errors.length === 1`)
	if got := bwEval[string](p, `JSON.stringify({resets: T.resets, errors: T.errors, s4: s4.active, s5: s5.active, s1: s1.active})`); got != `{"resets":["future"],"errors":["unknown_table"],"s4":false,"s5":false,"s1":true}` {
		t.Errorf("reset and error = %s", got)
	}

	// Unsubscribe: acknowledged, and no more changes after it.
	bwEval[bool](p, `s2.unsubscribe().then(() => true)`)
	testenv.SQLite(t, db, `INSERT INTO items(v) VALUES ('e');`)
	p.waitJS("c1 to see the insert", bwWait, `T.seqs.length === 7`)
	p.waitJS("c3 to see the insert", bwWait, `T.lostSeqs.includes(7)`)
	if got := bwEval[int](p, `T.dupSeqs.length`); got != 6 {
		t.Errorf("after unsubscribe c2 got %d changes, want 6", got)
	}

	// close: resolves once closed, and nothing reconnects.
	got := bwEval[string](p, `Promise.all([c1.close(), c2.close(), c3.close()]).then(() =>
	  JSON.stringify([c1.state, c2.state, c3.state, c1._ws, c1._reconnectTimer]))`)
	if got != `["closed","closed","closed",null,null]` {
		t.Errorf("after close(): %s", got)
	}
	if !strings.Contains(bwEval[string](p, `(() => { try { c1.subscribe({}, () => {}); return "no error"; } catch (e) { return String(e); } })()`), "closed") {
		t.Errorf("subscribe after close did not throw")
	}
}
