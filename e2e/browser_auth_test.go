package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/golang-jwt/jwt/v5"

	"github.com/sqlws/sqlws/internal/testenv"
)

// bwSubmitToken types tok into the dashboard's token form and submits it.
func (p *bwPage) submitToken(tok string) {
	p.t.Helper()
	bwEval[bool](p, fmt.Sprintf(`(() => {
		const input = document.querySelector('[data-testid="token-input"]');
		input.focus();
		input.value = %s;
		input.dispatchEvent(new Event('input', {bubbles: true}));
		document.querySelector('[data-testid="token-form"]').requestSubmit();
		return true;
	})()`, bwJS(tok)))
}

const bwSigninShown = `!document.querySelector('[data-testid="signin"]').hidden`

// TestBrowserToken: on a server with --jwt-secret-file the dashboard asks for a
// token; a bad one is refused with the server's reason and asked for again; a valid
// HS256 token shows the rows, streams a CLI insert live (the WebSocket carries it as
// access_token, which the server never logs) and stays in sessionStorage; sign out
// forgets it and asks again.
func TestBrowserToken(t *testing.T) {
	db := testenv.NewDB(t, `
CREATE TABLE todos(id INTEGER PRIMARY KEY, title TEXT NOT NULL);
INSERT INTO todos(id, title) VALUES (1, 'milk'), (2, 'eggs');`)
	srv := testenv.StartServer(t, db, "--jwt-secret-file", secretFile(t), "--log-level", "debug")
	p := bwNewPage(t, srv.Addr)
	p.navigate(srv.URL + "/")
	p.waitJS("the token form", bwWait, bwSigninShown)
	if n := bwEval[int](p, `document.querySelectorAll('[data-testid="rows"] [data-key]').length`); n != 0 {
		t.Fatalf("%d rows shown before a token", n)
	}

	p.submitToken("not-a-token")
	p.waitJS("the refusal and the form again", bwWait, bwSigninShown+` && document.querySelector('[data-testid="token-error"]').textContent.includes('refused')`)
	expired := hsToken(t, jwt.MapClaims{"sub": "alice", "exp": 1})
	p.submitToken(expired)
	p.waitJS("the expired token refused", bwWait, bwSigninShown+` && document.querySelector('[data-testid="token-error"]').textContent.includes('expired')`)
	if s := bwEval[string](p, `sessionStorage.getItem('sqlws.token') || ''`); s != "" {
		t.Errorf("a refused token was kept: %q", s)
	}

	good := hsToken(t, jwt.MapClaims{"sub": "alice"})
	p.submitToken(good)
	p.waitJS("the dashboard to load", bwWait, `!(`+bwSigninShown+`) && window.__sqlws.ready && window.__sqlws.subscribed`)
	p.waitJS("the status to say connected", bwWait, `document.querySelector('[data-testid="status"]').dataset.state === "connected"`)
	p.waitJS("the seeded rows", bwWait, bwCell(`{"id":2}`, "title")+` === "eggs"`)
	testenv.SQLite(t, db, `INSERT INTO todos(id, title) VALUES (3, 'from the shell');`)
	p.waitJS("the CLI insert live", bwWait, bwCell(`{"id":3}`, "title")+` === "from the shell"`)
	if s := bwEval[string](p, `sessionStorage.getItem('sqlws.token') || ''`); s != good {
		t.Errorf("sessionStorage holds %q, want the token", s)
	}
	for _, tok := range []string{good, "not-a-token", expired} {
		if strings.Contains(srv.Stderr(), tok) {
			t.Errorf("the server logged a token:\n%s", srv.Stderr())
		}
	}

	// A reload keeps the tab's token: no form.
	p.navigate(srv.URL + "/")
	p.waitJS("the dashboard to load again", bwWait, `window.__sqlws.ready && window.__sqlws.subscribed && !(`+bwSigninShown+`)`)

	p.waitJS("the sign-out button", bwWait, `!document.querySelector('[data-testid="sign-out"]').hidden`)
	// Sign out reloads the page: wait for that navigation before polling the new one.
	ctx, cancel := context.WithTimeout(p.ctx, bwWait)
	_, err := chromedp.RunResponse(ctx, chromedp.Click(chromedp.CSS(`[data-testid="sign-out"]`)))
	cancel()
	if err != nil {
		t.Fatalf("sign out: %v\npage state: %s", err, p.state())
	}
	p.waitJS("the token form after sign out", bwWait, bwSigninShown+` && !sessionStorage.getItem('sqlws.token')`)
}

// TestBrowserClientToken: /sqlws.js's token function against the real server in
// Chromium: the token reaches the WebSocket (access_token) and liveQuery's REST
// (Authorization); before the token's exp the client fetches a fresh one and sends
// it in place ({type:'auth'}), answered authed with the new exp, without
// reconnecting; the stream goes on with a CLI insert.
func TestBrowserClientToken(t *testing.T) {
	db := testenv.NewDB(t, `CREATE TABLE items(id INTEGER PRIMARY KEY, v TEXT); INSERT INTO items(v) VALUES ('seed');`)
	srv := testenv.StartServer(t, db, "--jwt-secret-file", secretFile(t))
	now := time.Now()
	first := hsToken(t, jwt.MapClaims{"sub": "alice", "exp": now.Add(40 * time.Second).Unix()})
	fresh := hsToken(t, jwt.MapClaims{"sub": "alice", "exp": now.Add(time.Hour).Unix()})
	p := bwNewPage(t, srv.Addr)
	p.navigate(srv.URL + "/sqlws.js")
	bwEval[bool](p, fmt.Sprintf(`(async () => {
	  const m = await import('/sqlws.js');
	  const toks = [%s, %s];
	  window.T = {calls: 0, authed: [], connects: 0, seqs: [], rows: null, errors: []};
	  // refreshBefore just under the first token's 40 s: the refresh is due at once.
	  const c = window.c = m.connect('/ws', {refreshBefore: 39000, token: async () => toks[Math.min(T.calls++, 1)]});
	  c.on('connecting', () => T.connects++);
	  c.on('authed', (d) => T.authed.push(d.exp));
	  c.on('error', (d) => T.errors.push(d.code));
	  c.subscribe({table: 'items'}, (recs) => T.seqs.push(...recs.map((r) => r.seq)));
	  c.liveQuery('items', {}, (rows) => { T.rows = rows.map((r) => r.v); });
	  return true;
	})()`, bwJS(first), bwJS(fresh)))
	p.waitJS("the refresh answered authed", bwWait, `T.authed.length === 1`)
	if got, want := bwEval[int64](p, `T.authed[0]`), now.Add(time.Hour).Unix(); got != want {
		t.Errorf("authed exp %d, want %d (the fresh token's)", got, want)
	}
	if got := bwEval[string](p, `JSON.stringify({calls: T.calls, connects: T.connects, token: c.token === `+bwJS(fresh)+`, errors: T.errors})`); got != `{"calls":2,"connects":1,"token":true,"errors":[]}` {
		t.Errorf("after the refresh: %s, want 2 token calls, 1 connection, the fresh token in use, no errors", got)
	}
	p.waitJS("liveQuery's rows over REST", bwWait, `T.rows && T.rows.includes('seed')`)
	testenv.SQLite(t, db, `INSERT INTO items(v) VALUES ('after refresh');`)
	p.waitJS("the insert after the refresh", bwWait, `T.seqs.length >= 1 && T.rows.includes('after refresh')`)
	for _, tok := range []string{first, fresh} {
		if strings.Contains(srv.Stderr(), tok) {
			t.Errorf("the server logged a token:\n%s", srv.Stderr())
		}
	}
}
