// Package metrics is what a sqlws server says about itself: the Prometheus metrics
// served at /metrics and the readiness answer of /readyz, both read from the same
// running totals the components keep. Nothing is labelled per connection or per
// table, so the number of series stays bounded however the server is used.
package metrics

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/sqlws/sqlws/models"
	"github.com/sqlws/sqlws/ws"
)

// Sources are the components a server's metrics are read from. Any may be nil.
type Sources struct {
	Hub *ws.Hub
	// Tailed is the seq of the last change the tailer handed on; TailStart the seq it
	// started after.
	Tailed    func() int64
	TailStart int64
	// Position reads the changelog's head and oldest retained seq from the database.
	Position func(ctx context.Context) (models.Position, error)
	// DBPath is the database file; readiness checks a new connection could open it.
	DBPath string
	// Listener reports open client connections, the cap and connections refused.
	Listener interface {
		Open() int
		MaxConns() int
		Refused() uint64
	}
	// MemoryBudget is the fan-out's budget (fanout.Options.MemoryBudget).
	MemoryBudget int64
	// ReadyLag is the most changes the tailer may be behind the database's head for
	// the server to count as ready (default 10,000).
	ReadyLag int64
}

// Metrics holds the registry and the metrics the edges record as they go.
type Metrics struct {
	src Sources
	reg *prometheus.Registry

	restRequests *prometheus.CounterVec
	restLatency  *prometheus.HistogramVec

	mu         sync.Mutex
	restErrors map[string]uint64 // by code
}

// New registers every metric of src, and the Go runtime's and the process's.
func New(src Sources) *Metrics {
	if src.ReadyLag <= 0 {
		src.ReadyLag = 10_000
	}
	m := &Metrics{src: src, reg: prometheus.NewRegistry()}
	m.restRequests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "sqlws_rest_requests_total", Help: "REST requests answered, by route pattern, method and status.",
	}, []string{"route", "method", "status"})
	m.restLatency = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "sqlws_rest_request_duration_seconds", Help: "REST request latency, by route pattern and method.",
		Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
	}, []string{"route", "method"})
	m.restErrors = map[string]uint64{}
	m.reg.MustRegister(m.restRequests, m.restLatency, &collector{m},
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// Handler serves the metrics in the Prometheus text format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError})
}

// ObserveREST records one REST request. route is the router's pattern (never the
// path, whose values are unbounded); "" for a path no route matched.
func (m *Metrics) ObserveREST(route, method string, status int, d time.Duration) {
	if route == "" {
		route = "unmatched"
	}
	m.restRequests.WithLabelValues(route, method, strconv.Itoa(status)).Inc()
	m.restLatency.WithLabelValues(route, method).Observe(d.Seconds())
}

// RESTError records an error answered by REST with its stable code.
func (m *Metrics) RESTError(code string) {
	m.mu.Lock()
	m.restErrors[code]++
	m.mu.Unlock()
}

// Ready reports whether the server can serve: the database answers and the tailer
// is no more than ReadyLag changes behind its head. The error says why not.
func (m *Metrics) Ready(ctx context.Context) error {
	if m.src.DBPath != "" {
		// The pool's open connections keep reading a file that was moved, deleted or
		// made unreadable; the next connection it opens would fail. Check as it would.
		if err := readableDB(m.src.DBPath); err != nil {
			return err
		}
	}
	if m.src.Position == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	p, err := m.src.Position(ctx)
	if err != nil {
		return fmt.Errorf("database unreachable: %w", err)
	}
	if m.src.Tailed != nil {
		if lag := p.Head - m.src.Tailed(); lag > m.src.ReadyLag {
			return fmt.Errorf("the tailer is %d changes behind the database (more than %d)", lag, m.src.ReadyLag)
		}
	}
	return nil
}

// readableDB checks that path opens and starts like an SQLite database.
func readableDB(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("database file unreadable: %w", err)
	}
	defer f.Close()
	var hdr [16]byte
	if _, err := io.ReadFull(f, hdr[:]); err != nil || string(hdr[:]) != "SQLite format 3\x00" {
		return fmt.Errorf("database file unreadable: %s is not an SQLite database (%v)", path, err)
	}
	return nil
}

// lagBuckets are the subscriber lag histogram's bounds, in changes.
var lagBuckets = []float64{0, 1, 10, 100, 1_000, 10_000, 100_000, 1_000_000}

func desc(name, help string, labels ...string) *prometheus.Desc {
	return prometheus.NewDesc(name, help, labels, nil)
}

