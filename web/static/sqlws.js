// sqlws.js: the browser (and Node) client for the sqlws change feed, protocol v1.
//
//   import { connect } from '/sqlws.js';
//   const client = connect('/ws');
//   const sub = client.subscribe({ tables: ['todos'], since: seq }, changes => { … });
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
};

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
 *   lastSeq   seq of the last record delivered to the callback (or the since it
 *             started from); resumes continue after it
 *   active    false once unsubscribed, reset or refused
 *   stats     {received, delivered, dropped}: records in frames, handed to the
 *             callback, dropped as duplicates
 */
class Subscription {
  constructor(client, id, tables, since, onChanges, opts) {
    this._client = client;
    this.id = id;
    this.tables = tables;
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
    const tables = Array.isArray(spec.tables) ? [...spec.tables] : [];
    let since = spec.since;
    if (since === undefined || since === null) since = null;
    else if (!Number.isInteger(since) || since < 0) {
      throw new TypeError('sqlws: since must be an integer ≥ 0');
    }
    const id = String(this._nextId++);
    const sub = new Subscription(this, id, tables, since, onChanges, spec);
    this._subs.set(id, sub);
    if (this._helloed) this._sendSubscribe(sub);
    return sub;
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
    this._reconnectTimer = this._openTimer = this._stableTimer = null;
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

  _open() {
    if (this._closing) return;
    this._reconnectTimer = null;
    this._helloed = false;
    this._emit('connecting', { attempt: this.attempt, url: this.url });
    if (this.state !== State.RECONNECTING) this._setState(State.CONNECTING, {});
    let ws;
    try {
      ws = new this._WebSocket(this.url);
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
    this._setState(State.RECONNECTING, detail);
    this._emit('reconnecting', detail);
    this._reconnectTimer = setTimeout(() => this._open(), delay);
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

  _onError(msg) {
    const sub = this._sub(msg);
    const detail = { subscription: sub, id: msg.id ?? null, code: msg.code, message: msg.message };
    if (!sub) {
      if (msg.id != null) this._settleUnsub(String(msg.id));
      this._emit('error', detail);
      return;
    }
    if (!sub._subscribed) {
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
 */
export function connect(url, options = {}) {
  return new Client(url, options);
}

export default { connect };
