package main

// The load side of `sqlws-bench`: many cheap WebSocket subscribers in one process, a
// frame scanner that pulls only seq and the writer's stamp out of changes frames, the
// per-subscriber verifier (lost, duplicated, out-of-order) and a latency histogram.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"math/bits"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// ---------------------------------------------------------------------------
// Verifier

// seqVerifier checks one subscriber's stream against what it must receive: every seq
// in (base, end], each once, in increasing order. end is only known when the writer
// has finished, so observe records and verdict judges.
type seqVerifier struct {
	base     int64
	last     int64    // highest seq received so far (base before any)
	seen     []uint64 // bit i: seq base+1+i was received
	distinct int64    // distinct seqs > base received
	dups     int64    // receipts of a seq already received
	ooo      int64    // first receipts of a seq lower than one already received
	gaps     int64    // receipts that skipped ahead of last+1 (filled later: ooo; never: lost)
	below    int64    // receipts of a seq <= base: before the subscription's since
	only     int64    // when set, the one seq a filtered subscriber must get (F1)
}

func newSeqVerifier(base int64) seqVerifier { return seqVerifier{base: base, last: base} }

func (v *seqVerifier) observe(seq int64) {
	if seq <= v.base {
		v.below++
		return
	}
	i := seq - v.base - 1
	w := int(i >> 6)
	if w >= len(v.seen) {
		if w >= cap(v.seen) {
			n := make([]uint64, w+1, max(2*cap(v.seen), w+1, 16))
			copy(n, v.seen)
			v.seen = n
		} else {
			v.seen = v.seen[:w+1]
		}
	}
	bit := uint64(1) << (i & 63)
	if v.seen[w]&bit != 0 {
		v.dups++
		return
	}
	v.seen[w] |= bit
	v.distinct++
	switch {
	case seq == v.last+1:
		v.last = seq
	case seq > v.last+1:
		v.gaps++
		v.last = seq
	default:
		v.ooo++
	}
}

// inRange counts the distinct seqs received in (base, end].
func (v *seqVerifier) inRange(end int64) int64 {
	n := end - v.base // bits 0..n-1
	if n <= 0 {
		return 0
	}
	var c int64
	full := int(n >> 6)
	for i := 0; i < min(full, len(v.seen)); i++ {
		c += int64(bits.OnesCount64(v.seen[i]))
	}
	if rem := n & 63; rem != 0 && full < len(v.seen) {
		c += int64(bits.OnesCount64(v.seen[full] & (uint64(1)<<rem - 1)))
	}
	return c
}

// verdict is what one or many subscribers got, against what they should have.
type verdict struct {
	Subscribers  int    `json:"subscribers"`
	Expected     int64  `json:"expected"` // changes each subscriber must receive × subscribers
	Received     int64  `json:"received"` // distinct expected changes received
	Lost         int64  `json:"lost"`
	Duplicated   int64  `json:"duplicated"`
	OutOfOrder   int64  `json:"out_of_order"`
	Unexpected   int64  `json:"unexpected"`   // seqs outside (since, head]
	Disconnected int    `json:"disconnected"` // subscribers the server dropped or reset
	BadSubs      int    `json:"bad_subscribers"`
	FirstProblem string `json:"first_problem,omitempty"`
}

func (v verdict) ok() bool {
	return v.Lost == 0 && v.Duplicated == 0 && v.OutOfOrder == 0 && v.Unexpected == 0 && v.Disconnected == 0
}

func (v verdict) String() string {
	s := fmt.Sprintf("%d subs × %d changes: lost %d, dup %d, out-of-order %d", v.Subscribers,
		v.Expected/int64(max(v.Subscribers, 1)), v.Lost, v.Duplicated, v.OutOfOrder)
	if v.Unexpected > 0 {
		s += fmt.Sprintf(", unexpected %d", v.Unexpected)
	}
	if v.Disconnected > 0 {
		s += fmt.Sprintf(", disconnected %d", v.Disconnected)
	}
	if v.ok() {
		return s + " — OK"
	}
	s += fmt.Sprintf(" — FAIL (%d bad subscribers", v.BadSubs)
	if v.FirstProblem != "" {
		s += "; first: " + v.FirstProblem
	}
	return s + ")"
}

