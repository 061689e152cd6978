package e2e

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sqlws/sqlws/internal/testenv"
	"github.com/sqlws/sqlws/internal/wstest"
)

// nodeResult is what e2e/testdata/nodews/close.mjs prints.
type nodeResult struct {
	Case    string `json:"case"`
	Code    int    `json:"code"`
	Reason  string `json:"reason"`
	MS      int    `json:"ms"`
	Timeout bool   `json:"timeout"`
	Ready   bool   `json:"ready"`
}

// nodeScript starts close.mjs for one case and returns its output lines as they come.
func nodeScript(t *testing.T, url, name string) (<-chan nodeResult, *exec.Cmd) {
	t.Helper()
	dir, err := filepath.Abs("testdata/nodews")
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("node", "close.mjs", url, name)
	cmd.Dir = dir
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("node (make deps-test installs it and the ws package): %v", err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		if t.Failed() && stderr.Len() > 0 {
			t.Logf("node stderr: %s", stderr.String())
		}
	})
	ch := make(chan nodeResult, 4)
	go func() {
		defer close(ch)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			var r nodeResult
			if json.Unmarshal(sc.Bytes(), &r) == nil {
				ch <- r
			}
		}
	}()
	return ch, cmd
}

func nextNode(t *testing.T, ch <-chan nodeResult) nodeResult {
	t.Helper()
	select {
	case r, ok := <-ch:
		if !ok {
			t.Fatal("node script exited without a result")
		}
		return r
	case <-time.After(2 * timeout):
		t.Fatal("no result from the node script")
	}
	return nodeResult{}
}

// TestNodeWSCloses: Node's ws — an independent client that, as RFC 6455 asks, waits
// for the server to close TCP before it reports the connection closed — sees every
// close complete, with the right code, well within the server's 2 s drain.
func TestNodeWSCloses(t *testing.T) {
	t.Parallel()
	_, srv := start(t, `CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT);`)
	for _, tc := range []struct {
		name string
		code int
	}{{"too_big", 1009}, {"invalid_utf8", 1007}, {"clean", 1000}} {
		ch, _ := nodeScript(t, srv.WSURL(), tc.name)
		r := nextNode(t, ch)
		if r.Timeout || r.Code != tc.code {
			t.Errorf("%s: node ws saw %+v, want close %d", tc.name, r, tc.code)
		} else {
			t.Logf("%s: close %d after %d ms", tc.name, r.Code, r.MS)
		}
	}

	// Shutdown: a connected client is told 1001 and its close completes.
	ch, _ := nodeScript(t, srv.WSURL(), "wait")
	if r := nextNode(t, ch); !r.Ready {
		t.Fatalf("node ws did not connect: %+v", r)
	}
	if code := srv.Stop(); code != 0 {
		t.Errorf("server exit code %d", code)
	}
	if r := nextNode(t, ch); r.Timeout || r.Code != 1001 {
		t.Errorf("shutdown: node ws saw %+v, want close 1001", r)
	}
}

// debugGoroutines reads the server's goroutine count from its pprof endpoint.
func debugGoroutines(t *testing.T, srv *testenv.Server) int {
	t.Helper()
	m := regexp.MustCompile(`msg="debug endpoints" addr=(\S+)`).FindStringSubmatch(srv.Stderr())
	if m == nil {
		t.Fatalf("no debug endpoint in the server log")
	}
	resp, err := http.Get(m[1] + "goroutine?debug=1")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	line, _ := bufio.NewReader(resp.Body).ReadString('\n')
	n, err := strconv.Atoi(strings.TrimSpace(strings.TrimPrefix(line, "goroutine profile: total")))
	if err != nil {
		t.Fatalf("goroutine profile header %q", line)
	}
	return n
}

