// Unit checks of /sqlws.js's token option, with a fake WebSocket and fetch: the
// token on the WebSocket URL (access_token) and on REST (Authorization), a fresh
// token from the function before every reconnect, {type:'auth'} sent before the
// token's exp, and a reconnect with resume (since) on close 4001 or an error
// token_expired. Run by e2e/sqlwsjs_test.go (TestJSToken) next to sqlws.mjs. Prints
// "ok" and exits 0, or throws.
import { connect, jwtExp } from './sqlws.mjs';
import assert from 'node:assert/strict';

const b64 = (o) => Buffer.from(JSON.stringify(o)).toString('base64url');
const jwt = (claims) => `${b64({ alg: 'HS256', typ: 'JWT' })}.${b64(claims)}.sig`;
const now = () => Math.floor(Date.now() / 1000);

assert.equal(jwtExp(jwt({ sub: 'a', exp: 1234 })), 1234);
assert.equal(jwtExp(jwt({ sub: 'a' })), null);
assert.equal(jwtExp('garbage'), null);
assert.equal(jwtExp('a.%%%.c'), null);

const sockets = [];
class FakeWS {
  constructor(url) {
    this.url = url;
    this.sent = [];
    this.readyState = 0;
    sockets.push(this);
    setTimeout(() => {
      this.readyState = 1;
      this.onmessage({ data: JSON.stringify({ type: 'hello', version: 1, stream: 's', head: 10, oldest: 1 }) });
    }, 0);
  }
  send(d) { this.sent.push(JSON.parse(d)); }
  close(code) { this.readyState = 3; setTimeout(() => this.onclose && this.onclose({ code, reason: '' }), 0); }
  serverClose(code) { this.readyState = 3; this.onclose({ code, reason: '' }); }
  frame(m) { this.onmessage({ data: JSON.stringify(m) }); }
}
const tick = () => new Promise((r) => setTimeout(r, 5));
async function until(what, cond) {
  for (let i = 0; i < 400; i++) {
    if (cond()) return;
    await tick();
  }
  throw new Error('timed out waiting for ' + what);
}
const tokenOf = (ws) => new URL(ws.url).searchParams.get('access_token');

// A string token: on the URL, on REST; no refresh.
{
  sockets.length = 0;
  const fetches = [];
  const fetch = async (url, init) => {
    fetches.push(init.headers.Authorization);
    return { ok: true, status: 200, text: async () => JSON.stringify({ name: 't', primary_key: ['id'], columns: [] }) };
  };
  const c = connect('ws://h/ws?x=1', { WebSocket: FakeWS, fetch, token: 'static' });
  await until('a socket', () => sockets.length === 1 && c.state === 'open');
  assert.equal(tokenOf(sockets[0]), 'static');
  assert.equal(new URL(sockets[0].url).searchParams.get('x'), '1');
  c.liveQuery('t', {}, () => {});
  await until('a fetch', () => fetches.length > 0);
  assert.equal(fetches[0], 'Bearer static');
  await c.close();
}

// No token: no access_token parameter.
{
  sockets.length = 0;
  const c = connect('ws://h/ws', { WebSocket: FakeWS });
  await until('a socket', () => sockets.length === 1);
  assert.equal(new URL(sockets[0].url).search, '');
  assert.deepEqual(c.authHeaders(), {});
  await c.close();
}

// A token function: called per connection; refresh before exp; 4001 and
// token_expired reconnect at once with a fresh token and resume.
{
  sockets.length = 0;
  let calls = 0;
  let soon = true; // the next token expires within refreshBefore
  const token = async () => {
    calls++;
    return jwt({ sub: 'alice', n: calls, exp: now() + (soon ? 5 : 3600) });
  };
  const c = connect('ws://h/ws', { WebSocket: FakeWS, token, minDelay: 60000, maxDelay: 60000 });
  const got = [];
  const authed = [];
  c.on('authed', (d) => authed.push(d.exp));
  c.subscribe({ table: 't' }, (recs) => got.push(...recs.map((r) => r.seq)));
  await until('the first socket', () => sockets.length === 1 && c.state === 'open');
  const ws1 = sockets[0];
  assert.equal(calls >= 1, true);
  assert.equal(JSON.parse(Buffer.from(tokenOf(ws1).split('.')[1], 'base64url')).n, 1);
  ws1.frame({ type: 'subscribed', id: '1', head: 10 });
  ws1.frame({ type: 'changes', id: '1', changes: [{ seq: 11, table: 't', op: 'insert', pk: { id: 1 }, old: null, new: { id: 1 } }] });
  assert.deepEqual(got, [11]);

  // exp is 5 s away, less than refreshBefore (30 s): a fresh token goes at once.
  soon = false;
  await until('an auth message', () => ws1.sent.some((m) => m.type === 'auth'));
  const auth = ws1.sent.find((m) => m.type === 'auth');
  assert.equal(JSON.parse(Buffer.from(auth.token.split('.')[1], 'base64url')).n, 2);
  assert.equal(c.token, auth.token);
  ws1.frame({ type: 'authed', exp: now() + 3600 });
  assert.equal(authed.length, 1);
  assert.equal(sockets.length, 1, 'refresh in place, no reconnect');

  // The server closes with 4001: a fresh token, a new socket at once (despite a
  // 60 s backoff), resuming from seq 11.
  const before = calls;
  ws1.serverClose(4001);
  await until('the second socket', () => sockets.length === 2 && c.state === 'open');
  const ws2 = sockets[1];
  assert.equal(calls, before + 1);
  assert.equal(JSON.parse(Buffer.from(tokenOf(ws2).split('.')[1], 'base64url')).n, calls);
  await until('a resubscribe', () => ws2.sent.some((m) => m.type === 'subscribe'));
  assert.equal(ws2.sent.find((m) => m.type === 'subscribe').since, 11);
  ws2.frame({ type: 'subscribed', id: '1', head: 12 });
  ws2.frame({ type: 'changes', id: '1', changes: [{ seq: 12, table: 't', op: 'insert', pk: { id: 2 }, old: null, new: { id: 2 } }] });
  assert.deepEqual(got, [11, 12]);

  // An error token_expired: reconnect at once too, resuming from 12.
  const errors = [];
  c.on('error', (d) => errors.push(d.code));
  ws2.frame({ type: 'error', id: null, code: 'token_expired', message: 'the token expired' });
  await until('the third socket', () => sockets.length === 3 && c.state === 'open');
  assert.deepEqual(errors, ['token_expired']);
  const ws3 = sockets[2];
  await until('a resubscribe', () => ws3.sent.some((m) => m.type === 'subscribe'));
  assert.equal(ws3.sent.find((m) => m.type === 'subscribe').since, 12);
  assert.equal(c.authHeaders().Authorization, 'Bearer ' + c.token);
  await c.close();
}

// A token function that fails: an error event, then a retry (with backoff).
{
  sockets.length = 0;
  let calls = 0;
  const c = connect('ws://h/ws', {
    WebSocket: FakeWS,
    minDelay: 1,
    maxDelay: 2,
    token: () => {
      calls++;
      if (calls === 1) throw new Error('no session');
      return 'later';
    },
  });
  const errors = [];
  c.on('error', (d) => errors.push(d.code + ' ' + d.message));
  await until('a socket after the retry', () => sockets.length === 1 && c.state === 'open');
  assert.deepEqual(errors, ['token_unavailable no session']);
  assert.equal(tokenOf(sockets[0]), 'later');
  await c.close();
}
console.log('ok');