// judge returns one subscriber's verdict for the range (base, end].
func (v *seqVerifier) judge(end int64) verdict {
	exp := max(end-v.base, 0)
	got := v.inRange(end)
	if v.only > 0 {
		// A filtered subscriber: its one seq, and nothing else.
		exp, got = 1, 0
		if i := v.only - v.base - 1; i >= 0 && int(i>>6) < len(v.seen) && v.seen[i>>6]&(1<<(i&63)) != 0 {
			got = 1
		}
		v.gaps = 0 // a filter skips seqs by design
	}
	r := verdict{Subscribers: 1, Expected: exp, Received: got, Lost: exp - got,
		Duplicated: v.dups, OutOfOrder: v.ooo, Unexpected: v.below + (v.distinct - got)}
	if !r.ok() {
		r.BadSubs = 1
		r.FirstProblem = fmt.Sprintf("since %d head %d: lost %d dup %d ooo %d unexpected %d (gaps seen %d)",
			v.base, end, r.Lost, r.Duplicated, r.OutOfOrder, r.Unexpected, v.gaps)
	}
	return r
}

func (a *verdict) add(b verdict) {
	a.Subscribers += b.Subscribers
	a.Expected += b.Expected
	a.Received += b.Received
	a.Lost += b.Lost
	a.Duplicated += b.Duplicated
	a.OutOfOrder += b.OutOfOrder
	a.Unexpected += b.Unexpected
	a.Disconnected += b.Disconnected
	a.BadSubs += b.BadSubs
	if a.FirstProblem == "" {
		a.FirstProblem = b.FirstProblem
	}
}

// ---------------------------------------------------------------------------
// Latency histogram

// latHist is a log-linear histogram of microseconds: exact below 64 µs, then 32
// buckets per power of two (≤ 3% relative error). Each subscriber owns one, so
// recording needs no synchronisation; they are merged at the end.
type latHist struct {
	counts []uint32
	n      int64
	sum    int64
	max    int64
}

const (
	histSub     = 32
	histBuckets = 44 * histSub
)

func histBucket(v int64) int {
	if v < 2*histSub {
		return int(max(v, 0))
	}
	shift := bits.Len64(uint64(v)) - 6 // v>>shift in [32, 63]
	i := (shift+1)*histSub + int(v>>shift) - histSub
	return min(i, histBuckets-1)
}

// histValue is the midpoint of bucket i.
func histValue(i int) int64 {
	if i < 2*histSub {
		return int64(i)
	}
	shift := i/histSub - 1
	m := int64(i%histSub + histSub)
	lo := m << shift
	return lo + (int64(1)<<shift)/2
}

func (h *latHist) add(us int64) {
	if h.counts == nil {
		h.counts = make([]uint32, histBuckets)
	}
	us = max(us, 0)
	h.counts[histBucket(us)]++
	h.n++
	h.sum += us
	h.max = max(h.max, us)
}

func (h *latHist) merge(o *latHist) {
	if o.n == 0 {
		return
	}
	if h.counts == nil {
		h.counts = make([]uint32, histBuckets)
	}
	for i, c := range o.counts {
		h.counts[i] += c
	}
	h.n += o.n
	h.sum += o.sum
	h.max = max(h.max, o.max)
}

// quantile returns the q-quantile in microseconds (the max for q >= 1).
func (h *latHist) quantile(q float64) int64 {
	if h.n == 0 {
		return 0
	}
	if q >= 1 {
		return h.max
	}
	rank := int64(math.Ceil(q * float64(h.n)))
	rank = max(rank, 1)
	var c int64
	for i, n := range h.counts {
		c += int64(n)
		if c >= rank {
			return min(histValue(i), h.max)
		}
	}
	return h.max
}

// latSummary is a histogram's summary in milliseconds.
type latSummary struct {
	Samples int64   `json:"samples"`
	MeanMS  float64 `json:"mean_ms"`
	P50MS   float64 `json:"p50_ms"`
	P90MS   float64 `json:"p90_ms"`
	P99MS   float64 `json:"p99_ms"`
	P999MS  float64 `json:"p99_9_ms"`
	MaxMS   float64 `json:"max_ms"`
}

func (h *latHist) summary() latSummary {
	if h.n == 0 {
		return latSummary{}
	}
	ms := func(us int64) float64 { return float64(us) / 1000 }
	return latSummary{Samples: h.n, MeanMS: float64(h.sum) / float64(h.n) / 1000,
		P50MS: ms(h.quantile(0.5)), P90MS: ms(h.quantile(0.9)), P99MS: ms(h.quantile(0.99)),
		P999MS: ms(h.quantile(0.999)), MaxMS: ms(h.max)}
}

