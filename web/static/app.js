// The sqlws dashboard: a table list, a live rows grid, a change log and row forms.
// Plain ES module, no build step. Data comes from the REST API (/api/…) and stays live
// through one WebSocket subscription (/ws) made with the sqlws client library. A
// filtered view (a REST filter and/or hidden columns, reflected in the URL) gets its
// own filtered subscription on the open table, so rows moving out of the filter
// leave the grid and rows moving in appear, without the page evaluating the filter.
//
// Rendering model: change records are queued as they arrive and applied once per
// animation frame. The grid keeps a Map from row key (the JSON of the primary key
// object, as in change records) to the row element and touches only the rows that
// changed; the change log is capped.

import { connect, selectString } from '/sqlws.js';

const PAGE_SIZE = 1000; // rows per REST page (the server's maximum)
const LOAD_LIMIT = 10000; // rows loaded into the grid at most
const LOG_CAP = 500; // change log entries kept
const HISTORY = 50; // changes before the page load shown in the log
const LOG_INTERVAL = 200; // ms between redraws of the log under load
const FRAME_BUDGET = 10; // ms of grid work per animation frame before yielding

// ---------------------------------------------------------------------------
// Small DOM helpers

const $ = (sel, root = document) => root.querySelector(sel);
const tid = (name) => $(`[data-testid="${name}"]`);

function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  if (attrs) {
    for (const [k, v] of Object.entries(attrs)) {
      if (v == null || v === false) continue;
      if (k === 'class') el.className = v;
      else if (k === 'text') el.textContent = v;
      else if (k in el && typeof v !== 'string') el[k] = v;
      else el.setAttribute(k, v === true ? '' : v);
    }
  }
  for (const c of children) if (c != null) el.append(c);
  return el;
}

const nf = new Intl.NumberFormat();
const fmtCount = (n) => (n == null ? '—' : nf.format(n));
const plural = (n, one, many) => `${fmtCount(n)} ${n === 1 ? one : many}`;

function fmtTime(ts) {
  if (typeof ts !== 'number') return '';
  const d = new Date(ts);
  const p = (n, w = 2) => String(n).padStart(w, '0');
  return `${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}.${p(d.getMilliseconds(), 3)}`;
}

// ---------------------------------------------------------------------------
// Values: display, comparison, keys

function isBlob(v) {
  return v !== null && typeof v === 'object' && typeof v.$blob === 'string';
}
function isReal(v) {
  return v !== null && typeof v === 'object' && typeof v.$real === 'string';
}

/** display returns [text, kind] for a cell value in the change-record encoding. */
function display(v) {
  if (v === null || v === undefined) return ['NULL', 'null'];
  if (typeof v === 'number') return [String(v), 'num'];
  if (typeof v === 'string') return [v, 'text'];
  if (isBlob(v)) {
    const n = v.$blob.length / 2;
    const head = v.$blob.slice(0, 16);
    return [`x'${head}${v.$blob.length > 16 ? '…' : ''}' (${plural(n, 'byte', 'bytes')})`, 'blob'];
  }
  if (isReal(v)) return [v.$real === 'Infinity' ? '∞' : v.$real === '-Infinity' ? '−∞' : v.$real, 'num'];
  return [JSON.stringify(v), 'json'];
}

function sameValue(a, b) {
  if (a === b) return true;
  if (a === null || b === null || typeof a !== 'object' || typeof b !== 'object') {
    // NaN never appears (SQLite stores NaN as NULL), so === is enough for scalars.
    return a === undefined && b === undefined;
  }
  return JSON.stringify(a) === JSON.stringify(b);
}

// SQLite sort order across storage classes: NULL < numbers < TEXT < BLOB.
function classRank(v) {
  if (v === null || v === undefined) return 0;
  if (typeof v === 'number' || isReal(v)) return 1;
  if (typeof v === 'string') return 2;
  if (isBlob(v)) return 3;
  return 4;
}
function numOf(v) {
  if (typeof v === 'number') return v;
  return v.$real === 'Infinity' ? Infinity : -Infinity;
}
function compareValue(a, b) {
  const ra = classRank(a);
  const rb = classRank(b);
  if (ra !== rb) return ra - rb;
  switch (ra) {
    case 0:
      return 0;
    case 1: {
      const x = numOf(a);
      const y = numOf(b);
      return x < y ? -1 : x > y ? 1 : 0;
    }
    case 2:
      return a < b ? -1 : a > b ? 1 : 0;
    case 3:
      return a.$blob < b.$blob ? -1 : a.$blob > b.$blob ? 1 : 0;
    default: {
      const x = JSON.stringify(a);
      const y = JSON.stringify(b);
      return x < y ? -1 : x > y ? 1 : 0;
    }
  }
}
function compareTuple(a, b) {
  for (let i = 0; i < a.length; i++) {
    const c = compareValue(a[i], b[i]);
    if (c) return c;
  }
  return 0;
}

// ---------------------------------------------------------------------------
// REST

class APIError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

// ---------------------------------------------------------------------------
// Access token
//
// A server with authentication answers /api/… with 401 and WWW-Authenticate: Bearer.
// The dashboard then asks for a token, keeps it in sessionStorage (this tab only; it
// is gone when the tab closes) and sends it on REST as Authorization: Bearer and on
// the WebSocket as ?access_token= (browsers cannot set headers on a WebSocket; the
// server strips the parameter before anything logs the URL). The form is plain
// markup in index.html: the Content-Security-Policy allows no inline script.

const TOKEN_KEY = 'sqlws.token';

function storedToken() {
  try {
    return sessionStorage.getItem(TOKEN_KEY) || null;
  } catch {
    return null; // storage disabled: ask on every load
  }
}

function storeToken(tok) {
  try {
    if (tok) sessionStorage.setItem(TOKEN_KEY, tok);
    else sessionStorage.removeItem(TOKEN_KEY);
  } catch {
    /* storage disabled: the token lives as long as the page */
  }
}

const AUTH = {
  token: storedToken(),
  required: false, // the server asked for a token
  asking: null, // the promise of the form's next token, while it is shown
  // gate holds the stream back while the server's answer is unknown or a token is
  // being asked for, so the WebSocket is not refused over and over meanwhile.
  gate: null,
  openGate: null,
};
AUTH.gate = new Promise((r) => (AUTH.openGate = r));

function closeGate() {
  if (!AUTH.openGate) AUTH.gate = new Promise((r) => (AUTH.openGate = r));
}

function openGate() {
  if (AUTH.openGate) AUTH.openGate();
  AUTH.openGate = null;
}

/** streamToken is the client's token function: the token once REST has shown it works. */
async function streamToken() {
  await AUTH.gate;
  return AUTH.token || '';
}

/**
 * askToken shows the token form and resolves with the token entered. refused is the
 * token the server just refused (null: none was sent); if another request has
 * already replaced it, that one is tried instead of asking again.
 */
function askToken(refused, message) {
  if (AUTH.token && AUTH.token !== refused) return Promise.resolve(AUTH.token);
  if (AUTH.asking) return AUTH.asking;
  AUTH.required = true;
  AUTH.token = null;
  storeToken(null);
  closeGate();
  const form = tid('token-form');
  const input = tid('token-input');
  const err = tid('token-error');
  err.textContent = refused ? `The server refused the token: ${message}` : 'This server requires an access token.';
  err.dataset.kind = refused ? 'error' : 'info';
  err.hidden = false;
  input.value = '';
  tid('signin').hidden = false;
  tid('sign-out').hidden = true;
  input.focus();
  setStatus('connecting', 'Access token required');
  AUTH.asking = new Promise((resolve) => {
    const submit = (ev) => {
      ev.preventDefault();
      const tok = input.value.trim().replace(/^Bearer\s+/i, '');
      if (!tok) {
        err.textContent = 'Enter a token.';
        err.dataset.kind = 'error';
        input.focus();
        return;
      }
      form.removeEventListener('submit', submit);
      AUTH.token = tok;
      AUTH.asking = null;
      storeToken(tok);
      tid('signin').hidden = true;
      tid('sign-out').hidden = false;
      resolve(tok);
    };
    form.addEventListener('submit', submit);
  });
  return AUTH.asking;
}

// Sign out forgets the token and starts over, so nothing loaded with it stays.
tid('sign-out').addEventListener('click', () => {
  storeToken(null);
  AUTH.token = null;
  location.reload();
});

async function api(method, path, body) {
  for (;;) {
    const init = { method, headers: { Accept: 'application/json' } };
    if (body !== undefined) {
      init.headers['Content-Type'] = 'application/json';
      init.body = body;
    }
    const sent = AUTH.token;
    if (sent) init.headers.Authorization = 'Bearer ' + sent;
    let res;
    try {
      res = await fetch(path, init);
    } catch {
      openGate(); // the stream finds out for itself whether the server is back
      throw new APIError(0, 'network', 'The server is unreachable.');
    }
    let data = null;
    const text = await res.text().catch(() => '');
    if (text) {
      try {
        data = parseJSON(text);
      } catch {
        data = null;
      }
    }
    if (res.status === 401 && /^Bearer\b/i.test(res.headers.get('WWW-Authenticate') || '')) {
      const e = data && data.error;
      await askToken(sent, (e && e.message) || 'unauthorized');
      continue; // the same request with the new token
    }
    if (AUTH.token) tid('sign-out').hidden = false; // a token that works: offer to forget it
    openGate();
    if (!res.ok) {
      const e = data && data.error;
      throw new APIError(res.status, (e && e.code) || 'http_' + res.status, (e && e.message) || `${res.status} ${res.statusText}`.trim());
    }
    return data;
  }
}

