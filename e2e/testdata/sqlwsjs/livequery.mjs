// Unit checks of /sqlws.js's filtered subscriptions and liveQuery, with a fake
// WebSocket and fetch: the record shapes of protocol.md (moves, key changes, a move
// out under a changed key), paging, reset and ending errors. Run by
// e2e/sqlwsjs_test.go (TestJSLiveQuery), which puts web/static/sqlws.js next to this
// file as sqlws.mjs. Prints "ok" and exits 0, or throws.
import { connect, parseOrder, compareValues, whereString, selectString } from './sqlws.mjs';
import assert from 'node:assert/strict';

assert.deepEqual(parseOrder('title.desc,"a.b".asc.nullslast,x.y.desc'), [
  { column: 'title', desc: true, nullsFirst: false },
  { column: 'a.b', desc: false, nullsFirst: false },
  { column: 'x.y', desc: true, nullsFirst: false },
]);
assert.equal(whereString({ done: 'eq.0', t: 'like.a&b' }), 'done=eq.0&t=like.a%26b');
assert.equal(whereString('?a=eq.1'), 'a=eq.1');
assert.equal(selectString(['id', 'a,b', 'c.d']), 'id,"a,b","c.d"');
assert.equal(selectString('*'), null);
assert.ok(compareValues(null, 0) < 0 && compareValues(1, 'a') < 0 && compareValues('a', { $blob: '00' }) < 0);
assert.ok(compareValues({ $real: '-Infinity' }, -1e308) < 0);
assert.ok(compareValues('\uFFFF', '\u{10000}') < 0); // code point order

const sent = [];
let sock;
class FakeWS {
  constructor(url) { sock = this; this.readyState = 0; setTimeout(() => { this.readyState = 1; this.onmessage({ data: JSON.stringify({ type: 'hello', version: 1, stream: 's', head: 10, oldest: 1 }) }); }, 0); }
  send(d) { sent.push(JSON.parse(d)); }
  close(code) { this.readyState = 3; setTimeout(() => this.onclose && this.onclose({ code, reason: '' }), 0); }
}
let rows = [{ id: 1, title: 'b', done: 0 }, { id: 2, title: 'a', done: 0 }];
let fetches = [];
const fetch = async (url) => {
  fetches.push(url);
  const u = new URL(url);
  let body;
  if (u.pathname === '/api/tables/todos') body = { name: 'todos', primary_key: ['id'], columns: [] };
  else if (!u.searchParams.get('after')) body = { rows: rows.slice(0, 1), next: 'c1', seq: 10 };
  else body = { rows: rows.slice(1), next: null, seq: 11 };
  return { ok: true, status: 200, text: async () => JSON.stringify(body) };
};
const c = connect('ws://h/ws', { WebSocket: FakeWS, fetch });
const ups = [];
let errs = [];
const q = c.liveQuery('todos', { where: 'done=eq.0', select: 'title', order: 'title', onError: (d) => errs.push(d.code) }, (rs, info) => ups.push(info.reason + ' ' + rs.map((r) => r.id + r.title).join(',')));
const tick = () => new Promise((r) => setTimeout(r, 5));
await tick(); await tick(); await tick();
const sub = sent.find((m) => m.type === 'subscribe');
assert.deepEqual(sub, { type: 'subscribe', id: '1', tables: ['todos'], where: 'done=eq.0', select: 'title,id,title', since: 10, stream: 's' });
assert.ok(fetches[1].includes('done=eq.0&select=title%2Cid%2Ctitle&order=title&limit=1000'), fetches[1]);
const frame = (changes) => sock.onmessage({ data: JSON.stringify({ type: 'changes', id: '1', changes }) });
sock.onmessage({ data: JSON.stringify({ type: 'subscribed', id: '1', head: 10 }) });
await q.ready;
assert.equal(ups.at(-1), 'snapshot 2a,1b');
frame([
  { seq: 11, table: 'todos', op: 'insert', pk: { id: 3 }, old: null, new: { id: 3, title: 'c' } },
  { seq: 13, table: 'todos', op: 'update', moved: 'out', pk: { id: 2 }, old: { id: 2, title: 'a' }, new: null },
]);
assert.equal(ups.at(-1), 'changes 1b,3c');
frame([{ seq: 15, table: 'todos', op: 'update', moved: 'in', pk: { id: 9 }, old: null, new: { id: 9, title: 'a0' } }]);
assert.equal(ups.at(-1), 'changes 9a0,1b,3c');
// key change + retitle
frame([{ seq: 16, table: 'todos', op: 'update', pk: { id: 7 }, old: { id: 1, title: 'b' }, new: { id: 7, title: 'z' } }]);
assert.equal(ups.at(-1), 'changes 9a0,3c,7z');
// moved out with a key change: remove under the old key
frame([{ seq: 17, table: 'todos', op: 'update', moved: 'out', pk: { id: 8 }, old: { id: 7, title: 'z' }, new: null }]);
assert.equal(ups.at(-1), 'changes 9a0,3c');
frame([{ seq: 18, table: 'todos', op: 'delete', pk: { id: 3 }, old: { id: 3, title: 'c' }, new: null }]);
assert.equal(ups.at(-1), 'changes 9a0');
assert.equal(q.seq, 18);
assert.deepEqual(q.get({ id: 9 }), { id: 9, title: 'a0' });
// reset reloads
rows = [{ id: 5, title: 'r' }];
sock.onmessage({ data: JSON.stringify({ type: 'reset', id: '1', reason: 'pruned', stream: 's', head: 30 }) });
await tick(); await tick(); await tick();
assert.equal(ups.at(-1), 'snapshot 5r', ups.join(' | '));
const sub2 = sent.filter((m) => m.type === 'subscribe').at(-1);
assert.equal(sub2.id, '2'); assert.equal(sub2.since, 10);
sock.onmessage({ data: JSON.stringify({ type: 'subscribed', id: '2', head: 30 }) });
// unknown_column ends the query
sock.onmessage({ data: JSON.stringify({ type: 'error', id: '2', code: 'unknown_column', message: 'gone' }) });
assert.deepEqual(errs, ['unknown_column']);
assert.equal(q.active, false);
assert.equal(c.subscriptions.length, 0);
console.log('ok');
await c.close();
