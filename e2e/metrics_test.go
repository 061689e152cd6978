package e2e

import (
	"io"
	"net/http"
	"os"
	"strings"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/sqlws/sqlws/internal/testenv"
)

// scrape reads the server's /metrics with Prometheus's own text parser.
func scrape(t *testing.T, srv *testenv.Server) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := restClient.Get(srv.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("/metrics: %s", resp.Status)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("/metrics does not parse as the Prometheus text format: %v", err)
	}
	return fams
}

// value is the value of family name's series whose labels include want (nil: the
// unlabelled one); -1 if there is none.
func value(fams map[string]*dto.MetricFamily, name string, want map[string]string) float64 {
	f := fams[name]
	if f == nil {
		return -1
	}
	for _, m := range f.GetMetric() {
		ok := true
		for k, v := range want {
			found := false
			for _, l := range m.GetLabel() {
				if l.GetName() == k && l.GetValue() == v {
					found = true
				}
			}
			ok = ok && found
		}
		if !ok {
			continue
		}
		switch {
		case m.Counter != nil:
			return m.Counter.GetValue()
		case m.Gauge != nil:
			return m.Gauge.GetValue()
		case m.Histogram != nil:
			return float64(m.Histogram.GetSampleCount())
		}
	}
	return -1
}

// TestMetricsMoveWithTraffic: /metrics parses as Prometheus text, has the figures an
// operator needs, and they move with what clients do.
func TestMetricsMoveWithTraffic(t *testing.T) {
	t.Parallel()
	db, srv := start(t, `CREATE TABLE t(id INTEGER PRIMARY KEY, v INT);`)
	before := scrape(t, srv)
	for _, name := range []string{
		"sqlws_connections", "sqlws_subscriptions", "sqlws_changes_captured_total", "sqlws_tailer_lag_changes",
		"sqlws_changes_sent_total", "sqlws_frames_sent_total", "sqlws_bytes_sent_total", "sqlws_subscriber_lag_changes",
		"sqlws_subscriber_lag_max_changes", "sqlws_catchup_page_reads_total", "sqlws_catchup_page_hits_total",
		"sqlws_memory_budget_used_bytes", "sqlws_memory_budget_bytes", "sqlws_resets_total", "sqlws_disconnects_total",
		"sqlws_http_connections", "sqlws_http_connections_refused_total", "go_goroutines", "process_resident_memory_bytes",
	} {
		if before[name] == nil {
			t.Errorf("/metrics has no %s", name)
		}
	}

	c := srv.Dial(t)
	c.Subscribe("a", []string{"t"}, nil, "")
	testenv.SQLite(t, db, inserts("t", "v", 1, 5))
	c.WaitChanges("a", 5, timeout)
	restDo(t, srv, "GET", "/api/tables/t/rows", "", "")
	restDo(t, srv, "GET", "/api/tables/nope/rows", "", "")
	if m := c.SubscribeReply("b", nil, testenv.Int64(999), ""); m.Reason != "future" { // a reset
		t.Fatalf("subscribe since 999: %s", m.Raw)
	}

	after := scrape(t, srv)
	for _, tc := range []struct {
		name   string
		labels map[string]string
		min    float64
	}{
		{"sqlws_connections", nil, 1},
		{"sqlws_subscriptions", nil, 1},
		{"sqlws_changes_captured_total", nil, 5},
		{"sqlws_changes_sent_total", nil, 5},
		{"sqlws_frames_sent_total", nil, value(before, "sqlws_frames_sent_total", nil) + 2},
		{"sqlws_resets_total", map[string]string{"reason": "future"}, 1},
		{"sqlws_rest_requests_total", map[string]string{"route": "/api/tables/{table}/rows", "method": "GET", "status": "200"}, 1},
		{"sqlws_rest_requests_total", map[string]string{"route": "/api/tables/{table}/rows", "status": "404"}, 1},
		{"sqlws_rest_request_duration_seconds", map[string]string{"route": "/api/tables/{table}/rows"}, 2},
		{"sqlws_errors_total", map[string]string{"edge": "rest", "code": "unknown_table"}, 1},
	} {
		if got := value(after, tc.name, tc.labels); got < tc.min {
			t.Errorf("%s%v = %v, want at least %v", tc.name, tc.labels, got, tc.min)
		}
	}
	// No series is labelled by table, path or connection.
	for name, f := range after {
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "table" || l.GetName() == "path" || l.GetName() == "conn" {
					t.Errorf("%s has an unbounded label %s", name, l.GetName())
				}
			}
		}
	}
}

// TestReadiness: /readyz fails, with the reason, while the database file cannot be
// opened, and recovers when it can; /healthz (liveness) answers throughout.
func TestReadiness(t *testing.T) {
	t.Parallel()
	db, srv := start(t, `CREATE TABLE t(id INTEGER PRIMARY KEY, v INT);`)
	get := func(path string) (int, string) {
		resp, err := restClient.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := get("/readyz"); code != http.StatusOK {
		t.Fatalf("/readyz at start: %d %s", code, body)
	}
	if err := os.Rename(db, db+".away"); err != nil {
		t.Fatal(err)
	}
	code, body := get("/readyz")
	if code != http.StatusServiceUnavailable || !strings.Contains(body, "database file unreadable") {
		t.Errorf("/readyz with the database file gone: %d %q, want 503 naming it", code, body)
	}
	if code, _ := get("/healthz"); code != http.StatusOK {
		t.Errorf("/healthz while not ready: %d, want 200", code)
	}
	if err := os.Rename(db+".away", db); err != nil {
		t.Fatal(err)
	}
	if code, body := get("/readyz"); code != http.StatusOK {
		t.Errorf("/readyz after the file is back: %d %s", code, body)
	}
}