var (
	dConnections   = desc("sqlws_connections", "WebSocket connections open.")
	dSubscriptions = desc("sqlws_subscriptions", "Subscriptions active.")
	dCaptured      = desc("sqlws_changes_captured_total", "Changes the tailer read from the changelog and handed to the fan-out.")
	dTailLag       = desc("sqlws_tailer_lag_changes", "Changes committed to the changelog that the tailer has not yet read (head − last read).")
	dHead          = desc("sqlws_changelog_head", "The changelog's head seq, as the database reports it.")
	dSent          = desc("sqlws_changes_sent_total", "Change records written to subscribers (one per subscriber that receives it).")
	dFrames        = desc("sqlws_frames_sent_total", "WebSocket frames written (changes, replies, pings).")
	dBytes         = desc("sqlws_bytes_sent_total", "Bytes of WebSocket frames written.")
	dSubLag        = desc("sqlws_subscriber_lag_changes", "How far each subscription is behind the newest change, at scrape time.")
	dSubLagMax     = desc("sqlws_subscriber_lag_max_changes", "The largest subscriber lag, at scrape time.")
	dPageReads     = desc("sqlws_catchup_page_reads_total", "Changelog pages read from SQLite to catch subscribers up (each shared by every subscriber that needs it).")
	dPageHits      = desc("sqlws_catchup_page_hits_total", "Catch-up reads served by a page already read or being read.")
	dMemUsed       = desc("sqlws_memory_budget_used_bytes", "Memory held by the fan-out window and catch-up pages, counted against the budget.", "part")
	dMemBudget     = desc("sqlws_memory_budget_bytes", "The fan-out's memory budget (--memory-budget).")
	dResets        = desc("sqlws_resets_total", "Resets sent to subscribers, by reason.", "reason")
	dCloses        = desc("sqlws_disconnects_total", "WebSocket connections ended, by reason (write timeouts are slow_consumer).", "reason")
	dListenOpen    = desc("sqlws_http_connections", "Client connections open (HTTP and WebSocket).")
	dListenMax     = desc("sqlws_http_connections_max", "The connection cap (--max-conns, or derived from the descriptor limit).")
	dListenRefused = desc("sqlws_http_connections_refused_total", "Connections refused at the cap or for lack of descriptors.")
	dErrors        = desc("sqlws_errors_total", "Errors answered to clients, by edge (rest, ws) and stable code.", "edge", "code")
)

// collector reads the components' totals at scrape time.
type collector struct{ m *Metrics }

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{dConnections, dSubscriptions, dCaptured, dTailLag, dHead, dSent, dFrames, dBytes,
		dSubLag, dSubLagMax, dPageReads, dPageHits, dMemUsed, dMemBudget, dResets, dCloses, dListenOpen, dListenMax, dListenRefused, dErrors} {
		ch <- d
	}
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	src := c.m.src
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	counter := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v, labels...)
	}
	if src.Tailed != nil {
		last := src.Tailed()
		counter(dCaptured, float64(max(last-src.TailStart, 0)))
		if src.Position != nil {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			if p, err := src.Position(ctx); err == nil {
				gauge(dHead, float64(p.Head))
				gauge(dTailLag, float64(max(p.Head-last, 0)))
			}
			cancel()
		}
	}
	if h := src.Hub; h != nil {
		st := h.Stats()
		gauge(dConnections, float64(st.Connections))
		gauge(dSubscriptions, float64(st.Subscriptions))
		counter(dSent, float64(st.Changes))
		counter(dFrames, float64(st.Frames))
		counter(dBytes, float64(st.Bytes))
		counter(dPageReads, float64(st.Pages.Reads))
		counter(dPageHits, float64(st.Pages.Hits))
		gauge(dMemUsed, float64(st.Window.Bytes), "window")
		gauge(dMemUsed, float64(st.Pages.Bytes), "pages")
		gauge(dMemBudget, float64(src.MemoryBudget))
		for _, reason := range []string{"pruned", "future", "stream"} {
			counter(dResets, float64(st.Resets[reason]), reason)
		}
		for r := ws.CloseReason(0); r < ws.NumCloseReasons; r++ {
			counter(dCloses, float64(st.Closes[r]), r.String())
		}
		for code, n := range st.Errors {
			counter(dErrors, float64(n), "ws", code)
		}
		counts := make([]uint64, len(lagBuckets))
		var n uint64
		var sum float64
		var most int64
		h.Lags(func(lag int64) {
			n++
			sum += float64(lag)
			most = max(most, lag)
			for i, b := range lagBuckets {
				if float64(lag) <= b {
					counts[i]++
				}
			}
		})
		buckets := make(map[float64]uint64, len(lagBuckets))
		for i, b := range lagBuckets {
			buckets[b] = counts[i]
		}
		ch <- prometheus.MustNewConstHistogram(dSubLag, n, sum, buckets)
		gauge(dSubLagMax, float64(most))
	}
	c.m.mu.Lock()
	for code, n := range c.m.restErrors {
		counter(dErrors, float64(n), "rest", code)
	}
	c.m.mu.Unlock()
	if l := src.Listener; l != nil {
		gauge(dListenOpen, float64(l.Open()))
		gauge(dListenMax, float64(l.MaxConns()))
		counter(dListenRefused, float64(l.Refused()))
	}
}