func (s latSummary) String() string {
	if s.Samples == 0 {
		return "no samples"
	}
	return fmt.Sprintf("p50 %.2f ms, p90 %.2f, p99 %.2f, p99.9 %.2f, max %.2f (%d samples)",
		s.P50MS, s.P90MS, s.P99MS, s.P999MS, s.MaxMS, s.Samples)
}

// ---------------------------------------------------------------------------
// Frame scanning

var (
	changesPrefix = []byte(`{"type":"changes"`)
	seqKey        = []byte(`{"seq":`)
)

// parseUint parses the decimal digits at b[i:], returning the value and the index
// after them; ok is false when there are none.
func parseUint(b []byte, i int) (v int64, next int, ok bool) {
	start := i
	for i < len(b) && b[i] >= '0' && b[i] <= '9' && i-start < 19 {
		v = v*10 + int64(b[i]-'0')
		i++
	}
	return v, i, i > start
}

// scanChanges calls fn for every change record of a changes frame with its seq and the
// integer value of stampKey (e.g. `"bench_ns":`) inside the record, or -1. It relies
// on the server's encoding (docs/protocol.md): each record is an object whose first key
// is seq, so `{"seq":` cannot occur elsewhere except as an object key in a row image of
// a table with a column named seq, which the bench table has not. It does not
// validate the rest of the JSON; TestScanChangesMatchesJSON checks it against
// encoding/json.
func scanChanges(frame, stampKey []byte, fn func(seq, stamp int64)) (int, error) {
	n := 0
	p := bytes.Index(frame, []byte(`"changes":[`))
	if p < 0 {
		return 0, errors.New(`changes frame without "changes":[`)
	}
	next := bytes.Index(frame[p:], seqKey)
	if next >= 0 {
		next += p
	}
	for next >= 0 {
		seq, end, ok := parseUint(frame, next+len(seqKey))
		if !ok {
			return n, fmt.Errorf("bad seq at offset %d", next)
		}
		following := bytes.Index(frame[end:], seqKey)
		rec := frame[end:]
		if following >= 0 {
			following += end
			rec = frame[end:following]
		}
		stamp := int64(-1)
		if len(stampKey) > 0 {
			if k := bytes.Index(rec, stampKey); k >= 0 {
				if v, _, ok := parseUint(rec, k+len(stampKey)); ok {
					stamp = v
				}
			}
		}
		fn(seq, stamp)
		n++
		next = following
	}
	return n, nil
}

// ctrlMsg is every server frame other than changes.
type ctrlMsg struct {
	Type    string          `json:"type"`
	ID      json.RawMessage `json:"id"`
	Stream  string          `json:"stream"`
	Head    int64           `json:"head"`
	Oldest  int64           `json:"oldest"`
	Reason  string          `json:"reason"`
	Code    string          `json:"code"`
	Message string          `json:"message"`
}

// ---------------------------------------------------------------------------
// Client

// subSpec is what every client subscribes to.
type subSpec struct {
	table string
	since int64  // -1: live from the head
	where string // a filter (F1, F2); "" for none
}

// wsClient is one subscriber. Its reader goroutine owns ver, lat and the counters
// until it has exited (done is closed); progress is readable at any time.
type wsClient struct {
	ws       benchConn
	wantLat  bool
	stampKey []byte
	// latUntil, when not 0, limits latency recording to seqs up to it, so that a
	// scenario with a paced phase followed by a flat-out one (W8) measures the paced
	// phase's latency alone on the same, still verified, subscribers.
	latUntil atomic.Int64

	ver    seqVerifier
	lat    latHist
	frames int64
	bytes  int64
	lastNS int64 // receipt time of the last changes frame

	got        atomic.Int64  // distinct changes after since received (progress)
	helloc     chan struct{} // closed when hello arrives
	subscribed chan struct{}
	subHead    int64
	hello      ctrlMsg
	closing    atomic.Bool
	problem    atomic.Pointer[string] // set once: reset, error, unexpected close
	done       chan struct{}
}

var framePool = sync.Pool{New: func() any { b := make([]byte, 0, 64<<10); return &b }}

// readMessage reads the rest of a message into buf[:0], growing it as needed.
func readMessage(r io.Reader, buf []byte) ([]byte, error) {
	buf = buf[:0]
	for {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := r.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err == io.EOF {
			return buf, nil
		}
		if err != nil {
			return buf, err
		}
	}
}

func (c *wsClient) setProblem(s string) {
	c.problem.CompareAndSwap(nil, &s)
}

