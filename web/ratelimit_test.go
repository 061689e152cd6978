package web

import (
	"bufio"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestIPLimiter: a burst, then refusals saying how long to wait, then recovery; one
// address's flood leaves another alone; loopback is exempt unless told otherwise.
func TestIPLimiter(t *testing.T) {
	l := newIPLimiter(2, 3, false, nil)
	t0 := time.Unix(1000, 0)
	for i := range 3 {
		if ok, _ := l.allow("192.0.2.1:5000", nil, t0); !ok {
			t.Fatalf("request %d of the burst refused", i+1)
		}
	}
	ok, wait := l.allow("192.0.2.1:5001", nil, t0)
	if ok || wait <= 0 || wait > time.Second {
		t.Fatalf("over the burst: ok %v, wait %v; want refused with a wait of at most 1/rate", ok, wait)
	}
	if ok, _ := l.allow("192.0.2.2:5000", nil, t0); !ok {
		t.Error("another address was limited by the first's flood")
	}
	if ok, _ := l.allow("192.0.2.1:5000", nil, t0.Add(wait)); !ok {
		t.Error("not allowed again after the wait it was told")
	}
	for range 100 {
		if ok, _ := l.allow("127.0.0.1:5000", nil, t0); !ok {
			t.Fatal("a loopback client was limited")
		}
	}
	if len(l.m) != 2 {
		t.Errorf("%d limiters kept, want 2 (loopback not tracked)", len(l.m))
	}
	l.allow("192.0.2.3:1", nil, t0.Add(time.Hour)) // sweeps the idle ones
	if len(l.m) != 1 {
		t.Errorf("%d limiters after an hour, want 1", len(l.m))
	}
}

// TestRESTRateLimit: over the rate, the data routes answer 429 rate_limited with
// Retry-After before any work; the open routes are not limited.
func TestRESTRateLimit(t *testing.T) {
	e := newAuthEnv(t, `CREATE TABLE t(id INTEGER PRIMARY KEY);`, "", nil)
	h := NewRouter(Config{DB: e.d.CRUD, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		RESTRate: 0.001, RESTBurst: 2, RateLimitLoopback: true})
	srv := newLoopbackServer(t, h)
	get := func(path string) *http.Response {
		resp, err := http.Get(srv + path)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp
	}
	for range 2 {
		if r := get("/api/tables"); r.StatusCode != 200 {
			t.Fatalf("within the burst: %d", r.StatusCode)
		}
	}
	r := get("/api/tables")
	if r.StatusCode != 429 || r.Header.Get("Retry-After") == "" || r.Header.Get("Retry-After") == "0" {
		t.Errorf("over the rate: %d, Retry-After %q; want 429 with Retry-After ≥ 1", r.StatusCode, r.Header.Get("Retry-After"))
	}
	if r := get("/healthz"); r.StatusCode != 200 {
		t.Errorf("/healthz over the rate: %d", r.StatusCode)
	}
}

func newLoopbackServer(t *testing.T, h http.Handler) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return "http://" + ln.Addr().String()
}

// TestListenerPerIP: connections over one address's cap are answered 503 and closed
// while its others stay open; closing one makes room again.
func TestListenerPerIP(t *testing.T) {
	tcp, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln := NewListener(tcp, ListenerOptions{MaxConns: 100, MaxConnsPerIP: 2, LimitLoopback: true})
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("ok")) }), ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	addr := tcp.Addr().String()
	// request sends one keep-alive GET on c and returns the status line.
	request := func(c net.Conn, br *bufio.Reader) string {
		t.Helper()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
			return "write: " + err.Error()
		}
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			return "read: " + err.Error()
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.Status
	}
	dial := func() (net.Conn, *bufio.Reader) {
		t.Helper()
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c, bufio.NewReader(c)
	}
	a, ar := dial()
	b, br := dial()
	if s := request(a, ar) + request(b, br); s != "200 OK200 OK" {
		t.Fatalf("within the cap: %s", s)
	}
	c, cr := dial()
	if s := request(c, cr); !strings.HasPrefix(s, "503") {
		t.Errorf("third connection: %s, want 503", s)
	}
	if s := request(a, ar); s != "200 OK" {
		t.Errorf("an open connection after the refusal: %s", s)
	}
	a.Close()
	// The server notices the close when its read fails: poll (bounded) until a new
	// connection is accepted.
	deadline := time.Now().Add(10 * time.Second)
	for {
		d, dr := dial()
		if s := request(d, dr); s == "200 OK" {
			break
		} else if time.Now().After(deadline) {
			t.Fatalf("no room after closing a connection: %s", s)
		}
	}
}

// TestClientIP: X-Forwarded-For is believed from trusted proxies only, and only up
// to the first hop that is not one of them.
func TestClientIP(t *testing.T) {
	_, lo, _ := net.ParseCIDR("127.0.0.0/8")
	_, lan, _ := net.ParseCIDR("10.0.0.0/8")
	trusted := []*net.IPNet{lo, lan}
	for _, c := range []struct {
		remote string
		xff    []string
		want   string
		fwd    bool
	}{
		{"192.0.2.9:1", []string{"198.51.100.1"}, "192.0.2.9", false}, // untrusted peer: header ignored
		{"127.0.0.1:1", nil, "127.0.0.1", false},
		{"127.0.0.1:1", []string{"198.51.100.1"}, "198.51.100.1", true},
		{"127.0.0.1:1", []string{"6.6.6.6, 198.51.100.1, 10.0.0.2"}, "198.51.100.1", true}, // the client's own claim (6.6.6.6) is not believed
		{"127.0.0.1:1", []string{"6.6.6.6", "198.51.100.1"}, "198.51.100.1", true},
		{"127.0.0.1:1", []string{"garbage, 10.0.0.2"}, "127.0.0.1", false},
	} {
		ip, fwd := ClientIP(c.remote, c.xff, trusted)
		if ip.String() != c.want || fwd != c.fwd {
			t.Errorf("ClientIP(%s, %q) = %s %v, want %s %v", c.remote, c.xff, ip, fwd, c.want, c.fwd)
		}
	}
	// Limited per forwarded client behind a trusted loopback proxy.
	l := newIPLimiter(1, 1, false, trusted)
	t0 := time.Unix(0, 0)
	if ok, _ := l.allow("127.0.0.1:1", []string{"198.51.100.1"}, t0); !ok {
		t.Fatal("first request refused")
	}
	if ok, _ := l.allow("127.0.0.1:2", []string{"198.51.100.1"}, t0); ok {
		t.Error("the forwarded client's second request in its burst of 1 was allowed")
	}
	if ok, _ := l.allow("127.0.0.1:3", []string{"198.51.100.2"}, t0); !ok {
		t.Error("another forwarded client was limited")
	}
}
