// sqlws.js: the browser (and Node) client for the sqlws change feed, protocol v1.
//
//   import { connect } from '/sqlws.js';
//   const client = connect('/ws');
//   const sub = client.subscribe({ tables: ['todos'], since: seq }, changes => { … });
//   const q = client.liveQuery('todos', { where: 'done=eq.0', order: 'title' }, rows => { … });
//
// It keeps one WebSocket open, reconnects with exponential backoff and full jitter,
// resumes every subscription from its last seen seq (and the stream id of the first
// hello) and drops records it has already applied. See docs/client.md.
//
// No build step, no dependencies: a plain ES module.

const DEFAULTS = {
  minDelay: 250, // ms: backoff base; attempt n waits random(0, min(maxDelay, minDelay·2^(n-1)))
  maxDelay: 30000, // ms: backoff cap
  openTimeout: 10000, // ms: give up on a socket that has not said hello by then
  settleTime: 250, // ms: a resuming subscription counts as caught up after this much quiet
  retryDelay: 1000, // ms: wait before re-sending a subscribe refused as "unavailable"
  refreshBefore: 30000, // ms: with a token function, send a fresh token this long before the current one expires
};

// TOKEN_EXPIRED is the close code of a WebSocket whose token expired (docs/protocol.md).
const TOKEN_EXPIRED = 4001;
// MAX_TIMEOUT is the longest setTimeout delay (2^31-1 ms); longer ones fire at once.
const MAX_TIMEOUT = 2147483647;

/**
 * jwtExp returns the exp claim (seconds since the epoch) of a JWT, or null. It only
 * decodes the payload, without verifying anything: the client uses it to know when
 * to refresh, the server is what checks the token. Exported for tests.
 */
export function jwtExp(token) {
  if (typeof token !== 'string') return null;
  const parts = token.split('.');
  if (parts.length !== 3) return null;
  try {
    let b64 = parts[1].replace(/-/g, '+').replace(/_/g, '/');
    b64 += '='.repeat((4 - (b64.length % 4)) % 4);
    const bin = atob(b64);
    const bytes = Uint8Array.from(bin, (c) => c.charCodeAt(0));
    const exp = JSON.parse(new TextDecoder().decode(bytes)).exp;
    return typeof exp === 'number' && Number.isFinite(exp) ? exp : null;
  } catch {
    return null;
  }
}

// withToken adds ?access_token= to a WebSocket URL: browsers cannot set headers on a
// WebSocket handshake. The server removes it before anything logs the URL.
function withToken(url, token) {
  if (!token) return url;
  const u = new URL(url);
  u.searchParams.set('access_token', token);
  return u.href;
}

/** Protocol version this client speaks. */
export const PROTOCOL_VERSION = 1;

/**
 * fullJitter returns the reconnect delay for attempt n (1-based): a uniformly random
 * duration in [0, min(maxDelay, minDelay·2^(n-1))). Exported for tests.
 */
export function fullJitter(attempt, minDelay, maxDelay, random = Math.random) {
  const cap = Math.min(maxDelay, minDelay * 2 ** Math.max(0, attempt - 1));
  return Math.floor(random() * cap);
}

/**
 * resolveURL turns a URL that may be relative ("/ws") into an absolute ws: or wss: URL,
 * resolving against the page location when there is one. Exported for tests.
 */
export function resolveURL(url, base) {
  if (base === undefined && typeof location !== 'undefined') base = location.href;
  const u = new URL(String(url), base);
  if (u.protocol === 'http:') u.protocol = 'ws:';
  else if (u.protocol === 'https:') u.protocol = 'wss:';
  if (u.protocol !== 'ws:' && u.protocol !== 'wss:') {
    throw new TypeError(`sqlws: unsupported URL scheme ${u.protocol}`);
  }
  u.hash = '';
  return u.href;
}

/**
 * dedupe returns the records of list whose seq is greater than lastSeq (and strictly
 * increasing), and the new last seq. lastSeq null accepts everything. Exported for
 * tests; the client applies it to every changes frame.
 */
export function dedupe(list, lastSeq) {
  const out = [];
  let last = lastSeq;
  for (const rec of list) {
    // A custom parse may return seq as a BigInt or a number object; seq stays far
    // below 2^53, so Number() is exact.
    const seq = rec == null ? NaN : Number(rec.seq);
    if (!Number.isInteger(seq)) continue;
    if (last != null && seq <= last) continue;
    out.push(rec);
    last = seq;
  }
  return { records: out, lastSeq: last };
}

// Errors after which the server has ended a running subscription (protocol.md).
const ENDING_ERRORS = new Set(['table_dropped', 'unknown_column']);

/**
 * whereString turns a row filter into the string subscribe sends: the REST list
 * grammar as it appears after '?' ('done=eq.0&owner=eq.alice'). It accepts that
 * string (a leading '?' is dropped), a URLSearchParams, or an object whose values are
 * 'op.value' strings or arrays of them ({done: 'eq.0', n: ['gt.1', 'lt.9']}). Empty
 * means no filter (null). Exported for tests.
 */
export function whereString(where) {
  if (where === undefined || where === null) return null;
  let s;
  if (typeof where === 'string') s = where.startsWith('?') ? where.slice(1) : where;
  else if (typeof URLSearchParams !== 'undefined' && where instanceof URLSearchParams) s = where.toString();
  else if (typeof where === 'object') {
    const parts = [];
    for (const [k, v] of Object.entries(where)) {
      for (const one of Array.isArray(v) ? v : [v]) {
        // Values given as an object are literal text: encode them, so a '&' or '%' in
        // a value cannot change the filter's shape.
        parts.push(`${encodeURIComponent(k)}=${encodeURIComponent(String(one))}`);
      }
    }
    s = parts.join('&');
  } else throw new TypeError('sqlws: where must be a string, URLSearchParams or object');
  return s === '' ? null : s;
}

/**
 * selectString turns a column list into REST's select grammar: a string is kept as
 * it is; an array is joined with commas, names holding ',', '.', '"' or '\' double-
 * quoted. Empty, '*' or ['*'] means every column (null). Exported for tests.
 */
export function selectString(select) {
  if (select === undefined || select === null) return null;
  let s;
  if (typeof select === 'string') s = select;
  else if (Array.isArray(select)) s = select.map((c) => quoteListItem(String(c))).join(',');
  else throw new TypeError('sqlws: select must be a string or an array of column names');
  return s === '' || s === '*' ? null : s;
}