// onEnd is called once when the connection ends.
func (c *wsClient) onEnd(err error) {
	if !c.closing.Load() {
		c.setProblem("disconnected: " + err.Error())
	}
	close(c.done)
}

// onMessage handles one message; buf is only valid during the call. Calls for one
// client are never concurrent.
func (c *wsClient) onMessage(buf []byte, text bool) {
	if text && bytes.HasPrefix(buf, changesPrefix) {
		now := time.Now().UnixNano()
		c.frames++
		c.bytes += int64(len(buf))
		c.lastNS = now
		before := c.ver.distinct
		until := c.latUntil.Load()
		_, err := scanChanges(buf, c.stampKey, func(seq, stamp int64) {
			c.ver.observe(seq)
			if c.wantLat && stamp > 0 && (until == 0 || seq <= until) {
				c.lat.add((now - stamp) / 1000)
			}
		})
		if err != nil {
			c.setProblem(err.Error())
		}
		c.got.Add(c.ver.distinct - before)
		return
	}
	var m ctrlMsg
	if err := json.Unmarshal(buf, &m); err != nil {
		c.setProblem(fmt.Sprintf("bad frame %.100q: %v", buf, err))
	}
	switch m.Type {
	case "hello":
		c.hello = m
		close(c.helloc)
	case "subscribed":
		c.subHead = m.Head
		close(c.subscribed)
	case "reset":
		c.setProblem("reset: " + m.Reason)
	case "error":
		c.setProblem("error " + m.Code + ": " + m.Message)
	}
}

// wsURL turns the server's http://host:port into ws://host:port/ws.
func wsURL(base string) string {
	return "ws" + strings.TrimPrefix(strings.TrimSuffix(base, "/"), "http") + "/ws"
}

// loopbackSources spreads the load generator's connections over source addresses
// 127.0.0.1–127.0.0.16 when the server is on 127.0.0.1: tens of thousands of
// connections per run (and their TIME_WAIT remains) would otherwise crowd one
// address's ~28,000 ephemeral ports, and a reused port can stall a SYN for seconds.
const loopbackSources = 16

var nextSource atomic.Uint32

var dialClient = &http.Client{Transport: &http.Transport{
	MaxIdleConnsPerHost: -1, DisableCompression: true, ForceAttemptHTTP2: false,
	DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		d := net.Dialer{}
		if host, _, err := net.SplitHostPort(addr); err == nil && host == "127.0.0.1" {
			i := nextSource.Add(1) % loopbackSources
			d.LocalAddr = &net.TCPAddr{IP: net.IPv4(127, 0, 0, byte(1+i))}
		}
		return d.DialContext(ctx, network, addr)
	},
}}

// eagerSubscribe sends subscribe without waiting for hello (--eager-subscribe), as a
// client that writes as soon as the socket opens would.
var eagerSubscribe bool

func dialOne(ctx context.Context, url string, sub subSpec, wantLat bool) (*wsClient, error) {
	var ws benchConn
	var err error
	for attempt := 0; attempt < 3; attempt++ {
		dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		ws, err = dialBench(dctx, url)
		cancel()
		if err == nil || ctx.Err() != nil {
			break
		}
	}
	if err != nil {
		return nil, err
	}
	dctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	c := &wsClient{ws: ws, wantLat: wantLat, stampKey: []byte(`"` + stampColumn + `":`),
		helloc: make(chan struct{}), subscribed: make(chan struct{}), done: make(chan struct{})}
	c.ver = newSeqVerifier(max(sub.since, 0))
	msg := `{"type":"subscribe","id":"b","tables":[` + strconv.Quote(sub.table) + `]`
	if sub.since >= 0 {
		msg += `,"since":` + strconv.FormatInt(sub.since, 10)
	}
	if sub.where != "" {
		msg += `,"where":` + strconv.Quote(sub.where)
		if id, ok := strings.CutPrefix(sub.where, "id=eq."); ok {
			// One row, one change: the subscriber must get exactly seq since+id.
			n, _ := strconv.ParseInt(id, 10, 64)
			c.ver.only = max(sub.since, 0) + n
		}
	}
	msg += `}`
	ws.start(c.onMessage, c.onEnd)
	if !eagerSubscribe {
		// Subscribe after hello, as the official client does. A message that reaches
		// the server before its upgrade completes can lose its first byte
		// (notes/bench-findings.md); --eager-subscribe reproduces that.
		select {
		case <-c.helloc:
		case <-c.done:
			return nil, fmt.Errorf("connection ended before hello: %s", c.problemText())
		case <-dctx.Done():
			c.close()
			return nil, fmt.Errorf("no hello: %w", dctx.Err())
		}
	}
	if err := ws.writeText(dctx, []byte(msg)); err != nil {
		c.close()
		return nil, err
	}
	return c, nil
}