// TestAbandonedConnections: 1,000 connections abandoned in every hostile way leave
// the server with no socket or goroutine more than before, and a new client and REST
// still work.
func TestAbandonedConnections(t *testing.T) {
	t.Parallel()
	db, srv := start(t, `CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT);`, "--debug-addr", "127.0.0.1:0")
	warm := srv.Dial(t)
	warm.Subscribe("w", nil, nil, "")
	warm.Close()
	// Left: the listener and the debug listener.
	testenv.WaitFor(t, timeout, "the warm-up connection to close", func() bool { return srv.Sockets() == 2 })
	sockets, goroutines := srv.Sockets(), debugGoroutines(t, srv)

	text := func(p []byte) wstest.Frame { return wstest.Frame{Fin: true, Opcode: wstest.OpText, Payload: p} }
	big := bytes.Repeat([]byte("x"), 100<<10)
	ways := []func(c *wstest.Conn){
		func(c *wstest.Conn) { c.Send(text(big)) },                                               // over the read limit
		func(c *wstest.Conn) { c.Send(wstest.Frame{Fin: true, Opcode: wstest.OpContinuation}) },  // continuation without start
		func(c *wstest.Conn) { c.Send(wstest.Frame{Opcode: wstest.OpText}, text([]byte("{}"))) }, // interleaved
		func(c *wstest.Conn) {
			c.Send(wstest.Frame{Fin: true, Opcode: wstest.OpPing, Payload: bytes.Repeat([]byte("p"), 126)})
		}, // control frame over 125
		func(c *wstest.Conn) { c.Send(wstest.Frame{Opcode: wstest.OpPing}) },                                 // fragmented ping
		func(c *wstest.Conn) { c.Send(wstest.Frame{Fin: true, Opcode: wstest.OpClose, Payload: []byte{1}}) }, // bad close payload
		func(c *wstest.Conn) { c.Send(wstest.Frame{Fin: true, RSV1: true, Opcode: wstest.OpText}) },          // RSV1
		func(c *wstest.Conn) { c.Send(wstest.Frame{Fin: true, Opcode: 3}) },                                  // opcode 3
		func(c *wstest.Conn) { c.Send(wstest.Frame{Fin: true, Opcode: wstest.OpText, Unmasked: true}) },      // unmasked
		func(c *wstest.Conn) {
			n := uint64(1 << 63)
			c.Send(wstest.Frame{Fin: true, Opcode: wstest.OpText, Length: &n})
		}, // 2^63
		func(c *wstest.Conn) { c.Send(text([]byte("\xff"))) }, // invalid UTF-8
		func(c *wstest.Conn) {
			c.Send(wstest.Frame{Fin: true, Opcode: wstest.OpClose, Payload: wstest.ClosePayload(1000, "")})
		},
		func(c *wstest.Conn) { c.Text(`{"type":"subscribe","id":1}`) }, // a subscriber that then vanishes
		func(c *wstest.Conn) {}, // nothing at all
	}
	const total = 1000
	var next, failed atomic.Int64
	var wg sync.WaitGroup
	for range 50 {
		wg.Go(func() {
			for {
				i := next.Add(1) - 1
				if i >= total {
					return
				}
				c, err := wstest.Dial(srv.Addr, "/ws", timeout)
				if err != nil {
					failed.Add(1)
					continue
				}
				c.SetDeadline(time.Now().Add(timeout))
				c.ReadFrame() // hello
				ways[int(i)%len(ways)](c)
				if i%2 == 0 {
					c.Reset() // abandon with RST
				} else {
					c.Close() // abandon with FIN
				}
			}
		})
	}
	wg.Wait()
	if n := failed.Load(); n > 0 {
		t.Errorf("%d of %d connections could not even be opened", n, total)
	}
	testenv.WaitFor(t, 30*time.Second, "the server to close every abandoned socket", func() bool {
		return srv.Sockets() <= sockets
	})
	testenv.WaitFor(t, 30*time.Second, "the server's goroutines to return to their baseline", func() bool {
		return debugGoroutines(t, srv) <= goroutines
	})

	c := srv.Dial(t)
	c.Subscribe("a", []string{"t"}, nil, "")
	testenv.SQLite(t, db, "INSERT INTO t(v) VALUES('after');")
	if ch := c.WaitChanges("a", 1, timeout); ch[0].Table != "t" {
		t.Errorf("change after the abandoned connections: %+v", ch[0])
	}
	restOK(t, srv, http.StatusOK, "GET", "/api/tables/t/rows", "")
}

// openIdle opens n WebSockets and reads their hello; it returns those that got one
// and how many were refused with 503.
func openIdle(t *testing.T, addr string, n int) (open []*wstest.Conn, refused int) {
	t.Helper()
	for range n {
		c, err := wstest.Dial(addr, "/ws", timeout)
		if err != nil {
			if strings.Contains(err.Error(), "503") {
				refused++
				continue
			}
			t.Fatalf("dial: %v", err)
		}
		c.SetReadDeadline(time.Now().Add(timeout))
		if _, p, err := c.ReadFrame(); err != nil || !bytes.Contains(p, []byte("hello")) {
			t.Fatalf("no hello: %v", err)
		}
		open = append(open, c)
	}
	return open, refused
}