function quoteListItem(name) {
  if (name !== '*' && !/[,."\\]/.test(name) && name.trim() === name && name !== '') return name;
  return '"' + name.replace(/["\\]/g, (c) => '\\' + c) + '"';
}

/**
 * parseOrder parses REST's order grammar ('col[.asc|.desc][.nullsfirst|.nullslast]',
 * comma-separated, a column optionally double-quoted) into [{column, desc,
 * nullsFirst}]. The server validates the same string; this only needs to read what
 * it accepts. Exported for tests.
 */
export function parseOrder(order) {
  const out = [];
  if (order === undefined || order === null || order === '') return out;
  if (Array.isArray(order)) order = order.join(',');
  const s = String(order);
  const mod = (m) => ['asc', 'desc', 'nullsfirst', 'nullslast'].includes(m.toLowerCase());
  let i = 0;
  while (i <= s.length) {
    let column;
    let mods = [];
    if (s[i] === '"') {
      let text = '';
      i++;
      while (i < s.length && s[i] !== '"') {
        if (s[i] === '\\' && i + 1 < s.length) i++;
        text += s[i++];
      }
      i++; // the closing quote
      let j = s.indexOf(',', i);
      if (j < 0) j = s.length;
      const tail = s.slice(i, j);
      if (tail.startsWith('.')) mods = tail.slice(1).split('.');
      column = text;
      i = j + 1;
    } else {
      let j = s.indexOf(',', i);
      if (j < 0) j = s.length;
      const parts = s.slice(i, j).split('.');
      // As the server does: peel up to two modifiers off the end; the rest, dots and
      // all, is the column.
      while (parts.length > 1 && mods.length < 2 && mod(parts[parts.length - 1])) mods.unshift(parts.pop());
      column = parts.join('.');
      i = j + 1;
    }
    let desc = false;
    let nullsFirst = null;
    for (const m of mods) {
      const l = m.toLowerCase();
      if (l === 'desc') desc = true;
      else if (l === 'nullsfirst') nullsFirst = true;
      else if (l === 'nullslast') nullsFirst = false;
    }
    // SQLite's default: NULL is the smallest value.
    out.push({ column, desc, nullsFirst: nullsFirst === null ? !desc : nullsFirst });
    if (i > s.length) break;
  }
  return out;
}

// SQLite's order across storage classes: NULL < INTEGER/REAL < TEXT < BLOB.
function storageRank(v) {
  if (v === null || v === undefined) return 0;
  const t = typeof v;
  if (t === 'number' || t === 'bigint') return 1;
  if (t === 'string') return 2;
  if (t === 'object' && typeof v.$real === 'string') return 1;
  if (t === 'object' && typeof v.$blob === 'string') return 3;
  return 4;
}

function compareNumbers(a, b) {
  if (typeof a === 'object') a = a.$real === '-Infinity' ? -Infinity : Infinity;
  if (typeof b === 'object') b = b.$real === '-Infinity' ? -Infinity : Infinity;
  if (typeof a === 'bigint' && typeof b === 'bigint') return a < b ? -1 : a > b ? 1 : 0;
  // Mixed bigint/number: the relational operators compare them exactly.
  return a < b ? -1 : a > b ? 1 : 0;
}

// compareText compares by code point, as SQLite's BINARY collation compares UTF-8
// bytes; JavaScript's < compares UTF-16 units, which differs only between a surrogate
// and a unit from U+E000 up.
function compareText(a, b) {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    let x = a.charCodeAt(i);
    let y = b.charCodeAt(i);
    if (x === y) continue;
    if (x >= 0xd800 && y >= 0xd800) {
      x += x < 0xe000 ? 0x2000 : -0x800;
      y += y < 0xe000 ? 0x2000 : -0x800;
    }
    return x < y ? -1 : 1;
  }
  return a.length - b.length < 0 ? -1 : a.length > b.length ? 1 : 0;
}

/**
 * compareValues orders two values in the change-record encoding as SQLite's ORDER BY
 * does with the BINARY collation (NULL, numbers, text, BLOBs). Exported for tests.
 */
export function compareValues(a, b) {
  const ra = storageRank(a);
  const rb = storageRank(b);
  if (ra !== rb) return ra < rb ? -1 : 1;
  switch (ra) {
    case 0:
      return 0;
    case 1:
      return compareNumbers(a, b);
    case 2:
      return compareText(a, b);
    case 3:
      return a.$blob < b.$blob ? -1 : a.$blob > b.$blob ? 1 : 0;
    default:
      return compareText(stringifyKey(a), stringifyKey(b));
  }
}

// stringifyKey is JSON that also takes the BigInts a custom parse may produce.
function stringifyKey(v) {
  return JSON.stringify(v, (k, x) => (typeof x === 'bigint' ? { $int: x.toString() } : x));
}

/** Connection states, in client.state and in 'status' events. */
export const State = Object.freeze({
  CONNECTING: 'connecting',
  OPEN: 'open',
  RECONNECTING: 'reconnecting',
  CLOSED: 'closed',
});

class Emitter {
  constructor() {
    this._handlers = new Map();
  }
  /** on registers fn for event type and returns a function that removes it. */
  on(type, fn) {
    if (!this._handlers.has(type)) this._handlers.set(type, new Set());
    this._handlers.get(type).add(fn);
    return () => this.off(type, fn);
  }
  /** once is on for a single call. */
  once(type, fn) {
    const off = this.on(type, (d) => {
      off();
      fn(d);
    });
    return off;
  }
  off(type, fn) {
    const s = this._handlers.get(type);
    if (s) s.delete(fn);
  }
  _emit(type, detail) {
    const s = this._handlers.get(type);
    if (!s) return;
    for (const fn of [...s]) {
      try {
        fn(detail);
      } catch (err) {
        reportError(err);
      }
    }
  }
}

function reportError(err) {
  // A throwing callback must not break the connection; surface it asynchronously the
  // way an event listener's exception would be.
  setTimeout(() => {
    throw err;
  }, 0);
}

/**
 * Subscription is the handle subscribe returns.
 *
 *   id        the protocol subscription id (a string, unique within the client)
 *   tables    the tables it follows ([] = all)
 *   where     the row filter as sent (REST list grammar), or null
 *   select    the column list as sent, or null
 *   lastSeq   seq of the last record delivered to the callback (or the since it
 *             started from); resumes continue after it
 *   active    false once unsubscribed, reset or refused
 *   stats     {received, delivered, dropped}: records in frames, handed to the
 *             callback, dropped as duplicates
 */
class Subscription {
  constructor(client, id, tables, since, onChanges, opts, where, select) {
    this._client = client;
    this.id = id;
    this.tables = tables;
    this.where = where; // the filter as sent (REST list grammar), or null
    this.select = select; // the column list as sent, or null
    this.lastSeq = since;
    this.active = true;
    this.stats = { received: 0, delivered: 0, dropped: 0 };
    this._onChanges = onChanges;
    this._opts = opts;
    this._subscribed = false; // acknowledged on the current connection
    this._sent = false; // subscribe sent on the current connection
    this._resuming = null; // {fromSeq, caughtUp, head, timer}
    this._retryTimer = null;
    this._unsubWaiters = [];
  }

  /**
   * unsubscribe stops the subscription. No more changes are delivered after it is
   * called. The returned promise resolves when the server has confirmed (or at once
   * when no connection is open).
   */
  unsubscribe() {
    return this._client._unsubscribe(this);
  }
}

/**
 * Client is what connect returns. Events (client.on(type, fn)):
 *
 *   status        {state, attempt, delay?}          every state change
 *   connecting    {attempt, url}                    a socket is being opened
 *   open          {stream, head, oldest, version, reconnected}  hello received
 *   reconnecting  {attempt, delay, code, reason}    the socket closed; retry in delay ms
 *   resumed       {subscription, id, fromSeq, caughtUp, head}    a subscription caught up after a reconnect
 *   reset         {subscription, id, reason, head, stream}      the server cannot continue a subscription
 *   error         {subscription, id, code, message} an error frame from the server
 *                 (code token_expired: reconnecting with a fresh token; code
 *                 token_unavailable: the token function threw or rejected)
 *   authed        {exp}                             the server took a refreshed token
 *   close         {}                                close() finished
 */
class Client extends Emitter {
  constructor(url, options = {}) {
    super();
    this.url = resolveURL(url, options.base);
    this.options = { ...DEFAULTS, ...options };
    this._WebSocket = options.WebSocket || globalThis.WebSocket;
    if (typeof this._WebSocket !== 'function') {
      throw new TypeError('sqlws: no WebSocket implementation; pass options.WebSocket');
    }
    this._parse = options.parse || JSON.parse;
    this.state = State.CONNECTING;
    this.stream = options.stream || null; // pinned from the first hello
    this.hello = null; // the last hello frame
    this.attempt = 0; // consecutive failed attempts
    this._subs = new Map(); // id → Subscription
    this._unsubWaiting = new Map(); // id → settle function of a pending unsubscribe
    this._nextId = 1;
    this._ws = null;
    this._helloed = false; // hello received on the current socket
    this._everOpen = false;
    this._reconnectTimer = null;
    this._openTimer = null;
    this._closing = null; // {promise, resolve}
    this._onOnline = null;
    // options.token: a string, or a function returning one (or a Promise of one),
    // called again before every (re)connect and before the token expires.
    this._tokenOpt = options.token ?? null;
    if (this._tokenOpt !== null && typeof this._tokenOpt !== 'string' && typeof this._tokenOpt !== 'function') {
      throw new TypeError('sqlws: token must be a string or a function');
    }
    this.token = typeof this._tokenOpt === 'string' ? this._tokenOpt : null; // the token in use
    this._refreshTimer = null;
    this._tokenPending = null; // the token function's call in progress
    this._openGen = 0; // which _open a token that arrives late belongs to
    if (typeof addEventListener === 'function' && typeof window !== 'undefined') {
      // Back online: do not sit out the rest of a long backoff.
      this._onOnline = () => {
        if (this.state === State.RECONNECTING && this._reconnectTimer) {
          clearTimeout(this._reconnectTimer);
          this._reconnectTimer = null;
          this._open();
        }
      };
      window.addEventListener('online', this._onOnline);
    }
    // Open on the next microtask, so listeners added right after connect() see the
    // first 'connecting' and 'status' events.
    queueMicrotask(() => this._open());
  }

  /** subscriptions lists the active subscriptions. */
  get subscriptions() {
    return [...this._subs.values()];
  }

  /**
   * subscribe follows tables (omitted or [] = every tracked table) from seq since
   * (omitted = live from the current head). onChanges(records, subscription) receives
   * arrays of change records, each with seq greater than any delivered before.
   *
   * spec.table names one table (the same as tables: [table]). spec.where (a row
   * filter in the REST list grammar: 'done=eq.0&owner=eq.alice', a URLSearchParams,
   * or an object {done: 'eq.0'}) and spec.select (a column list: 'id,title' or
   * ['id', 'title']) filter the stream on the server; they need exactly one table.
   * A filtered subscription gets updates that move a row into the filter as
   * {op: 'update', moved: 'in', old: null} and out of it as {moved: 'out', new: null}.
   *
   * spec may also carry callbacks:
   *   onReset({reason, head, stream, subscription})  the server cannot continue; the
   *       subscription is over: reload state and subscribe again with the new seq
   *   onError({code, message, subscription})          an error frame for this subscription
   *   onSubscribed({head, subscription})               acknowledged (on every connection)
   *   onResumed({fromSeq, caughtUp, head, subscription}) caught up after a reconnect
   */
  subscribe(spec = {}, onChanges = () => {}) {
    if (this.state === State.CLOSED || this._closing) throw new Error('sqlws: client is closed');
    if (typeof spec === 'function') {
      onChanges = spec;
      spec = {};
    }
    let tables = Array.isArray(spec.tables) ? [...spec.tables] : [];
    if (spec.table !== undefined && spec.table !== null) {
      if (typeof spec.table !== 'string') throw new TypeError('sqlws: table must be a string');
      if (tables.length && !(tables.length === 1 && tables[0] === spec.table)) {
        throw new TypeError('sqlws: give table or tables, not both');
      }
      tables = [spec.table];
    }
    const where = whereString(spec.where);
    const select = selectString(spec.select);
    // The server refuses this too (bad_request); failing here points at the call.
    if ((where !== null || select !== null) && tables.length !== 1) {
      throw new TypeError('sqlws: where and select need exactly one table');
    }
    let since = spec.since;
    if (since === undefined || since === null) since = null;
    else if (!Number.isInteger(since) || since < 0) {
      throw new TypeError('sqlws: since must be an integer ≥ 0');
    }
    const id = String(this._nextId++);
    const sub = new Subscription(this, id, tables, since, onChanges, spec, where, select);
    this._subs.set(id, sub);
    if (this._helloed) this._sendSubscribe(sub);
    return sub;
  }

  /**
   * liveQuery keeps the rows of table that match where (REST list grammar) current,
   * in order: it loads them over REST (every page), subscribes with the same where
   * and select from the snapshot's seq, and applies inserts, updates, deletes and
   * moves as they come. onUpdate(rows, info) is called with the whole ordered result
   * after the snapshot and after each batch of changes. See LiveQuery.
   */
  liveQuery(table, opts = {}, onUpdate) {
    if (this.state === State.CLOSED || this._closing) throw new Error('sqlws: client is closed');
    if (typeof opts === 'function') {
      onUpdate = opts;
      opts = {};
    }
    return new LiveQuery(this, table, opts || {}, onUpdate);
  }

  /**
   * close closes the socket and stops reconnecting. The promise resolves once the
   * socket is closed; nothing reconnects afterwards.
   */
  close() {
    if (this._closing) return this._closing.promise;
    let resolve;
    const promise = new Promise((r) => (resolve = r));
    this._closing = { promise, resolve };
    clearTimeout(this._reconnectTimer);
    clearTimeout(this._openTimer);
    clearTimeout(this._stableTimer);
    clearTimeout(this._refreshTimer);
    this._reconnectTimer = this._openTimer = this._stableTimer = this._refreshTimer = null;
    if (this._onOnline) window.removeEventListener('online', this._onOnline);
    for (const sub of this._subs.values()) this._endSub(sub);
    this._subs.clear();
    const ws = this._ws;
    let done = false;
    let guard = null;
    const finish = () => {
      if (done) return;
      done = true;
      clearTimeout(guard);
      this._ws = null;
      for (const id of [...this._unsubWaiting.keys()]) this._settleUnsub(id);
      this._setState(State.CLOSED, {});
      this._emit('close', {});
      resolve();
    };
    if (!ws || ws.readyState === 3 /* CLOSED */) {
      finish();
    } else {
      ws.onclose = finish;
      ws.onerror = null;
      ws.onmessage = null;
      try {
        ws.close(1000, 'client closed');
      } catch {
        finish();
      }
      // Do not hang on an implementation that never reports the close.
      if (!done) {
        guard = setTimeout(finish, 3000);
        if (guard && guard.unref) guard.unref();
      }
    }
    return promise;
  }

  // --- connection ---------------------------------------------------------------

  _setState(state, detail) {
    this.state = state;
    this._emit('status', { state, attempt: this.attempt, ...detail });
  }

  /**
   * getToken calls the token function (if any) and returns its token, which is then
   * the one in use for REST and the next WebSocket; a string token is returned as is,
   * no token as null.
   */
  getToken() {
    if (typeof this._tokenOpt !== 'function') return Promise.resolve(this.token);
    // Callers at the same moment (the socket and a liveQuery's first read) share one
    // call: a token function is often a network request.
    if (!this._tokenPending) {
      const p = (async () => {
        const t = await this._tokenOpt();
        if (t !== null && t !== undefined && typeof t !== 'string') throw new TypeError('sqlws: the token function must return a string');
        this.token = t || null;
        return this.token;
      })();
      // Cleared once settled (never synchronously: a function that throws at once
      // settles p before it is stored).
      this._tokenPending = p;
      p.then(
        () => this._tokenPending === p && (this._tokenPending = null),
        () => this._tokenPending === p && (this._tokenPending = null),
      );
    }
    return this._tokenPending;
  }

  /**
   * authHeaders returns the headers that authenticate a REST request with the token
   * in use ({} without one): {Authorization: 'Bearer …'}.
   */
  authHeaders() {
    return this.token ? { Authorization: 'Bearer ' + this.token } : {};
  }

  _open() {
    if (this._closing) return;
    this._reconnectTimer = null;
    this._helloed = false;
    this._emit('connecting', { attempt: this.attempt, url: this.url });
    if (this.state !== State.RECONNECTING) this._setState(State.CONNECTING, {});
    if (typeof this._tokenOpt !== 'function') {
      this._openSocket(withToken(this.url, this.token));
      return;
    }
    // A fresh token for every connection: the last one may have expired while the
    // client was away (the server closes with 4001 when it does).
    const gen = ++this._openGen;
    this.getToken().then(
      (tok) => {
        if (gen === this._openGen && !this._closing && !this._ws) this._openSocket(withToken(this.url, tok));
      },
      (err) => {
        if (gen !== this._openGen || this._closing) return;
        const message = String(err && err.message ? err.message : err);
        this._emit('error', { subscription: null, id: null, code: 'token_unavailable', message });
        this._scheduleReconnect(0, 'token function failed: ' + message);
      },
    );
  }

  _openSocket(url) {
    let ws;
    try {
      ws = new this._WebSocket(url);
    } catch (err) {
      this._scheduleReconnect(0, String(err && err.message ? err.message : err));
      return;
    }
    this._ws = ws;
    this._openTimer = setTimeout(() => {
      // No hello in time: treat as a failed attempt.
      if (this._ws === ws && !this._helloed) {
        this._drop(ws, 4100, 'open timeout');
      }
    }, this.options.openTimeout);
    ws.onmessage = (ev) => {
      if (this._ws !== ws) return;
      this._onMessage(ev.data);
    };
    ws.onclose = (ev) => {
      if (this._ws !== ws) return;
      this._onClose(ev.code, ev.reason);
    };
    ws.onerror = () => {
      // Browsers follow an error with a close event; some implementations (Node 20's
      // experimental WebSocket on a refused connection) do not. Give close a moment,
      // then treat the socket as closed.
      setTimeout(() => {
        if (this._ws === ws) this._drop(ws, 1006, 'error');
      }, 50);
    };
  }

  // _drop abandons socket ws and reconnects as if it had closed with code.
  _drop(ws, code, reason) {
    try {
      ws.onclose = ws.onmessage = ws.onerror = null;
      ws.close(1000);
    } catch {
      /* already closed */
    }
    if (this._ws === ws) this._onClose(code, reason);
  }

  _onClose(code, reason) {
    clearTimeout(this._stableTimer); // it did not stay up: keep backing off
    this._stableTimer = null;
    clearTimeout(this._refreshTimer);
    this._refreshTimer = null;
    clearTimeout(this._openTimer);
    this._openTimer = null;
    this._ws = null;
    this._helloed = false;
    for (const sub of this._subs.values()) {
      sub._subscribed = sub._sent = false;
      clearTimeout(sub._retryTimer);
      sub._retryTimer = null;
      if (sub._resuming) clearTimeout(sub._resuming.timer);
    }
    for (const id of [...this._unsubWaiting.keys()]) this._settleUnsub(id);
    if (this._closing) return;
    this._scheduleReconnect(code, reason);
  }

  _scheduleReconnect(code, reason) {
    this._ws = null;
    this.attempt++;
    const delay = fullJitter(this.attempt, this.options.minDelay, this.options.maxDelay);
    const detail = { attempt: this.attempt, delay, code, reason: reason || '' };
    if (code === TOKEN_EXPIRED) {
      // Expiry is not a failure of the server: reconnect (with a fresh token) at once.
      detail.delay = 0;
    }
    this._setState(State.RECONNECTING, detail);
    this._emit('reconnecting', detail);
    this._reconnectTimer = setTimeout(() => this._open(), detail.delay);
  }

  _send(msg) {
    const ws = this._ws;
    if (!ws || ws.readyState !== 1 /* OPEN */) return false;
    try {
      ws.send(JSON.stringify(msg));
      return true;
    } catch {
      return false;
    }
  }

  _onMessage(data) {
    let msg;
    try {
      msg = this._parse(typeof data === 'string' ? data : String(data));
    } catch {
      return; // not JSON: ignore the frame
    }
    if (!msg || typeof msg !== 'object') return;
    switch (msg.type) {
      case 'hello':
        return this._onHello(msg);
      case 'subscribed':
        return this._onSubscribed(msg);
      case 'changes':
        return this._onChanges(msg);
      case 'reset':
        return this._onReset(msg);
      case 'unsubscribed':
        return this._onUnsubscribed(msg);
      case 'error':
        return this._onError(msg);
      case 'authed':
        return this._onAuthed(msg);
      default:
        return; // unknown frame types are ignored (forward compatibility)
    }
  }

  _onHello(msg) {
    clearTimeout(this._openTimer);
    this._openTimer = null;
    const reconnected = this._everOpen;
    this._everOpen = true;
    this._helloed = true;
    this.hello = msg;
    if (!this.stream) this.stream = msg.stream || null;
    this._scheduleRefresh(jwtExp(this.token));
    // Reset the backoff only once the connection has proved stable: a server that
    // says hello and then drops clients must not get a reconnect storm.
    clearTimeout(this._stableTimer);
    this._stableTimer = setTimeout(() => {
      this.attempt = 0;
    }, 5000);
    this._setState(State.OPEN, { stream: msg.stream, head: msg.head });
    this._emit('open', {
      stream: msg.stream,
      head: msg.head,
      oldest: msg.oldest,
      version: msg.version,
      reconnected,
    });
    for (const sub of this._subs.values()) {
      if (reconnected && sub.lastSeq != null) {
        sub._resuming = { fromSeq: sub.lastSeq, caughtUp: 0, head: null, timer: null };
      }
      this._sendSubscribe(sub);
    }
  }

  _sendSubscribe(sub) {
    const msg = { type: 'subscribe', id: sub.id };
    if (sub.tables.length) msg.tables = sub.tables;
    if (sub.where !== null) msg.where = sub.where;
    if (sub.select !== null) msg.select = sub.select;
    if (sub.lastSeq != null) msg.since = sub.lastSeq;
    if (this.stream) msg.stream = this.stream;
    sub._sent = this._send(msg);
  }

  _sub(msg) {
    if (msg.id === undefined || msg.id === null) return null;
    return this._subs.get(String(msg.id)) || null;
  }

  _onSubscribed(msg) {
    const sub = this._sub(msg);
    if (!sub) return;
    sub._subscribed = true;
    if (sub.lastSeq == null && Number.isInteger(Number(msg.head))) {
      // Live from head: everything after head follows, so head is where a resume
      // must continue from.
      sub.lastSeq = Number(msg.head);
    }
    call(sub._opts.onSubscribed, { head: msg.head, subscription: sub });
    const r = sub._resuming;
    if (r) {
      r.head = msg.head;
      this._checkResumed(sub, false);
    }
  }

  _onChanges(msg) {
    const sub = this._sub(msg);
    if (!sub || !Array.isArray(msg.changes)) return;
    const { records, lastSeq } = dedupe(msg.changes, sub.lastSeq);
    sub.stats.received += msg.changes.length;
    sub.stats.dropped += msg.changes.length - records.length;
    const r = sub._resuming;
    if (r && r.head != null) {
      for (const rec of records) if (rec.seq <= r.head) r.caughtUp++;
    }
    if (records.length) {
      sub.lastSeq = lastSeq;
      sub.stats.delivered += records.length;
      try {
        sub._onChanges(records, sub);
      } catch (err) {
        reportError(err);
      }
    }
    if (r && r.head != null && this._subs.get(sub.id) === sub) {
      const beyond = msg.changes.length > 0 && msg.changes[msg.changes.length - 1].seq > r.head;
      this._checkResumed(sub, beyond);
    }
  }

  // _checkResumed finishes a resume when the subscription has reached the head the
  // server announced, has seen a record past it, or has been quiet for settleTime
  // (a table-filtered subscription may never see a record at head itself).
  _checkResumed(sub, beyond) {
    const r = sub._resuming;
    if (!r) return;
    clearTimeout(r.timer);
    if (beyond || (sub.lastSeq != null && sub.lastSeq >= r.head)) {
      this._finishResume(sub);
    } else {
      r.timer = setTimeout(() => this._finishResume(sub), this.options.settleTime);
    }
  }

  _finishResume(sub) {
    const r = sub._resuming;
    if (!r) return;
    clearTimeout(r.timer);
    sub._resuming = null;
    const detail = { subscription: sub, id: sub.id, fromSeq: r.fromSeq, caughtUp: r.caughtUp, head: r.head };
    call(sub._opts.onResumed, detail);
    this._emit('resumed', detail);
  }

  _onReset(msg) {
    const sub = this._sub(msg);
    // The server's stream is the one to follow from now on: the caller reloads from
    // this server and subscribes again.
    if (msg.stream) this.stream = msg.stream;
    if (!sub) return;
    this._endSub(sub);
    this._subs.delete(sub.id);
    const detail = { subscription: sub, id: sub.id, reason: msg.reason, head: msg.head, stream: msg.stream };
    call(sub._opts.onReset, detail);
    this._emit('reset', detail);
  }

  _onUnsubscribed(msg) {
    if (msg.id != null) this._settleUnsub(String(msg.id));
  }

  // _scheduleRefresh arranges, when a token function is given and the token has an
  // exp, to send a fresh token refreshBefore ms ahead of it, so that the server does
  // not close the connection (4001) and nothing needs to resume.
  _scheduleRefresh(exp) {
    clearTimeout(this._refreshTimer);
    this._refreshTimer = null;
    if (typeof this._tokenOpt !== 'function' || exp == null) return;
    const delay = Math.min(MAX_TIMEOUT, Math.max(0, exp * 1000 - Date.now() - this.options.refreshBefore));
    const ws = this._ws;
    this._refreshTimer = setTimeout(() => this._refresh(ws), delay);
    if (this._refreshTimer && this._refreshTimer.unref) this._refreshTimer.unref();
  }

  // _refresh sends {type:'auth', token} with a token fresh from the token function on
  // socket ws, if it is still the open one. The server answers authed (with the new
  // exp) or an error; if it never does, expiry closes the socket with 4001 and the
  // client reconnects with a fresh token anyway.
  async _refresh(ws) {
    this._refreshTimer = null;
    let tok;
    try {
      tok = await this.getToken();
    } catch (err) {
      const message = String(err && err.message ? err.message : err);
      this._emit('error', { subscription: null, id: null, code: 'token_unavailable', message });
      return;
    }
    if (!tok || this._ws !== ws || !this._helloed) return;
    this._send({ type: 'auth', token: tok });
  }

  _onAuthed(msg) {
    const exp = Number.isFinite(Number(msg.exp)) ? Number(msg.exp) : jwtExp(this.token);
    this._emit('authed', { exp });
    this._scheduleRefresh(exp);
  }

  _onError(msg) {
    if (msg.code === 'token_expired' && (msg.id === undefined || msg.id === null)) {
      // The server closes with 4001 next; reconnect at once with a fresh token
      // rather than wait for the close, and resume every subscription from its seq.
      this._emit('error', { subscription: null, id: null, code: msg.code, message: msg.message });
      if (this._ws) this._drop(this._ws, TOKEN_EXPIRED, 'token expired');
      return;
    }
    const sub = this._sub(msg);
    const detail = { subscription: sub, id: msg.id ?? null, code: msg.code, message: msg.message };
    if (!sub) {
      if (msg.id != null) this._settleUnsub(String(msg.id));
      this._emit('error', detail);
      return;
    }
    if (sub._subscribed && ENDING_ERRORS.has(msg.code)) {
      // The server ended a running subscription (its table was dropped, or a column
      // its filter uses is gone): resubscribing after a reconnect would only be
      // refused again.
      this._endSub(sub);
      this._subs.delete(sub.id);
    } else if (!sub._subscribed) {
      // The subscribe itself was refused.
      if (msg.code === 'unavailable' || msg.code === 'internal') {
        // Transient: ask again shortly (on this connection, if it survives).
        clearTimeout(sub._retryTimer);
        sub._retryTimer = setTimeout(() => {
          sub._retryTimer = null;
          if (this._subs.get(sub.id) === sub && this._helloed) this._sendSubscribe(sub);
        }, this.options.retryDelay);
      } else {
        this._endSub(sub);
        this._subs.delete(sub.id);
      }
    }
    call(sub._opts.onError, detail);
    this._emit('error', detail);
  }

  _endSub(sub) {
    sub.active = false;
    clearTimeout(sub._retryTimer);
    sub._retryTimer = null;
    if (sub._resuming) clearTimeout(sub._resuming.timer);
    sub._resuming = null;
  }

  _unsubscribe(sub) {
    if (!sub.active || this._subs.get(sub.id) !== sub) {
      return Promise.resolve();
    }
    this._endSub(sub);
    this._subs.delete(sub.id);
    if (!sub._sent || !this._helloed) return Promise.resolve();
    return new Promise((resolve) => {
      // Settles on the reply, on a lost connection, or after a bounded wait.
      const timer = setTimeout(() => this._settleUnsub(sub.id), this.options.openTimeout);
      this._unsubWaiting.set(sub.id, () => {
        clearTimeout(timer);
        resolve();
      });
      if (!this._send({ type: 'unsubscribe', id: sub.id })) this._settleUnsub(sub.id);
    });
  }

  _settleUnsub(id) {
    const w = this._unsubWaiting.get(id);
    if (w) {
      this._unsubWaiting.delete(id);
      w();
    }
  }
}

/**
 * LiveQuery is what client.liveQuery returns: the rows of one table that match a
 * filter, in order, kept current by a filtered subscription.
 *
 *   rows      the current result, an array in order (a new array after every update)
 *   seq       the seq the result is current to
 *   ready     a promise: resolves (to the LiveQuery) when the first snapshot is loaded,
 *             rejects if the query cannot run (bad filter, unknown table or column)
 *   loading   true while a snapshot is being loaded
 *   active    false after close() or an error that ends the query
 *   error     the error that ended the query ({code, message}), or null
 *   keyColumns  the columns rows are keyed by (the primary key, or the rowid)
 *
 * Rows carry the selected columns plus the key and order columns (so rows can be
 * keyed and sorted; ask for select: '*' or omit it for every column).
 */
class LiveQuery {
  constructor(client, table, opts, onUpdate) {
    if (typeof table !== 'string' || table === '') throw new TypeError('sqlws: liveQuery needs a table name');
    this._client = client;
    this.table = table;
    this.where = whereString(opts.where);
    this.select = selectString(opts.select);
    this.order = opts.order == null || opts.order === '' ? null : Array.isArray(opts.order) ? opts.order.join(',') : String(opts.order);
    this._orderBy = parseOrder(this.order);
    this._opts = opts;
    this._onUpdate = typeof onUpdate === 'function' ? onUpdate : opts.onUpdate;
    this._pageSize = Math.max(1, Math.min(1000, opts.pageSize || 1000));
    const fetchFn = opts.fetch || client.options.fetch || globalThis.fetch;
    if (typeof fetchFn !== 'function') throw new TypeError('sqlws: no fetch implementation; pass options.fetch');
    // Called as a plain function: a browser's fetch called as a method of another
    // object throws "Illegal invocation".
    this._fetch = (url, init) => fetchFn(url, init);
    this._api = apiBase(client, opts.api);
    this.rows = [];
    this.seq = null;
    this.loading = true;
    this.active = true;
    this.error = null;
    this.keyColumns = null;
    this.subscription = null;
    this._map = new Map(); // key → row
    this._gen = 0; // bumped by every (re)load; stale loads and callbacks check it
    this._retry = null;
    this._attempt = 0;
    this.ready = new Promise((resolve, reject) => {
      this._resolveReady = resolve;
      this._rejectReady = reject;
    });
    // Someone who never awaits ready must not get an unhandled rejection; whoever
    // awaits it still sees the error.
    this.ready.catch(() => {});
    this._load();
  }

  /** close stops the query: no more updates; the subscription is ended. */
  close() {
    if (!this.active) return Promise.resolve();
    this.active = false;
    this._gen++;
    clearTimeout(this._retry);
    this._retry = null;
    const sub = this.subscription;
    this.subscription = null;
    return sub ? sub.unsubscribe() : Promise.resolve();
  }

  /** keyOf returns the key string of a row (or change image) of this query. */
  keyOf(row) {
    return rowKey(this.keyColumns || [], row);
  }

  /** get returns the current row with the key of row-or-pk (an object holding the key columns). */
  get(pk) {
    const k = this.keyOf(pk);
    return k === null ? undefined : this._map.get(k);
  }

  // _load (re)loads the snapshot page by page, then follows the filtered stream
  // from the first page's seq. Changes that arrive while later pages load are held
  // and applied after the last page: each change carries whole (selected) images,
  // so applying every change after the first page's seq on top of all pages
  // converges to the filtered table (rest.md, "seq on reads").
  async _load() {
    const gen = ++this._gen;
    clearTimeout(this._retry);
    this._retry = null;
    this.loading = true;
    if (this.subscription) {
      this.subscription.unsubscribe();
      this.subscription = null;
    }
    let held = [];
    let holding = true;
    let map;
    let seq;
    try {
      const meta = await this._get(`tables/${encodeURIComponent(this.table)}`);
      if (gen !== this._gen) return;
      this.keyColumns = meta.primary_key && meta.primary_key.length ? [...meta.primary_key] : [meta.rowid_key || 'rowid'];
      // The key (to address rows) and the order columns (to keep them in order) must
      // be in every image, whatever the caller selected.
      let select = this.select;
      if (select !== null) {
        const extra = [...this.keyColumns, ...this._orderBy.map((o) => o.column)];
        select = [select, ...extra.map(quoteListItem)].join(',');
      }
      this._effectiveSelect = select;
      const params = [];
      if (this.where !== null) params.push(this.where.replace(/#/g, '%23'));
      if (select !== null) params.push(`select=${encodeURIComponent(select)}`);
      if (this.order !== null) params.push(`order=${encodeURIComponent(this.order)}`);
      params.push(`limit=${this._pageSize}`);
      const path = `tables/${encodeURIComponent(this.table)}/rows?${params.join('&')}`;
      map = new Map();
      let after = null;
      for (;;) {
        const page = await this._get(after === null ? path : `${path}&after=${encodeURIComponent(after)}`);
        if (gen !== this._gen) return;
        if (seq === undefined) {
          seq = Number(page.seq);
          this._subscribe(gen, seq, (recs) => {
            if (holding) held.push(...recs);
            else this._apply(recs);
          });
        }
        for (const row of page.rows || []) map.set(this.keyOf(row), row);
        if (page.next === null || page.next === undefined) break;
        after = page.next;
      }
    } catch (err) {
      if (gen !== this._gen) return;
      this._failed(err);
      return;
    }
    this._attempt = 0;
    this._map = map;
    this.rows = [...map.values()].sort((a, b) => this._compare(a, b));
    this.seq = seq;
    this.loading = false;
    holding = false;
    const recs = held;
    held = [];
    this._applyRecords(recs);
    this._emit('snapshot', recs);
    this._resolveReady(this);
  }

  _subscribe(gen, since, onChanges) {
    const where = this.where;
    this.subscription = this._client.subscribe(
      {
        table: this.table,
        where: where === null ? undefined : where,
        select: this._effectiveSelect === null ? undefined : this._effectiveSelect,
        since,
        onReset: (d) => {
          if (gen !== this._gen) return;
          call(this._opts.onReset, { ...d, query: this });
          // Our state may be wrong now (pruned changes, another database): load it
          // again, which subscribes again from the new snapshot's seq.
          this._load();
        },
        onError: (d) => {
          if (gen !== this._gen) return;
          // The client retries these by itself.
          if ((d.code === 'unavailable' || d.code === 'internal') && d.subscription && d.subscription.active) return;
          this._fatal({ code: d.code, message: d.message });
        },
        onResumed: (d) => call(this._opts.onResumed, { ...d, query: this }),
      },
      (recs) => {
        if (gen === this._gen) onChanges(recs);
      },
    );
  }

  async _get(path) {
    let res;
    const client = this._client;
    for (let attempt = 0; ; attempt++) {
      try {
        // A token function may not have been called yet (the socket asks for it on
        // the next microtask): the first read must not go without.
        if (!client.token && typeof client._tokenOpt === 'function') await client.getToken();
        res = await this._fetch(this._api + path, { headers: { Accept: 'application/json', ...client.authHeaders() } });
      } catch (err) {
        throw Object.assign(new Error(`sqlws: ${this._api + path}: ${err && err.message ? err.message : err}`), { code: 'network', status: 0 });
      }
      // The token expired since it was fetched: ask the function once for a fresh one.
      if (res.status !== 401 || attempt > 0 || typeof client._tokenOpt !== 'function') break;
      try {
        await client.getToken();
      } catch {
        break; // report the 401
      }
    }
    const text = await res.text();
    let body = null;
    try {
      body = text ? this._client._parse(text) : null;
    } catch {
      body = null;
    }
    if (!res.ok) {
      const e = (body && body.error) || {};
      throw Object.assign(new Error(e.message || `HTTP ${res.status}`), { code: e.code || `http_${res.status}`, status: res.status });
    }
    if (!body || typeof body !== 'object') throw Object.assign(new Error('sqlws: not a JSON response'), { code: 'bad_response', status: res.status });
    return body;
  }

  // _failed handles a failed load: the server away or busy (no answer, 5xx, 429) is
  // retried with backoff; anything else (a bad filter, an unknown table or column)
  // would fail again and ends the query.
  _failed(err) {
    if (err.status === 0 || err.status === 429 || err.status >= 500) {
      this._attempt++;
      const o = this._client.options;
      const delay = Math.max(o.minDelay, fullJitter(this._attempt, o.minDelay, o.maxDelay));
      call(this._opts.onError, { code: err.code, message: err.message, retrying: true, delay, query: this });
      this._retry = setTimeout(() => {
        this._retry = null;
        if (this.active) this._load();
      }, delay);
      return;
    }
    this._fatal({ code: err.code, message: err.message });
  }

  _fatal(detail) {
    if (!this.active) return;
    this.error = detail;
    this.close();
    this.loading = false;
    call(this._opts.onError, { ...detail, retrying: false, query: this });
    this._rejectReady(Object.assign(new Error(detail.message), { code: detail.code }));
  }

  _apply(recs) {
    if (!this.active || this.loading) return;
    this._applyRecords(recs);
    this._emit('changes', recs);
  }

  // _applyRecords applies change records to the keyed rows and re-sorts only what
  // they touched: the untouched rows keep their order, the touched ones are sorted
  // and merged in (O(n + k log k) per batch).
  _applyRecords(recs) {
    if (!recs.length) return;
    const gone = new Set(); // row objects no longer current
    const touched = new Set(); // keys whose row may have changed place
    const put = (key, row) => {
      const prev = this._map.get(key);
      if (prev) gone.add(prev);
      this._map.set(key, row);
      touched.add(key);
    };
    const drop = (key) => {
      const prev = this._map.get(key);
      if (prev) {
        gone.add(prev);
        this._map.delete(key);
      }
    };
    for (const rec of recs) {
      const n = Number(rec.seq);
      if (this.seq === null || n > this.seq) this.seq = n;
      const pkKey = this.keyOf(rec.pk || {});
      // An update that changed the key has the new key in pk and the old one in old.
      const oldKey = rec.old ? this.keyOf(rec.old) : null;
      if (rec.op === 'insert') {
        if (rec.new) put(pkKey, rec.new);
      } else if (rec.op === 'delete') {
        drop(pkKey);
      } else if (rec.op === 'update') {
        if (rec.moved === 'out' || rec.new === null || rec.new === undefined) {
          drop(oldKey !== null ? oldKey : pkKey);
        } else {
          if (oldKey !== null && oldKey !== pkKey) drop(oldKey);
          put(pkKey, rec.new);
        }
      }
    }
    if (!gone.size && !touched.size) return;
    const kept = gone.size ? this.rows.filter((r) => !gone.has(r)) : this.rows.slice();
    const moved = [];
    for (const k of touched) {
      const r = this._map.get(k);
      if (r !== undefined) moved.push(r);
    }
    moved.sort((a, b) => this._compare(a, b));
    const out = new Array(kept.length + moved.length);
    let i = 0;
    let j = 0;
    let o = 0;
    while (i < kept.length && j < moved.length) out[o++] = this._compare(moved[j], kept[i]) < 0 ? moved[j++] : kept[i++];
    while (i < kept.length) out[o++] = kept[i++];
    while (j < moved.length) out[o++] = moved[j++];
    this.rows = out;
  }

  // _compare orders rows as the REST list does: the order columns, then the key.
  _compare(a, b) {
    for (const o of this._orderBy) {
      const x = a[o.column];
      const y = b[o.column];
      const xn = x === null || x === undefined;
      const yn = y === null || y === undefined;
      if (xn || yn) {
        if (xn && yn) continue;
        return xn === o.nullsFirst ? -1 : 1;
      }
      const c = compareValues(x, y);
      if (c) return o.desc ? -c : c;
    }
    for (const k of this.keyColumns) {
      const c = compareValues(a[k], b[k]);
      if (c) return c;
    }
    return 0;
  }

  _emit(reason, changes) {
    if (!this.active) return;
    const fn = this._onUpdate;
    if (typeof fn !== 'function') return;
    try {
      fn(this.rows, { reason, changes, seq: this.seq, query: this });
    } catch (err) {
      reportError(err);
    }
  }
}

// rowKey is the key string of a row or image: the JSON of its key column values, or
// null when it lacks one of them.
function rowKey(cols, row) {
  if (!row || typeof row !== 'object' || !cols.length) return null;
  const vals = [];
  for (const c of cols) {
    if (!(c in row)) return null;
    vals.push(row[c]);
  }
  return stringifyKey(vals);
}

// apiBase is the REST root next to the client's WebSocket URL: ws://h/ws gives
// http://h/api/, ws://h/prefix/ws gives http://h/prefix/api/.
function apiBase(client, given) {
  if (given) return String(given).endsWith('/') ? String(given) : String(given) + '/';
  if (client.options.api) return apiBase(client, client.options.api);
  const u = new URL(client.url);
  u.protocol = u.protocol === 'wss:' ? 'https:' : 'http:';
  u.search = '';
  return new URL('api/', u).href;
}

function call(fn, detail) {
  if (typeof fn !== 'function') return;
  try {
    fn(detail);
  } catch (err) {
    reportError(err);
  }
}

/**
 * connect opens a client for the sqlws WebSocket at url ("/ws", "ws://host:port/ws",
 * or an http(s) URL, which is mapped to ws(s)).
 *
 * options:
 *   minDelay, maxDelay  backoff bounds in ms (250, 30000)
 *   openTimeout         ms to wait for hello before retrying (10000)
 *   settleTime          ms of quiet that ends a resume's catch-up count (250)
 *   stream              a stream id to resume against (default: the first hello's)
 *   parse               JSON parser for frames (default JSON.parse); pass a
 *                       BigInt-aware one to keep integers beyond 2^53 exact
 *   WebSocket           WebSocket constructor (default globalThis.WebSocket)
 *   base                base URL for a relative url (default location.href)
 *   token               an access token for a server with authentication: a string,
 *                       or a function returning a string or a Promise of one. It is
 *                       sent as ?access_token= on the WebSocket and as Authorization:
 *                       Bearer on REST (liveQuery; client.authHeaders() for your own
 *                       requests). A function is called again before every
 *                       reconnect, and refreshBefore ms (30000) before the token's
 *                       exp to replace it on the open socket ({type:'auth'}); a close
 *                       with 4001 (token expired) reconnects at once with a fresh
 *                       token and resumes every subscription from its last seq.
 */
export function connect(url, options = {}) {
  return new Client(url, options);
}

export default { connect };