const tablePath = (name) => `/api/tables/${encodeURIComponent(name)}/rows`;

/** keyPath is the {key} URL segment of a row: key parts, percent-encoded, comma-joined. */
function keyPath(keyCols, keyObj) {
  return keyCols
    .map((c) => {
      const v = keyObj[c];
      if (isBlob(v)) return encodeURIComponent(`x'${v.$blob}'`);
      if (v !== null && typeof v === 'object') return encodeURIComponent(JSON.stringify(v));
      return encodeURIComponent(String(v));
    })
    .join(',');
}

// ---------------------------------------------------------------------------
// Form values

/** affinity is SQLite's column affinity for a declared type (§3.1 of datatype3). */
function affinity(type) {
  const t = (type || '').toUpperCase();
  if (t.includes('INT')) return 'INTEGER';
  if (t.includes('CHAR') || t.includes('CLOB') || t.includes('TEXT')) return 'TEXT';
  if (t.includes('BLOB') || t === '') return 'BLOB';
  if (t.includes('REAL') || t.includes('FLOA') || t.includes('DOUB')) return 'REAL';
  return 'NUMERIC';
}

const JSON_NUMBER = /^-?(0|[1-9]\d*)(\.\d+)?([eE][+-]?\d+)?$/;
const LOOSE_NUMBER = /^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/;

/** Raw is a JSON literal kept as text, so integers beyond 2^53 reach the server exactly. */
class Raw {
  constructor(text) {
    this.text = text;
  }
}

function toJSONBody(obj) {
  const parts = [];
  for (const [k, v] of Object.entries(obj)) {
    parts.push(JSON.stringify(k) + ':' + (v instanceof Raw ? v.text : JSON.stringify(v)));
  }
  return '{' + parts.join(',') + '}';
}

/**
 * parseField turns the text of a form field into a value for the REST body:
 * {value} or {omit: true} or {error}.
 */