// dialClients connects n subscribers (parallel dials) and waits until every one is
// subscribed. On error the ones already connected are closed.
func dialClients(ctx context.Context, base string, n int, sub subSpec, wantLat bool) ([]*wsClient, error) {
	specs := make([]subSpec, n)
	for i := range specs {
		specs[i] = sub
	}
	return dialClientSpecs(ctx, base, specs, wantLat)
}

// dialClientSpecs is dialClients with a subscription of its own for each subscriber.
func dialClientSpecs(ctx context.Context, base string, specs []subSpec, wantLat bool) ([]*wsClient, error) {
	url := wsURL(base)
	n := len(specs)
	clients := make([]*wsClient, n)
	errs := make(chan error, n)
	sem := make(chan struct{}, 64)
	var wg sync.WaitGroup
	for i := range n {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			c, err := dialOne(ctx, url, specs[i], wantLat)
			if err != nil {
				errs <- fmt.Errorf("dial subscriber %d: %w", i, err)
				return
			}
			clients[i] = c
		})
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		closeClients(clients)
		return nil, err
	}
	deadline := time.NewTimer(60 * time.Second)
	defer deadline.Stop()
	poll := time.NewTicker(50 * time.Millisecond)
	defer poll.Stop()
	for i, c := range clients {
	again:
		select {
		case <-c.subscribed:
		case <-c.done:
			closeClients(clients)
			return nil, fmt.Errorf("subscriber %d: %s", i, c.problemText())
		case <-poll.C:
			if p := c.problemText(); p != "" {
				closeClients(clients)
				return nil, fmt.Errorf("subscriber %d: %s", i, p)
			}
			goto again
		case <-deadline.C:
			closeClients(clients)
			return nil, fmt.Errorf("subscriber %d not subscribed within 60s", i)
		case <-ctx.Done():
			closeClients(clients)
			return nil, ctx.Err()
		}
	}
	return clients, nil
}

func (c *wsClient) problemText() string {
	if p := c.problem.Load(); p != nil {
		return *p
	}
	return ""
}

func (c *wsClient) close() {
	c.closing.Store(true)
	c.ws.closeNow()
	<-c.done
}

func closeClients(cs []*wsClient) {
	var wg sync.WaitGroup
	for _, c := range cs {
		if c != nil {
			c.closing.Store(true)
			wg.Go(func() { c.ws.closeNow() })
		}
	}
	wg.Wait()
	for _, c := range cs {
		if c != nil {
			<-c.done
		}
	}
}

// waitDelivered waits until every client has received want changes (distinct, after
// its since), one has a problem, or delivery stalls: no client received anything for
// stall. A slow server is waited for as long as it makes progress, so a late change is
// never counted as lost. It reports whether all completed.
func waitDelivered(ctx context.Context, clients []*wsClient, want int64, stall time.Duration) bool {
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	i := 0
	var last int64 = -1
	lastProgress := time.Now()
	for n := 0; ; n++ {
		for i < len(clients) && (clients[i].got.Load() >= want) {
			i++
		}
		if i == len(clients) {
			return true
		}
		if clients[i].problem.Load() != nil || ctx.Err() != nil {
			return false
		}
		if n%20 == 0 { // every ~100 ms
			var total int64
			for _, c := range clients[i:] {
				total += c.got.Load()
			}
			if total != last {
				last, lastProgress = total, time.Now()
			} else if time.Since(lastProgress) > stall {
				return false
			}
		}
		<-tick.C
	}
}

// clientReport is the merged outcome of a set of clients, read after closeClients.
type clientReport struct {
	verdict verdict
	lat     latHist
	frames  int64
	bytes   int64
	lastNS  int64
}

func collect(clients []*wsClient, end int64) clientReport {
	var r clientReport
	for _, c := range clients {
		v := c.ver.judge(end)
		if p := c.problemText(); p != "" {
			v.Disconnected = 1
			if v.BadSubs == 0 {
				v.BadSubs = 1
			}
			v.FirstProblem = p
		}
		r.verdict.add(v)
		r.lat.merge(&c.lat)
		r.frames += c.frames
		r.bytes += c.bytes
		r.lastNS = max(r.lastNS, c.lastNS)
	}
	return r
}