// get is one HTTP/1.1 GET on a fresh connection; it returns the status, or 0 if the
// connection ended without a response.
func get(addr, path string) int {
	c, err := net.DialTimeout("tcp", addr, timeout)
	if err != nil {
		return 0
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(timeout))
	fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n", path, addr)
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return 0
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// TestDescriptorLimit: with the server's descriptor limit at 300, clients beyond
// what it can hold are refused with 503 at once (not left hanging), the connections
// already open keep working, SQLite keeps the descriptors it needs, and once clients
// leave the server accepts again.
func TestDescriptorLimit(t *testing.T) {
	t.Parallel()
	db := testenv.NewDB(t, `CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT);`)
	// Pings every hour: these raw clients do not answer them.
	srv := testenv.StartServerLimited(t, 300, db, "--ping-interval", "1h")
	open, refused := openIdle(t, srv.Addr, 300)
	t.Logf("limit 300: %d connections held, %d refused with 503", len(open), refused)
	if refused == 0 || len(open) < 150 {
		t.Fatalf("limit 300: %d held and %d refused; want some of each", len(open), refused)
	}
	if code := get(srv.Addr, "/healthz"); code != http.StatusServiceUnavailable {
		t.Errorf("a request at the connection cap: status %d, want 503", code)
	}
	// An open connection still works end to end, with SQLite reading and writing.
	c := open[0]
	c.SetReadDeadline(time.Now().Add(timeout))
	c.Text(`{"type":"subscribe","id":"a","tables":["t"]}`)
	testenv.SQLite(t, db, "INSERT INTO t(v) VALUES('at the limit');")
	for {
		_, p, err := c.ReadFrame()
		if err != nil {
			t.Fatalf("an open connection at the limit: %v", err)
		}
		if bytes.Contains(p, []byte(`"changes"`)) {
			break
		}
	}
	for _, c := range open[:100] {
		c.Close()
	}
	testenv.WaitFor(t, timeout, "the server to accept again after clients left", func() bool {
		return get(srv.Addr, "/healthz") == http.StatusOK
	})
	if code := get(srv.Addr, "/api/tables/t/rows"); code != http.StatusOK {
		t.Errorf("REST after clients left: %d", code)
	}
	for _, c := range open[100:] {
		c.Close()
	}
	if n := strings.Count(srv.Stderr(), "too many open files"); n > 2 {
		t.Errorf("the log has %d 'too many open files' lines", n)
	}
}

// TestOutOfDescriptors: when accept itself fails for lack of descriptors (the cap set
// above what the limit allows), the server backs off and refuses the waiting client
// instead of spinning, logs once per episode, keeps serving the open connections, and
// recovers when they close.
func TestOutOfDescriptors(t *testing.T) {
	t.Parallel()
	db := testenv.NewDB(t, `CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT);`)
	srv := testenv.StartServerLimited(t, 200, db, "--max-conns", "1000", "--ping-interval", "1h")
	open, refused := openIdle(t, srv.Addr, 215)
	t.Logf("limit 200, cap 1000: %d connections held, %d refused", len(open), refused)
	if refused == 0 {
		t.Fatalf("no connection was refused at the descriptor limit")
	}
	c := open[0]
	c.SetReadDeadline(time.Now().Add(timeout))
	c.Text(`{"type":"unsubscribe","id":"x"}`)
	for {
		_, p, err := c.ReadFrame()
		if err != nil {
			t.Fatalf("an open connection out of descriptors: %v", err)
		}
		if bytes.Contains(p, []byte(`unknown_subscription`)) {
			break
		}
	}
	for _, c := range open {
		c.Close()
	}
	testenv.WaitFor(t, timeout, "the server to accept again", func() bool { return get(srv.Addr, "/healthz") == http.StatusOK })
	if n := strings.Count(srv.Stderr(), "out of file descriptors"); n < 1 || n > 3 {
		t.Errorf("the log has %d 'out of file descriptors' lines, want one per episode", n)
	}
	if code := get(srv.Addr, "/api/tables/t/rows"); code != http.StatusOK {
		t.Errorf("REST after recovering: %d", code)
	}
}

// TestSlowAndIdleHTTPCutOff: a request whose body never finishes arriving and a
// keep-alive connection left idle are both closed by the server.
func TestSlowAndIdleHTTPCutOff(t *testing.T) {
	t.Parallel()
	_, srv := start(t, `CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT);`, "--request-timeout", "2s", "--idle-timeout", "2s")
	ended := func(c net.Conn) (time.Duration, bool) {
		start := time.Now()
		c.SetReadDeadline(time.Now().Add(timeout))
		_, err := io.Copy(io.Discard, c)
		if ne, ok := err.(net.Error); ok && ne.Timeout() {
			return time.Since(start), false
		}
		return time.Since(start), true
	}

	slow, err := net.Dial("tcp", srv.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer slow.Close()
	fmt.Fprintf(slow, "POST /api/tables/t/rows HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"v\":", srv.Addr)
	if d, ok := ended(slow); !ok {
		t.Errorf("a request body that stops arriving was still open after %v", d)
	}

	idle, err := net.Dial("tcp", srv.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()
	fmt.Fprintf(idle, "GET /healthz HTTP/1.1\r\nHost: %s\r\n\r\n", srv.Addr)
	br := bufio.NewReader(idle)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("healthz: %v %v", resp, err)
	}
	io.Copy(io.Discard, resp.Body)
	start := time.Now()
	idle.SetReadDeadline(time.Now().Add(timeout))
	if _, err := br.ReadByte(); err != io.EOF {
		t.Errorf("an idle keep-alive connection was not closed by the server (after %v: %v)", time.Since(start), err)
	}
}