function parseField(text, col, mode) {
  const aff = affinity(col.type);
  const s = text.trim();
  if (text === '' || (aff !== 'TEXT' && s === '')) {
    if (mode === 'create') return { omit: true }; // the column default (or NULL)
    return { value: null };
  }
  if (/^x'([0-9a-f]{2})*'$/i.test(s)) return { value: { $blob: s.slice(2, -1).toUpperCase() } };
  if (aff === 'TEXT') {
    // Literal text, unless it is JSON spelled on purpose: a quoted string, a tagged
    // object, or null.
    if (s === 'null' || s === 'NULL') return { value: null };
    if ((s.startsWith('"') && s.endsWith('"') && s.length >= 2) || (s.startsWith('{') && s.includes('"$'))) {
      try {
        return { value: JSON.parse(s) };
      } catch {
        /* plain text after all */
      }
    }
    return { value: text };
  }
  if (JSON_NUMBER.test(s)) return { value: new Raw(s) };
  if (LOOSE_NUMBER.test(s)) return { value: Number(s) };
  if (/^[+]?(inf|infinity)$/i.test(s)) return { value: { $real: 'Infinity' } };
  if (/^-(inf|infinity)$/i.test(s)) return { value: { $real: '-Infinity' } };
  if (s === 'null' || s === 'NULL') return { value: null };
  if (/^[[{"]/.test(s) || s === 'true' || s === 'false') {
    try {
      return { value: JSON.parse(s) };
    } catch {
      if (aff === 'INTEGER' || aff === 'REAL') return { error: 'Not a number or valid JSON.' };
    }
  }
  // Anything else is text; SQLite keeps it as TEXT unless the table is STRICT.
  return { value: text };
}

/** fieldText is the text a form field starts with for value v. */
function fieldText(v, col) {
  if (v === null || v === undefined) return '';
  if (typeof v === 'number') return String(v);
  if (typeof v === 'string') {
    if (v === '') return '""';
    if (affinity(col.type) !== 'TEXT' && (JSON_NUMBER.test(v.trim()) || LOOSE_NUMBER.test(v.trim()))) {
      return JSON.stringify(v); // keep a numeric-looking string a string
    }
    return v;
  }
  return JSON.stringify(v);
}

// ---------------------------------------------------------------------------
// State

/**
 * parseJSON keeps integers beyond 2^53 exact, as their decimal text: JSON.parse would
 * round them, and a rounded key (a snowflake id, say) would merge rows in the grid or
 * make an edit or delete hit another row. Uses the reviver's source text (Chromium
 * 114+); elsewhere it falls back to plain numbers.
 */
function parseJSON(text) {
  return JSON.parse(text, (key, value, ctx) =>
    typeof value === 'number' && !Number.isSafeInteger(value) && ctx && /^-?\d+$/.test(ctx.source) ? ctx.source : value,
  );
}

const client = connect('/ws', { minDelay: 300, maxDelay: 10000, parse: parseJSON, token: streamToken });

const S = {
  tables: [], // from GET /api/tables
  byName: new Map(),
  counts: new Map(), // table → row count (null when unknown)
  countsDirty: false,
  tablesLoaded: false,
  tablesError: null,
  cur: null, // the open table, see openTable
  loadToken: 0,
  filters: new Map(), // table → {where, select}: the filter and shown columns of each table's view
  gridSub: null, // the filtered subscription feeding the grid of a filtered view
  sub: null, // the WebSocket subscription (all tables)
  subscribed: false,
  lastSeq: null,
  paused: false,
  pausedCount: 0,
  logQueue: [], // records waiting for the next redraw of the log
  log: [], // the change log, oldest first, at most LOG_CAP
  frame: 0,
  resumed: null,
  resets: 0,
  lastReset: null,
  filterError: null, // {code, message} the server gave for the open view's filter
  ready: false,
  connState: 'connecting',
  perf: { flushes: 0, totalMs: 0, maxMs: 0 }, // time spent applying changes
  lastLogRender: -Infinity,
  logTimer: 0,
};

window.__sqlws = { ready: false, rows: 0, lastSeq: null };

function publishDebug() {
  const c = S.cur;
  Object.assign(window.__sqlws, {
    ready: S.ready,
    table: c ? c.name : null,
    loading: c ? c.loading : false,
    rows: c ? c.rowEls.size : 0,
    truncated: c ? c.truncated : false,
    snapshotSeq: c ? c.snapshotSeq : null,
    lastSeq: S.lastSeq,
    // A filtered view is live once its own subscription is acknowledged too.
    subscribed: S.subscribed && (!c || !c.filtered || c.subscribed),
    where: c ? c.where : null,
    select: c && c.select ? selectString(c.select) : null,
    filterError: S.filterError,
    state: S.connState,
    pending: c ? c.pending.size : 0,
    logEntries: S.log.length,
    resumed: S.resumed,
    resets: S.resets,
    lastReset: S.lastReset,
    stream: client.stream,
    perf: S.perf,
  });
}

// ---------------------------------------------------------------------------
// Connection status

const statusEl = tid('status');
const statusText = tid('status-text');
const noticeEl = tid('notice');
let countdown = 0;

const srStatus = $('#sr-status');
const srText = { connected: 'Live: connected to the server', reconnecting: 'Connection lost, reconnecting', connecting: 'Connecting' };

function setStatus(state, text) {
  // The visible text counts down; assistive technology hears only state changes.
  if (state !== S.connState || !srStatus.textContent) srStatus.textContent = srText[state] || text;
  S.connState = state;
  statusEl.dataset.state = state;
  statusText.textContent = text;
  publishDebug();
}

client.on('status', (s) => {
  clearInterval(countdown);
  if (s.state === 'open') {
    setStatus('connected', 'Live');
  } else if (s.state === 'reconnecting') {
    const at = performance.now() + (s.delay || 0);
    const show = () => {
      const left = Math.max(0, at - performance.now());
      const when = left > 50 ? `retry in ${(left / 1000).toFixed(1)} s` : 'connecting…';
      setStatus('reconnecting', `Reconnecting · attempt ${s.attempt} · ${when}`);
    };
    show();
    countdown = setInterval(show, 200);
  } else if (s.state === 'connecting') {
    setStatus('connecting', 'Connecting…');
  } else {
    setStatus('connecting', 'Closed');
  }
});

// ---------------------------------------------------------------------------
// Server figures: lag and delivery rate, read from /metrics (the same numbers a
// Prometheus scrape sees).

const serverStatsEl = tid('server-stats');

/** metricValue returns the value of an unlabelled sample in Prometheus text, or NaN. */
function metricValue(text, name) {
  const m = text.match(new RegExp(`^${name} ([^\\s]+)$`, 'm'));
  return m ? Number(m[1]) : NaN;
}

function compact(n) {
  if (!Number.isFinite(n)) return '–';
  if (n >= 1e6) return `${(n / 1e6).toFixed(1)}M`;
  if (n >= 1e4) return `${Math.round(n / 1e3)}k`;
  if (n >= 1e3) return `${(n / 1e3).toFixed(1)}k`;
  return String(Math.round(n));
}

let lastSent = null;
async function pollServerStats() {
  try {
    const resp = await fetch('/metrics', { cache: 'no-store' });
    if (!resp.ok) throw new Error(resp.statusText);
    const text = await resp.text();
    const now = performance.now();
    const sent = metricValue(text, 'sqlws_changes_sent_total');
    const lag = Math.max(metricValue(text, 'sqlws_subscriber_lag_max_changes'), metricValue(text, 'sqlws_tailer_lag_changes') || 0);
    let rate = NaN;
    if (lastSent && Number.isFinite(sent)) rate = Math.max(0, (sent - lastSent.sent) / ((now - lastSent.at) / 1000));
    lastSent = { sent, at: now };
    serverStatsEl.textContent = `lag ${compact(lag)} · ${compact(rate)} changes/s`;
    serverStatsEl.dataset.lag = String(lag);
    serverStatsEl.dataset.rate = Number.isFinite(rate) ? String(Math.round(rate)) : '';
    serverStatsEl.hidden = false;
  } catch {
    serverStatsEl.hidden = true;
  }
}
pollServerStats();
setInterval(pollServerStats, 2000);

let noticeTimer = 0;
function notice(text, kind = 'info', sticky = false) {
  noticeEl.textContent = text;
  noticeEl.dataset.kind = kind;
  noticeEl.hidden = false;
  clearTimeout(noticeTimer);
  if (!sticky) noticeTimer = setTimeout(() => (noticeEl.hidden = true), 8000);
}

client.on('resumed', (d) => {
  S.resumed = { fromSeq: d.fromSeq, caughtUp: d.caughtUp, head: d.head, at: Date.now() };
  notice(`Resumed from seq ${d.fromSeq} with ${plural(d.caughtUp, 'change', 'changes')} caught up`, 'ok');
  publishDebug();
});

client.on('open', () => {
  // Something failed while the server was away: load it again now.
  if (S.bootFailed) boot();
  else if (S.cur && S.cur.error) openTable(S.cur.name);
});

client.on('error', (d) => {
  if (!d.subscription) console.warn('sqlws:', d.code, d.message);
});

// ---------------------------------------------------------------------------
// Subscription

function ensureSubscribed(since) {
  if (S.sub && S.sub.active) return;
  S.subscribed = false;
  S.sub = client.subscribe(
    {
      since: since == null ? undefined : since,
      onSubscribed: (d) => {
        S.subscribed = true;
        if (d.subscription === S.sub && (S.lastSeq == null || d.subscription.lastSeq > S.lastSeq)) S.lastSeq = d.subscription.lastSeq;
        schedule();
        publishDebug();
      },
      onReset: onReset,
      onError: (d) => notice(`Subscription error: ${d.message || d.code}`, 'error', true),
    },
    onChanges,
  );
  loadHistory(since);
}

function onReset(d) {
  S.sub = null;
  S.lastSeq = null;
  S.subscribed = false;
  S.resets++;
  S.lastReset = { reason: d.reason, head: d.head, at: Date.now() };
  const what = S.cur ? `reloaded ${S.cur.name}` : 'reloaded';
  notice(`Change stream reset (${d.reason}): ${what}`, 'warn');
  refreshTables();
  if (S.cur) openTable(S.cur.name, { keepScroll: true });
  else ensureSubscribed();
  publishDebug();
}

function onChanges(records) {
  const c = S.cur;
  let unknown = false;
  for (const rec of records) {
    S.lastSeq = rec.seq;
    if (rec.op === 'insert' || rec.op === 'delete') {
      const n = S.counts.get(rec.table);
      if (n != null) {
        S.counts.set(rec.table, Math.max(0, n + (rec.op === 'insert' ? 1 : -1)));
        S.countsDirty = true;
      }
    }
    const meta = S.byName.get(rec.table);
    if (!meta || !sameColumns(meta, rec.new || rec.old)) unknown = true;
    S.logQueue.push(rec);
    if (c && rec.table === c.name && !c.filtered) {
      if (c.loading) c.buffer.push(rec);
      else if (c.snapshotSeq == null || rec.seq > c.snapshotSeq) enqueueChange(c, rec);
    }
  }
  if (S.paused) S.pausedCount += records.length;
  if (S.logQueue.length > 2 * LOG_CAP) S.logQueue = S.logQueue.slice(-LOG_CAP);
  if (unknown) refreshTablesSoon();
  schedule();
}

// sameColumns reports whether a row image has exactly the columns the table list
// knows; a difference means the schema changed (ALTER TABLE) and needs a refresh.
function sameColumns(meta, img) {
  if (!img) return true;
  if (!meta._cols) meta._cols = new Set(meta.columns.map((c) => c.name));
  let n = 0;
  for (const k in img) {
    if (!meta._cols.has(k)) return false;
    n++;
  }
  return n === meta._cols.size;
}

function schedule() {
  if (!S.frame) S.frame = requestAnimationFrame(flush);
}

function flush() {
  S.frame = 0;
  const t0 = performance.now();
  const c = S.cur;
  if (c && c.pending.size) {
    applyPending(c);
    if (c.pending.size) schedule(); // over budget: continue next frame
  }
  if (S.logQueue.length && !S.paused) {
    // The log is for reading: at high rates it is redrawn a few times a second,
    // which costs far less than a layout per frame.
    const wait = S.lastLogRender + LOG_INTERVAL - t0;
    if (wait <= 0) {
      renderLog();
      S.lastLogRender = t0;
    } else if (!S.logTimer) {
      S.logTimer = setTimeout(() => {
        S.logTimer = 0;
        schedule();
      }, wait);
    }
  }
  if (S.paused) renderLogMeta();
  if (S.countsDirty) renderCounts();
  renderHead();
  const dt = performance.now() - t0;
  S.perf.flushes++;
  S.perf.totalMs += dt;
  if (dt > S.perf.maxMs) S.perf.maxMs = dt;
  publishDebug();
}

const headSeqEl = tid('head-seq');
function renderHead() {
  const text = S.lastSeq == null ? '' : `seq ${fmtCount(S.lastSeq)}`;
  if (headSeqEl.textContent !== text) headSeqEl.textContent = text;
}

// ---------------------------------------------------------------------------
// Table list

const listEl = tid('table-list');
let refreshTimer = 0;

async function loadTables() {
  try {
    const data = await api('GET', '/api/tables');
    S.tablesError = null;
    setTables((data && data.tables) || []);
    return true;
  } catch (err) {
    S.tablesError = err;
    gridMessage(`Could not load the table list: ${err.message}`, 'error', () => boot());
    return false;
  }
}

function refreshTables() {
  loadTables().then((ok) => {
    if (ok && S.cur && !S.byName.has(S.cur.name)) {
      notice(`Table ${S.cur.name} is gone`, 'warn');
    }
    if (ok && S.cur && S.byName.has(S.cur.name)) {
      const t = S.byName.get(S.cur.name);
      if (JSON.stringify(t.columns) !== JSON.stringify(S.cur.meta.columns)) {
        notice(`The schema of ${t.name} changed: reloaded`, 'info');
        openTable(t.name, { keepScroll: true });
      }
    }
  });
}

// refreshTablesSoon refreshes the table list shortly, at most every 2 s however
// many changes ask for it.
let lastRefresh = -Infinity;
function refreshTablesSoon() {
  if (refreshTimer) return;
  const wait = Math.max(300, lastRefresh + 2000 - performance.now());
  refreshTimer = setTimeout(() => {
    refreshTimer = 0;
    lastRefresh = performance.now();
    refreshTables();
  }, wait);
}

function setTables(tables) {
  tables = [...tables].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  const old = S.counts;
  S.tables = tables;
  S.byName = new Map(tables.map((t) => [t.name, t]));
  S.counts = new Map();
  for (const t of tables) {
    S.counts.set(t.name, typeof t.row_count === 'number' ? t.row_count : old.get(t.name) ?? null);
  }
  if (S.cur && S.byName.has(S.cur.name) && !S.cur.loading && !S.cur.truncated && !S.cur.where) {
    S.counts.set(S.cur.name, S.cur.rowEls.size);
  }
  S.tablesLoaded = true;
  renderTables();
}

function renderTables() {
  listEl.replaceChildren(
    ...S.tables.map((t) => {
      const btn = h(
        'button',
        { type: 'button', class: 'table-item', 'data-table': t.name, 'data-testid': 'table-item' },
        h('span', { class: 'table-name', text: t.name }),
        h('span', { class: 'count', 'data-testid': 'table-count', text: fmtCount(S.counts.get(t.name)) }),
      );
      if (S.cur && S.cur.name === t.name) btn.setAttribute('aria-current', 'true');
      return h('li', null, btn);
    }),
  );
  tid('tables-empty').hidden = S.tables.length > 0;
  S.countsDirty = false;
}

function renderCounts() {
  S.countsDirty = false;
  const c = S.cur;
  if (c && !c.loading && !c.truncated && !c.where) S.counts.set(c.name, c.rowEls.size);
  for (const btn of listEl.querySelectorAll('button[data-table]')) {
    const el = btn.lastElementChild;
    const text = fmtCount(S.counts.get(btn.dataset.table));
    if (el.textContent !== text) el.textContent = text;
  }
  if (c) renderRowCount(c);
}

listEl.addEventListener('click', (ev) => {
  const btn = ev.target.closest('button[data-table]');
  if (!btn) return;
  if (S.cur && S.cur.name === btn.dataset.table && !S.cur.error) return;
  openTable(btn.dataset.table);
  // On a phone the grid is below the list: bring it into view.
  if (matchMedia('(max-width: 760px)').matches) tid('table-title').scrollIntoView({ block: 'start' });
});
tid('tables-refresh').addEventListener('click', () => refreshTables());

// ---------------------------------------------------------------------------
// Grid

const gridEl = tid('grid');
const headEl = tid('grid-head');
const bodyEl = tid('rows');
const scrollEl = $('#grid-scroll');
const msgEl = tid('grid-message');

function gridMessage(text, kind, retry) {
  msgEl.replaceChildren();
  if (!text) {
    msgEl.hidden = true;
    return;
  }
  msgEl.dataset.kind = kind || 'info';
  msgEl.append(h('p', { text }));
  if (retry) {
    const b = h('button', { type: 'button', class: 'btn', text: 'Retry' });
    b.addEventListener('click', retry);
    msgEl.append(b);
  }
  msgEl.hidden = false;
}

// Column widths: from the type until rows arrive, then from the content of a sample
// (the 90th percentile of text lengths), so short columns stay narrow and text gets
// the room. Units are ch of the grid's font; cells use a monospace font.
function typeWidth(col) {
  const a = col.rowid ? 'INTEGER' : affinity(col.type);
  if (a === 'INTEGER') return 7;
  if (a === 'REAL' || a === 'NUMERIC') return 9;
  if (a === 'BLOB') return 16;
  return 20;
}

function typeLabel(col) {
  if (col.rowid) return 'rowid';
  return (col.type || 'any').toLowerCase();
}

function setColumns(c, widths) {
  const tmpl = [];
  let min = 0;
  for (const w of widths) {
    const lo = Math.min(w, 12);
    min += lo;
    tmpl.push(`minmax(${lo + 2}ch, ${w}fr)`);
  }
  tmpl.push('8rem');
  gridEl.style.setProperty('--cols', tmpl.join(' '));
  gridEl.style.setProperty('--minw', `calc(${min + 2 * widths.length}ch + 8rem)`);
}

function sizeColumns(c, rows) {
  const sample = rows.slice(0, 300);
  const widths = c.cols.map((col) => {
    const lens = sample.map((r) => Math.min(80, display(r[col.name])[0].length)).sort((a, b) => a - b);
    // The 90th percentile, raised towards the longest value so outliers get some room.
    const p90 = lens.length ? Math.max(lens[Math.floor((lens.length - 1) * 0.9)], Math.ceil(lens[lens.length - 1] * 0.6)) : typeWidth(col);
    const head = col.name.length + (col.pk && !col.rowid ? 3 : 0);
    return Math.max(4, Math.min(60, Math.max(p90, head, Math.min(typeLabel(col).length, 4)) + 1));
  });
  setColumns(c, widths);
}

/** rowidKey is the name a keyless table's rowid has in rows and keys ("rowid", or
 * "_rowid_"/"oid" when a column is named rowid). */
const rowidKey = (meta) => meta.rowid_key || 'rowid';

/** displayCols lists the grid's columns: rowid first for a table without a key. */
function displayCols(meta) {
  const cols = meta.columns.map((c) => ({ ...c }));
  if (!meta.primary_key || meta.primary_key.length === 0) {
    cols.unshift({ name: rowidKey(meta), type: 'INTEGER', notnull: true, pk: 1, rowid: true });
  }
  return cols;
}

/** shownCols is the grid's columns of a view: all, or those its select names. */
function shownCols(meta, select) {
  const all = displayCols(meta);
  if (!select) return all;
  const want = new Set(select);
  return all.filter((col) => want.has(col.name));
}

/**
 * restSelect is the select a view asks REST and the stream for: its shown columns
 * plus the key, which addresses rows (grid keys, edits, deletes) even when hidden.
 */
function restSelect(c) {
  if (!c.select) return null;
  const cols = [...c.keyCols];
  for (const n of c.select) if (!cols.includes(n)) cols.push(n);
  return selectString(cols);
}

/** restWhere is a filter as REST's query string carries it; '#' would end the URL. */
const restWhere = (where) => where.replace(/#/g, '%23');

function setupGrid(c) {
  const cols = c.cols;
  setColumns(c, cols.map(typeWidth));
  headEl.replaceChildren(
    ...cols.map((col) =>
      h(
        'div',
        {
          role: 'columnheader',
          class: 'cell',
          'data-col': col.name,
          'data-num': ['INTEGER', 'REAL', 'NUMERIC'].includes(col.rowid ? 'INTEGER' : affinity(col.type)) || null,
          title: `${col.name} ${col.type || ''}`.trim(),
        },
        h('span', { class: 'col-name' }, col.name, col.pk && !col.rowid ? h('abbr', { class: 'pk', title: 'primary key', text: 'pk' }) : null),
        h('span', { class: 'col-type', text: typeLabel(col) }),
      ),
    ),
    h('div', { role: 'columnheader', class: 'cell actions' }, h('span', { class: 'sr-only', text: 'Actions' })),
  );
  // A template row, cloned for every row.
  const row = h('div', { role: 'row', class: 'row', 'data-testid': 'row' });
  for (const col of cols) row.append(h('div', { role: 'cell', class: 'cell', 'data-col': col.name }));
  row.append(
    h(
      'div',
      { role: 'cell', class: 'cell actions' },
      h('button', { type: 'button', class: 'btn tiny', 'data-act': 'edit', 'data-testid': 'row-edit', text: 'Edit' }),
      h('button', { type: 'button', class: 'btn tiny danger-ghost', 'data-act': 'delete', 'data-testid': 'row-delete-btn', text: 'Delete' }),
    ),
  );
  c.template = row;
  bodyEl.replaceChildren();
}

function keyObjOf(c, src) {
  const o = {};
  for (const k of c.keyCols) o[k] = src[k] === undefined ? null : src[k];
  return o;
}

function fillCell(cell, v) {
  const [text, kind] = display(v);
  cell.textContent = text;
  cell.dataset.kind = kind;
  if (kind === 'text' && text.length > 40) cell.title = text;
  else if (cell.title) cell.removeAttribute('title');
}

function makeRow(c, key, row) {
  const el = c.template.cloneNode(true);
  el.dataset.key = key;
  const cells = el.children;
  for (let i = 0; i < c.cols.length; i++) fillCell(cells[i], row[c.cols[i].name]);
  el._sk = c.keyCols.map((k) => row[k]);
  return el;
}

// insertRowEl puts el in key order (REST pages come in key order; inserts usually go
// at the end).
function insertRowEl(c, el) {
  const kids = bodyEl.children;
  const n = kids.length;
  if (!c.sorted || n === 0 || compareTuple(el._sk, kids[n - 1]._sk) > 0) {
    bodyEl.append(el);
    return;
  }
  let lo = 0;
  let hi = n;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (compareTuple(kids[mid]._sk, el._sk) < 0) lo = mid + 1;
    else hi = mid;
  }
  bodyEl.insertBefore(el, kids[lo] || null);
}

/** openTable loads a table through REST, page by page, and makes it the open one. */
async function openTable(name, opts = {}) {
  const meta = S.byName.get(name);
  if (!meta) {
    gridMessage(`There is no table named “${name}”.`, 'error');
    return;
  }
  const token = ++S.loadToken;
  const prevScroll = opts.keepScroll && S.cur && S.cur.name === name ? scrollEl.scrollTop : 0;
  const keyCols = meta.primary_key && meta.primary_key.length ? meta.primary_key : [rowidKey(meta)];
  const view = S.filters.get(name) || { where: null, select: null };
  const switched = !S.cur || S.cur.name !== name;
  if (S.gridSub) {
    S.gridSub.unsubscribe();
    S.gridSub = null;
  }
  const c = {
    name,
    meta,
    keyCols,
    where: view.where || null, // the REST filter of this view, or null
    select: view.select || null, // the columns shown, or null for all
    filtered: !!(view.where || view.select), // the grid follows its own filtered subscription
    subscribed: false, // that subscription is acknowledged
    cols: shownCols(meta, view.select),
    rowEls: new Map(), // key → row element
    rows: new Map(), // key → row object
    pending: new Map(), // key → {del} | {row, insert}
    buffer: [], // changes that arrived while loading
    snapshotSeq: null,
    loading: true,
    truncated: false,
    sorted: true,
    lastSk: null,
    error: null,
    template: null,
  };
  S.cur = c;
  S.ready = false;
  document.title = `${name} · sqlws`;
  const url = new URL(location.href);
  url.searchParams.set('table', name);
  // The view is in the URL, so a filtered live view can be bookmarked and shared.
  if (c.where) url.searchParams.set('where', c.where);
  else url.searchParams.delete('where');
  if (c.select) url.searchParams.set('select', selectString(c.select));
  else url.searchParams.delete('select');
  history.replaceState(history.state, '', url);
  renderFilterBar(c, switched || opts.fromFilter);
  for (const b of listEl.querySelectorAll('button[data-table]')) {
    if (b.dataset.table === name) b.setAttribute('aria-current', 'true');
    else b.removeAttribute('aria-current');
  }
  tid('table-title').textContent = name;
  tid('new-row').disabled = false;
  setupGrid(c);
  gridMessage('Loading…', 'info');
  renderRowCount(c);
  publishDebug();

  let after = null;
  try {
    for (;;) {
      // The filter first: the page's own limit and after come last and win.
      let path = `${tablePath(name)}?`;
      if (c.where) path += `${restWhere(c.where)}&`;
      const sel = restSelect(c);
      if (sel) path += `select=${encodeURIComponent(sel)}&`;
      path += `limit=${PAGE_SIZE}`;
      if (after != null) path += `&after=${encodeURIComponent(String(after))}`;
      const page = await api('GET', path);
      if (token !== S.loadToken) return;
      if (c.snapshotSeq == null) {
        c.snapshotSeq = page.seq;
        // A live subscription made before this snapshot may start after it (its ack can
        // come later than this page): restart it from the snapshot so nothing between
        // is missed. The client drops what it already delivered by seq.
        if (S.sub && S.sub.active && (S.sub.lastSeq == null || S.sub.lastSeq > page.seq)) {
          S.sub.unsubscribe();
          S.sub = null;
        }
        ensureSubscribed(page.seq);
        if (c.filtered) subscribeGrid(c, page.seq);
        if (page.rows && page.rows.length) sizeColumns(c, page.rows);
      }
      appendPage(c, page.rows || []);
      if (c.rowEls.size) gridMessage('');
      renderRowCount(c);
      if (page.next == null || c.rowEls.size >= LOAD_LIMIT) {
        c.truncated = page.next != null;
        break;
      }
      after = page.next;
    }
  } catch (err) {
    if (token !== S.loadToken) return;
    c.error = err;
    c.loading = false;
    c.buffer = [];
    if (c.filtered && err.status >= 400 && err.status < 500 && err.status !== 404) {
      // The server refused the view's filter or columns: say why next to the box.
      showFilterError(err);
      gridMessage('No rows shown: the filter or columns above were not accepted. Fix the filter and press Enter, or clear it.', 'error');
    } else {
      gridMessage(`Could not load ${name}: ${err.message}`, 'error', () => openTable(name));
    }
    publishDebug();
    return;
  }
  c.loading = false;
  for (const rec of c.buffer) if (rec.seq > c.snapshotSeq) enqueueChange(c, rec);
  c.buffer = [];
  if (!c.truncated && !c.where) S.counts.set(name, c.rowEls.size);
  S.countsDirty = true;
  emptyState(c);
  if (prevScroll) scrollEl.scrollTop = prevScroll;
  S.ready = true;
  schedule();
  publishDebug();
}

function appendPage(c, rows) {
  const frag = document.createDocumentFragment();
  for (const row of rows) {
    const keyObj = keyObjOf(c, row);
    const key = JSON.stringify(keyObj);
    if (c.rowEls.has(key)) continue;
    const el = makeRow(c, key, row);
    if (c.lastSk && compareTuple(el._sk, c.lastSk) <= 0) c.sorted = false;
    c.lastSk = el._sk;
    c.rowEls.set(key, el);
    c.rows.set(key, row);
    frag.append(el);
  }
  bodyEl.append(frag);
}

function renderRowCount(c) {
  const n = c.rowEls.size;
  let text = plural(n, 'row', 'rows');
  if (c.where) {
    const total = S.counts.get(c.name);
    text = `${plural(n, 'matching row', 'matching rows')}${total != null ? ` of ${fmtCount(total)}` : ''}`;
  }
  if (c.loading) text = `Loading… ${text}`;
  else if (c.truncated) {
    const total = S.counts.get(c.name);
    text = `first ${fmtCount(n)}${total != null ? ` of ${fmtCount(total)}` : ''} rows`;
  }
  const el = tid('row-count');
  if (el.textContent !== text) el.textContent = text;
}

function emptyState(c) {
  if (c.loading || c.error) return;
  if (c.rowEls.size) {
    gridMessage('');
    return;
  }
  if (c.where) {
    gridMessage('No rows match the filter. Rows that come to match it appear here as they change.', 'info');
    return;
  }
  msgEl.replaceChildren(
    h('p', { text: `${c.name} has no rows yet. Insert one from any SQLite client and watch it appear here:` }),
    h('pre', null, h('code', { 'data-testid': 'insert-example', text: exampleInsert(c.meta) })),
  );
  msgEl.dataset.kind = 'info';
  msgEl.hidden = false;
}

function exampleInsert(meta) {
  const q = (s) => (/^[A-Za-z_][A-Za-z0-9_]*$/.test(s) ? s : `"${s.replace(/"/g, '""')}"`);
  const rowidAlias = meta.primary_key.length === 1 && meta.columns.some((c) => c.name === meta.primary_key[0] && affinity(c.type) === 'INTEGER' && /^INTEGER$/i.test(c.type.trim()));
  const cols = meta.columns.filter((c) => !(rowidAlias && c.name === meta.primary_key[0])).slice(0, 4);
  const vals = cols.map((c) => {
    switch (affinity(c.type)) {
      case 'INTEGER':
        return '1';
      case 'REAL':
      case 'NUMERIC':
        return '1.5';
      case 'BLOB':
        return "x'CAFE'";
      default:
        return `'hello'`;
    }
  });
  return `INSERT INTO ${q(meta.name)} (${cols.map((c) => q(c.name)).join(', ')}) VALUES (${vals.join(', ')});`;
}

/** enqueueChange records the net effect of one change on the open grid. */
function enqueueChange(c, rec) {
  const pkKey = JSON.stringify(keyObjOf(c, rec.pk || {}));
  if (rec.op === 'delete') {
    c.pending.set(pkKey, { del: true });
    return;
  }
  if (rec.op === 'update' && (rec.moved === 'out' || !rec.new)) {
    // Out of a filtered view: the row left the filter. pk is its new key; the one it
    // is shown under is in old (the view's select always carries the key).
    c.pending.set(rec.old ? JSON.stringify(keyObjOf(c, rec.old)) : pkKey, { del: true });
    return;
  }
  if (!rec.new) return;
  let row = rec.new;
  if (rec.op === 'update' && rec.old) {
    // The key itself changed: the row moves.
    const oldKey = JSON.stringify(keyObjOf(c, rec.old));
    if (oldKey !== pkKey) c.pending.set(oldKey, { del: true });
  }
  c.pending.set(pkKey, { row });
}

function flashEl(el, cls) {
  // Alternate between two identical animations so a repeated change restarts it
  // without forcing a reflow.
  el.dataset.flash = el.dataset.flash === cls + '-a' ? cls + '-b' : cls + '-a';
}

function applyPending(c) {
  const t0 = performance.now();
  let n = 0;
  for (const [key, op] of c.pending) {
    c.pending.delete(key);
    const el = c.rowEls.get(key);
    if (op.del) {
      if (el) {
        el.remove();
        c.rowEls.delete(key);
        c.rows.delete(key);
      }
    } else if (el) {
      const old = c.rows.get(key);
      const cells = el.children;
      for (let i = 0; i < c.cols.length; i++) {
        const name = c.cols[i].name;
        if (!sameValue(old[name], op.row[name])) {
          fillCell(cells[i], op.row[name]);
          flashEl(cells[i], 'cell');
        }
      }
      c.rows.set(key, op.row);
    } else {
      const nel = makeRow(c, key, op.row);
      const last = bodyEl.lastElementChild;
      if (c.truncated && last && c.sorted && compareTuple(nel._sk, last._sk) > 0) continue; // beyond the loaded window
      insertRowEl(c, nel);
      flashEl(nel, 'row');
      c.rowEls.set(key, nel);
      c.rows.set(key, op.row);
      if (c.rowEls.size > LOAD_LIMIT) {
        // Keep the grid to the first LOAD_LIMIT rows in key order.
        const drop = bodyEl.lastElementChild;
        drop.remove();
        c.rowEls.delete(drop.dataset.key);
        c.rows.delete(drop.dataset.key);
        c.truncated = true;
      }
    }
    if ((++n & 63) === 0 && performance.now() - t0 > FRAME_BUDGET) break;
  }
  if (!c.truncated && !c.where) {
    // A filtered grid holds only the matching rows; the global subscription keeps
    // the table's count.
    S.counts.set(c.name, c.rowEls.size);
    S.countsDirty = true;
  }
  renderRowCount(c);
  emptyState(c);
}

// Row actions, delegated.
bodyEl.addEventListener('click', (ev) => {
  const btn = ev.target.closest('button[data-act]');
  if (!btn) return;
  const rowEl = btn.closest('[data-key]');
  if (!rowEl || !S.cur) return;
  if (btn.dataset.act === 'edit') openRowDialog('edit', rowEl.dataset.key, btn);
  else confirmDelete(rowEl.dataset.key, btn);
});
bodyEl.addEventListener('dblclick', (ev) => {
  const rowEl = ev.target.closest('[data-key]');
  if (rowEl && !ev.target.closest('button')) openRowDialog('edit', rowEl.dataset.key, rowEl.querySelector('[data-act="edit"]'));
});
tid('new-row').addEventListener('click', (ev) => openRowDialog('create', null, ev.currentTarget));

// ---------------------------------------------------------------------------
// Filtered views: a REST filter and the shown columns of the open table

const filterBar = tid('filterbar');
const filterInput = tid('filter-input');
const filterErr = tid('filter-error');
const colMenu = tid('columns-menu');
const colList = tid('columns-list');
let filterToken = 0;

/** normalizeWhere is the filter typed or in the URL, as REST reads it; null for none. */
function normalizeWhere(text) {
  let s = String(text || '').trim();
  if (s.startsWith('?')) s = s.slice(1);
  return s === '' ? null : s;
}

/**
 * splitList reads REST's select grammar (comma-separated, an item double-quoted with
 * backslash escapes when it holds a comma) into names; null for none or '*'.
 */
function splitList(s) {
  if (!s || s === '*') return null;
  const out = [];
  let i = 0;
  while (i <= s.length) {
    let name = '';
    if (s[i] === '"') {
      i++;
      while (i < s.length && s[i] !== '"') {
        if (s[i] === '\\' && i + 1 < s.length) i++;
        name += s[i++];
      }
      const j = s.indexOf(',', i);
      i = j < 0 ? s.length + 1 : j + 1;
    } else {
      const j = s.indexOf(',', i);
      name = s.slice(i, j < 0 ? s.length : j);
      i = j < 0 ? s.length + 1 : j + 1;
    }
    if (name !== '' && !out.includes(name)) out.push(name);
  }
  return out.length ? out : null;
}

/** subscribeGrid follows the filtered view c from since with its own subscription. */
function subscribeGrid(c, since) {
  const sub = client.subscribe(
    {
      table: c.name,
      where: c.where || undefined,
      select: restSelect(c) || undefined,
      since,
      onSubscribed: () => {
        if (S.gridSub !== sub) return;
        c.subscribed = true;
        publishDebug();
      },
      onReset: () => {
        if (S.gridSub !== sub) return;
        S.gridSub = null;
        // Usually the all-tables subscription is reset too, reloads and says so; a
        // second openTable just restarts the load.
        if (S.cur === c) openTable(c.name, { keepScroll: true });
      },
      onError: (d) => {
        if (S.gridSub !== sub) return;
        if ((d.code === 'unavailable' || d.code === 'internal') && sub.active) return; // the client asks again
        // Refused (a filter the stream does not take) or ended (a column it uses was
        // dropped): the grid is no longer live, and the box says why.
        S.gridSub = null;
        c.subscribed = false;
        showFilterError(d);
        notice(`The filtered view of ${c.name} stopped: ${d.message || d.code}`, 'error', true);
        publishDebug();
      },
    },
    (records) => {
      if (S.gridSub !== sub || S.cur !== c) return;
      for (const rec of records) {
        if (c.loading) c.buffer.push(rec);
        else if (c.snapshotSeq == null || rec.seq > c.snapshotSeq) enqueueChange(c, rec);
      }
      schedule();
    },
  );
  S.gridSub = sub;
}

/** renderFilterBar shows the filter box and column chooser of view c. */
function renderFilterBar(c, resetText) {
  filterBar.hidden = false;
  if (resetText) filterInput.value = c.where || '';
  filterInput.dataset.active = String(!!c.where);
  clearFilterError();
  const focused = colList.contains(document.activeElement) ? document.activeElement.dataset.col : null;
  const all = displayCols(c.meta);
  const shown = new Set(c.cols.map((col) => col.name));
  colList.replaceChildren(
    h('legend', { class: 'sr-only', text: 'Shown columns' }),
    ...all.map((col) =>
      h(
        'label',
        null,
        h('input', { type: 'checkbox', 'data-testid': 'column-toggle', 'data-col': col.name, checked: shown.has(col.name) }),
        h('span', { text: col.name }),
      ),
    ),
  );
  const hidden = all.length - c.cols.length;
  tid('columns-btn').textContent = hidden > 0 ? `Columns · ${fmtCount(hidden)} hidden` : 'Columns';
  if (focused != null) {
    const box = colList.querySelector(`[data-col="${CSS.escape(focused)}"]`);
    if (box) box.focus();
  }
}

function showFilterError(err) {
  S.filterError = { code: err.code, message: err.message };
  filterErr.replaceChildren(h('code', { text: err.code }), err.message || '');
  filterErr.dataset.code = err.code;
  filterErr.hidden = false;
  filterInput.setAttribute('aria-invalid', 'true');
  publishDebug();
}

function clearFilterError() {
  if (filterErr.hidden && !S.filterError) return;
  S.filterError = null;
  filterErr.hidden = true;
  filterErr.replaceChildren();
  delete filterErr.dataset.code;
  filterInput.removeAttribute('aria-invalid');
}

/**
 * applyFilter makes text the open table's filter. The server is asked first (one
 * row), so a mistake shows its error code and message next to the box and the view
 * stays as it was.
 */
async function applyFilter(text) {
  const c = S.cur;
  if (!c) return;
  const name = c.name;
  const where = normalizeWhere(text);
  const token = ++filterToken;
  clearFilterError();
  const view = S.filters.get(name) || { where: null, select: null };
  if (where) {
    let path = `${tablePath(name)}?${restWhere(where)}&`;
    const sel = restSelect({ keyCols: c.keyCols, select: view.select });
    if (sel) path += `select=${encodeURIComponent(sel)}&`;
    // The stream's rules are /api/changes's too, and they are a little stricter than
    // a list URL's (limit, order and the like are not filters there): ask both, so a
    // filter the view's subscription would refuse is reported here as well.
    let changes = `/api/changes?table=${encodeURIComponent(name)}&where=${encodeURIComponent(where)}`;
    if (sel) changes += `&select=${encodeURIComponent(sel)}`;
    changes += `&since=${S.lastSeq || 0}&limit=1`;
    try {
      await api('GET', `${path}limit=1`);
      await api('GET', changes);
    } catch (err) {
      if (token !== filterToken || !S.cur || S.cur.name !== name) return;
      if (err.status === 400) {
        showFilterError(err);
        return;
      }
      // Unreachable, busy, or a 410 from the change log (its retention, not the
      // filter): apply it anyway; the load says what went wrong, if anything.
    }
    if (token !== filterToken || !S.cur || S.cur.name !== name) return;
  }
  S.filters.set(name, { where, select: view.select });
  await openTable(name, { fromFilter: true });
}

tid('filter-form').addEventListener('submit', (ev) => {
  ev.preventDefault();
  applyFilter(filterInput.value);
});
filterInput.addEventListener('keydown', (ev) => {
  // Escape puts back the filter in force.
  if (ev.key === 'Escape' && S.cur) {
    filterInput.value = S.cur.where || '';
    clearFilterError();
  }
});

colList.addEventListener('change', (ev) => {
  const box = ev.target.closest('input[data-col]');
  const c = S.cur;
  if (!box || !c) return;
  const all = displayCols(c.meta).map((col) => col.name);
  const shown = [...colList.querySelectorAll('input[data-col]')].filter((b) => b.checked).map((b) => b.dataset.col);
  if (!shown.length) {
    box.checked = true;
    notice('At least one column stays shown.', 'info');
    return;
  }
  S.filters.set(c.name, { where: c.where, select: shown.length === all.length ? null : shown });
  openTable(c.name, { keepScroll: true });
});
document.addEventListener('click', (ev) => {
  if (colMenu.open && !colMenu.contains(ev.target)) colMenu.open = false;
});
colMenu.addEventListener('keydown', (ev) => {
  if (ev.key === 'Escape' && colMenu.open) {
    ev.preventDefault();
    colMenu.open = false;
    colMenu.querySelector('summary').focus();
  }
});

// ---------------------------------------------------------------------------
// Change log

// The log keeps up to LOG_CAP records (S.log, oldest first) and renders only the
// entries in view: a fixed row height, a spacer as tall as the whole list, and a
// small pool of absolutely positioned entries. Its cost per redraw is the same at
// 1 change/s and at 1,000.

const logEl = tid('log'); // the scroll container (an <ol>)
const logSpacer = h('li', { class: 'log-spacer', 'aria-hidden': 'true' });
logEl.append(logSpacer);
const LOG_ROW = 28; // px, .entry height in style.css
const LOG_OVERSCAN = 8;
const logShown = new Map(); // seq → rendered <li>

function keyLabel(pk) {
  if (!pk || typeof pk !== 'object') return '';
  const vals = Object.values(pk);
  const keys = Object.keys(pk);
  if (keys.length === 1 && ['rowid', '_rowid_', 'oid'].includes(keys[0])) return `${keys[0]} ${pk[keys[0]]}`;
  return vals.map((v) => display(v)[0]).join(', ');
}

function logEntry(r) {
  const btn = h(
    'button',
    {
      type: 'button',
      class: 'entry',
      'data-seq': String(r.seq),
      'data-testid': 'log-entry',
      'data-op': r.op,
      'data-table': r.table,
      'data-history': r._history || null,
    },
    h('span', { class: 'seq', text: String(r.seq) }),
    h('time', { class: 'ts', text: fmtTime(r.ts), datetime: new Date(r.ts).toISOString() }),
    h('span', { class: 'tbl', text: r.table }),
    h('span', { class: `op op-${r.op}`, text: r.op }),
    h('span', { class: 'key', text: keyLabel(r.pk), title: JSON.stringify(r.pk) }),
  );
  return h('li', { class: 'log-item' }, btn);
}

function trimLog() {
  if (S.log.length > LOG_CAP) S.log.splice(0, S.log.length - LOG_CAP);
}

/** findLogged returns the logged record with seq, by binary search (S.log is in seq order). */
function findLogged(seq) {
  let lo = 0;
  let hi = S.log.length - 1;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    const v = S.log[mid].seq;
    if (v === seq) return S.log[mid];
    if (v < seq) lo = mid + 1;
    else hi = mid - 1;
  }
  return null;
}

/**
 * loadHistory fills the log with the changes just before upTo (the seq the page
 * loaded at), so it is not blank until the next write. Live entries go above them.
 */
async function loadHistory(upTo) {
  if (S.historyLoaded || upTo == null || upTo <= 0) return;
  S.historyLoaded = true;
  const since = Math.max(0, upTo - HISTORY);
  let data;
  try {
    data = await api('GET', `/api/changes?since=${since}&limit=${upTo - since}`);
  } catch {
    return; // pruned or unreachable: the log starts empty
  }
  const first = S.log.length ? S.log[0].seq : Infinity;
  const recs = ((data && data.changes) || []).filter((r) => r.seq <= upTo && r.seq < first);
  if (!recs.length) return;
  for (const r of recs) r._history = true;
  S.log = recs.concat(S.log);
  trimLog();
  renderLogView();
  publishDebug();
}

/** renderLog moves queued records into the log and redraws it. */
function renderLog() {
  const recs = S.logQueue;
  S.logQueue = [];
  const added = Math.min(recs.length, LOG_CAP);
  for (const r of recs.length > LOG_CAP ? recs.slice(-LOG_CAP) : recs) S.log.push(r);
  trimLog();
  S.pausedCount = 0;
  // Reading further down: keep the same entries in view as new ones arrive on top.
  if (logEl.scrollTop > 0) logEl.scrollTop += added * LOG_ROW;
  renderLogView();
}

/** renderLogView draws the entries in view; newest first. */
function renderLogView() {
  const n = S.log.length;
  const height = `${n * LOG_ROW}px`;
  if (logSpacer.style.height !== height) logSpacer.style.height = height;
  const view = logEl.clientHeight || 600;
  const from = Math.max(0, Math.floor(logEl.scrollTop / LOG_ROW) - LOG_OVERSCAN);
  const to = Math.min(n, Math.ceil((logEl.scrollTop + view) / LOG_ROW) + LOG_OVERSCAN);
  const want = new Map();
  for (let i = from; i < to; i++) {
    const r = S.log[n - 1 - i];
    want.set(r.seq, i);
  }
  for (const [seq, li] of logShown) {
    if (!want.has(seq)) {
      li.remove();
      logShown.delete(seq);
    }
  }
  // Keep DOM order = visual order (newest first) for assistive technology, moving
  // as few nodes as possible so a focused entry keeps its focus.
  let ref = logSpacer.nextSibling;
  for (const [seq, i] of want) {
    let li = logShown.get(seq);
    if (!li) {
      li = logEntry(S.log[n - 1 - i]);
      logShown.set(seq, li);
    }
    if (li === ref) ref = ref.nextSibling;
    else logEl.insertBefore(li, ref);
    const y = `translateY(${i * LOG_ROW}px)`;
    if (li.style.transform !== y) li.style.transform = y;
  }
  renderLogMeta();
}

function renderLogMeta() {
  tid('log-empty').hidden = S.log.length > 0 || S.paused;
  let text = S.log.length ? plural(S.log.length, 'entry', 'entries') : '';
  if (S.paused) text = `paused · ${fmtCount(S.pausedCount)} new`;
  const el = tid('log-meta');
  if (el.textContent !== text) el.textContent = text;
}

let logScrollFrame = 0;
logEl.addEventListener('scroll', () => {
  if (!logScrollFrame) {
    logScrollFrame = requestAnimationFrame(() => {
      logScrollFrame = 0;
      renderLogView();
    });
  }
});
new ResizeObserver(() => renderLogView()).observe(logEl);

tid('log-pause').addEventListener('click', (ev) => {
  S.paused = !S.paused;
  ev.currentTarget.setAttribute('aria-pressed', String(S.paused));
  ev.currentTarget.textContent = S.paused ? 'Resume' : 'Pause';
  if (!S.paused) schedule();
  renderLogMeta();
});
tid('log-clear').addEventListener('click', () => {
  S.log = [];
  S.logQueue = [];
  S.pausedCount = 0;
  logEl.scrollTop = 0;
  renderLogView();
  publishDebug();
});
logEl.addEventListener('click', (ev) => {
  const btn = ev.target.closest('button.entry');
  const r = btn && findLogged(Number(btn.dataset.seq));
  if (r) showChange(r, btn);
});

// ---------------------------------------------------------------------------
// Dialogs

for (const dlg of document.querySelectorAll('dialog')) {
  dlg.addEventListener('click', (ev) => {
    if (ev.target.closest('[data-close]')) dlg.close();
    else if (ev.target === dlg) dlg.close(); // a click on the backdrop
  });
  dlg.addEventListener('close', () => {
    const to = dlg._returnFocus;
    dlg._returnFocus = null;
    if (document.querySelector('dialog[open]')) return; // another dialog took over
    if (to && to.isConnected) to.focus();
    else scrollEl.focus({ preventScroll: true });
  });
}

function openDialog(dlg, opener) {
  dlg._returnFocus = opener || document.activeElement;
  dlg.showModal();
}

function showChange(r, opener) {
  const dlg = tid('change-dialog');
  $('#change-title').textContent = `${r.op} · ${r.table}`;
  tid('change-meta').textContent = `seq ${r.seq} · ${new Date(r.ts).toLocaleString()} · key ${JSON.stringify(r.pk)}`;
  const names = [];
  for (const src of [r.old, r.new]) if (src) for (const k of Object.keys(src)) if (!names.includes(k)) names.push(k);
  const tbody = $('tbody', tid('change-diff'));
  tbody.replaceChildren(
    ...names.map((k) => {
      const a = r.old ? r.old[k] : undefined;
      const b = r.new ? r.new[k] : undefined;
      const cell = (v, present) => {
        if (!present) return h('td', { class: 'absent', text: '' });
        const [text, kind] = display(v);
        return h('td', { 'data-kind': kind, text });
      };
      const changed = r.old && r.new && !sameValue(a, b);
      return h(
        'tr',
        { class: changed ? 'changed' : null },
        h('th', { scope: 'row', text: k }),
        cell(a, !!r.old),
        cell(b, !!r.new),
      );
    }),
  );
  openDialog(dlg, opener);
}

// Row form.

const rowDlg = tid('row-dialog');
const rowForm = tid('row-form');
const formError = tid('form-error');
let formCtx = null; // {mode, table, key, keyObj, initial: Map name → text, cols}

function openRowDialog(mode, key, opener) {
  const c = S.cur;
  if (!c) return;
  const row = key ? c.rows.get(key) : null;
  if (mode === 'edit' && !row) return;
  const meta = c.meta;
  const isRowidTable = !meta.primary_key || meta.primary_key.length === 0;
  formCtx = { mode, table: c.name, key, keyObj: row ? keyObjOf(c, row) : null, keyCols: c.keyCols, initial: new Map(), cols: meta.columns };
  $('#row-dialog-title').textContent = mode === 'create' ? `New row in ${c.name}` : `Edit row ${keyLabel(formCtx.keyObj)}`;
  const fields = tid('row-fields');
  fields.replaceChildren();
  if (mode === 'edit' && isRowidTable) {
    const rk = rowidKey(meta);
    fields.append(fieldEl({ name: rk, type: 'INTEGER', notnull: true, pk: 1 }, String(row[rk]), true));
  }
  for (const col of meta.columns) {
    // A hidden column is not in the view's rows: leave it out of the edit form (and
    // so out of the write) rather than show it as empty.
    if (mode === 'edit' && !(col.name in row)) continue;
    const text = row ? fieldText(row[col.name], col) : '';
    formCtx.initial.set(col.name, text);
    fields.append(fieldEl(col, text, mode === 'edit' && col.pk > 0));
  }
  formError.hidden = true;
  tid('row-delete').hidden = mode !== 'edit';
  tid('row-save').textContent = mode === 'create' ? 'Insert' : 'Save';
  tid('row-save').disabled = false;
  openDialog(rowDlg, opener);
  const first = fields.querySelector('input:not([readonly]), textarea:not([readonly])');
  if (first) first.focus();
}

let fieldSeq = 0;
function fieldEl(col, text, readOnly) {
  const id = `f${++fieldSeq}`;
  const errId = `${id}-err`;
  const aff = col.rowid ? 'INTEGER' : affinity(col.type);
  const badges = [];
  if (col.pk) badges.push('pk');
  if (col.notnull) badges.push('not null');
  if (col.default != null) badges.push(`default ${col.default}`);
  const multiline = aff === 'TEXT' && (text.includes('\n') || text.length > 80);
  const input = h(multiline ? 'textarea' : 'input', {
    id,
    name: col.name,
    'data-col': col.name,
    'data-testid': 'field',
    autocomplete: 'off',
    spellcheck: 'false',
    'aria-describedby': errId,
    readonly: readOnly || null,
    inputmode: aff === 'INTEGER' ? 'numeric' : aff === 'REAL' || aff === 'NUMERIC' ? 'decimal' : null,
    placeholder: placeholderFor(col, aff),
  });
  if (multiline) input.rows = Math.min(8, Math.max(3, text.split('\n').length));
  input.value = text;
  return h(
    'div',
    { class: 'field', 'data-field': col.name },
    h(
      'label',
      { for: id },
      h('span', { class: 'field-name', text: col.name }),
      h('span', { class: 'field-type', text: [(col.type || 'any').toLowerCase(), ...badges].join(' · ') }),
    ),
    input,
    h('p', { class: 'field-error', id: errId, 'data-testid': 'field-error', 'data-col': col.name, role: 'alert', hidden: true }),
  );
}

function placeholderFor(col, aff) {
  if (col.pk && aff === 'INTEGER' && formCtx && formCtx.mode === 'create') return 'auto';
  if (col.default != null) return `default ${col.default}`;
  return col.notnull ? '' : 'NULL';
}

function clearErrors() {
  formError.hidden = true;
  formError.textContent = '';
  for (const e of rowForm.querySelectorAll('.field-error')) {
    e.hidden = true;
    e.textContent = '';
  }
  for (const i of rowForm.querySelectorAll('[aria-invalid]')) i.removeAttribute('aria-invalid');
}

function fieldError(name, message) {
  const f = rowForm.querySelector(`.field[data-field="${CSS.escape(name)}"]`);
  if (!f) return false;
  const e = f.querySelector('.field-error');
  e.textContent = message;
  e.hidden = false;
  const input = f.querySelector('[data-col]');
  input.setAttribute('aria-invalid', 'true');
  return input;
}

/** columnInMessage finds the column a server error message names, if any. */
function columnInMessage(message, table, cols) {
  if (!message) return null;
  const esc = (s) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  let best = null;
  let bestAt = Infinity;
  for (const col of cols) {
    const n = esc(col.name);
    const res = [
      new RegExp(`(^|[^\\w])${esc(table)}\\.${n}(?![\\w])`),
      new RegExp(`["'\`]${n}["'\`]`),
      new RegExp(`(^|[^\\w.])${n}(?![\\w])`),
    ];
    for (let i = 0; i < res.length; i++) {
      const m = res[i].exec(message);
      if (m) {
        const at = m.index + i * 10000; // prefer the more explicit spellings
        if (at < bestAt) {
          bestAt = at;
          best = col.name;
        }
        break;
      }
    }
  }
  return best;
}

function showServerError(err, table, cols, formErrEl) {
  let focusEl = null;
  if (err.status !== 0 && err.status !== 404 && err.status !== 503) {
    const col = columnInMessage(err.message, table, cols);
    if (col) focusEl = fieldError(col, err.message);
  }
  if (!focusEl) {
    formErrEl.textContent = err.status ? err.message : `${err.message} Try again when the status says Live.`;
    formErrEl.hidden = false;
  }
  if (focusEl) focusEl.focus();
}

rowForm.addEventListener('submit', async (ev) => {
  ev.preventDefault();
  if (!formCtx) return;
  const ctx = formCtx;
  clearErrors();
  const body = {};
  let bad = null;
  for (const col of ctx.cols) {
    const input = rowForm.querySelector(`[data-col="${CSS.escape(col.name)}"]`);
    if (!input || input.readOnly) continue;
    const text = input.value;
    if (ctx.mode === 'edit' && text === ctx.initial.get(col.name)) continue; // unchanged
    const r = parseField(text, col, ctx.mode);
    if (r.error) {
      const el = fieldError(col.name, r.error);
      if (!bad) bad = el;
      continue;
    }
    if (r.omit) continue;
    body[col.name] = r.value;
  }
  if (bad) {
    bad.focus();
    return;
  }
  if (ctx.mode === 'edit' && Object.keys(body).length === 0) {
    rowDlg.close();
    return;
  }
  const save = tid('row-save');
  save.disabled = true;
  try {
    if (ctx.mode === 'create') {
      const res = await api('POST', tablePath(ctx.table), toJSONBody(body));
      applyResult(ctx.table, 'insert', res);
      notice(`Inserted into ${ctx.table}`, 'ok');
    } else {
      const res = await api('PATCH', `${tablePath(ctx.table)}/${keyPath(ctx.keyCols, ctx.keyObj)}`, toJSONBody(body));
      applyResult(ctx.table, 'update', res);
      notice(`Updated ${ctx.table} ${keyLabel(ctx.keyObj)}`, 'ok');
    }
    formCtx = null;
    rowDlg.close();
  } catch (err) {
    if (formCtx === ctx) showServerError(err, ctx.table, ctx.cols, formError);
  } finally {
    save.disabled = false;
  }
});

// applyResult shows a REST write in the grid at once when the WebSocket is behind it
// (for instance while reconnecting). The same change arriving later is idempotent.
function applyResult(table, op, res) {
  const c = S.cur;
  if (!c || c.name !== table || c.loading || !res || !res.row) return;
  // A written row may not match the view's filter; its subscription says if it does.
  if (c.where) return;
  if (S.lastSeq != null && typeof res.seq === 'number' && res.seq <= S.lastSeq) return;
  const row = { ...res.row };
  const pk = keyObjOf(c, row);
  enqueueChange(c, { seq: res.seq, table, op, pk, old: null, new: row });
  schedule();
}

tid('row-delete').addEventListener('click', (ev) => {
  if (!formCtx || formCtx.mode !== 'edit') return;
  const key = formCtx.key;
  const opener = rowDlg._returnFocus;
  rowDlg.close();
  confirmDelete(key, opener);
  void ev;
});

// Delete confirmation.

const confirmDlg = tid('confirm-dialog');
let deleteCtx = null;

function confirmDelete(key, opener) {
  const c = S.cur;
  if (!c || !c.rows.has(key)) return;
  const keyObj = keyObjOf(c, c.rows.get(key));
  deleteCtx = { table: c.name, keyCols: c.keyCols, keyObj, key };
  tid('confirm-text').textContent = `Delete the row of ${c.name} with key ${keyLabel(keyObj)}? This cannot be undone.`;
  tid('confirm-error').hidden = true;
  openDialog(confirmDlg, opener);
  tid('confirm-delete').focus();
}

$('form', confirmDlg).addEventListener('submit', async (ev) => {
  ev.preventDefault();
  const ctx = deleteCtx;
  if (!ctx) return;
  const btn = tid('confirm-delete');
  btn.disabled = true;
  try {
    const res = await api('DELETE', `${tablePath(ctx.table)}/${keyPath(ctx.keyCols, ctx.keyObj)}`);
    const c = S.cur;
    if (c && c.name === ctx.table && !(S.lastSeq != null && res && res.seq <= S.lastSeq)) {
      c.pending.set(ctx.key, { del: true });
      schedule();
    }
    notice(`Deleted ${ctx.table} ${keyLabel(ctx.keyObj)}`, 'ok');
    deleteCtx = null;
    confirmDlg.close();
  } catch (err) {
    const e = tid('confirm-error');
    e.textContent = err.message;
    e.hidden = false;
  } finally {
    btn.disabled = false;
  }
});

// ---------------------------------------------------------------------------
// Start

async function boot() {
  S.bootFailed = false;
  gridMessage('Loading…', 'info');
  if (!(await loadTables())) {
    S.bootFailed = true;
    return;
  }
  const params = new URLSearchParams(location.search);
  const want = params.get('table');
  // A bookmarked or shared filtered view: ?table=T&where=…&select=… (the table may
  // be left out when there is only one).
  const viewOf = want || (S.tables.length === 1 ? S.tables[0].name : null);
  if (viewOf && S.byName.has(viewOf) && (params.has('where') || params.has('select'))) {
    S.filters.set(viewOf, { where: normalizeWhere(params.get('where') || ''), select: splitList(params.get('select') || '') });
  }
  if (want && S.byName.has(want)) {
    await openTable(want);
  } else {
    if (want) notice(`There is no table named “${want}”.`, 'warn', true);
    if (S.tables.length === 1) {
      await openTable(S.tables[0].name);
    } else {
      ensureSubscribed();
      gridMessage(
        S.tables.length
          ? 'Choose a table on the left. Changes to every table show up in the change log as they happen.'
          : 'This database has no tables yet. Create one with any SQLite client; it shows up here once sqlws tracks it.',
        'info',
      );
      S.ready = true;
      if (!S.tables.length) pollForTables();
    }
  }
  publishDebug();
}

// With no tables there are no changes to learn about new ones from: poll gently.
function pollForTables() {
  const timer = setInterval(async () => {
    if (S.tables.length) {
      clearInterval(timer);
      return;
    }
    if (S.connState !== 'connected') return;
    if ((await loadTables()) && S.tables.length) {
      clearInterval(timer);
      if (S.tables.length === 1 && !S.cur) openTable(S.tables[0].name);
      else gridMessage('Choose a table on the left.', 'info');
    }
  }, 3000);
}

boot();
