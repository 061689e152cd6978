package ws_test

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sqlws/sqlws/fanout"
	"github.com/sqlws/sqlws/internal/testenv"
	"github.com/sqlws/sqlws/internal/wstest"
	"github.com/sqlws/sqlws/ws"
)

// openFDs counts this process's open socket descriptors. Sockets, not every
// descriptor: SQLite's reader pool opens files as load comes and goes, and it is
// sockets that a connection the server forgot to close would leave behind.
func openFDs(t testing.TB) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatalf("cannot count file descriptors: %v", err)
	}
	n := 0
	for _, e := range ents {
		if target, err := os.Readlink("/proc/self/fd/" + e.Name()); err == nil && strings.HasPrefix(target, "socket:") {
			n++
		}
	}
	return n
}

// waitBaseline waits (bounded) until descriptors and goroutines are back to what
// they were before the connections: every socket the server ended is closed, and
// every goroutine it started for them has returned.
func waitBaseline(t *testing.T, fds, goroutines int) {
	t.Helper()
	deadline := time.Now().Add(testenv.Timeout)
	for {
		f, g := openFDs(t), runtime.NumGoroutine()
		if f <= fds && g <= goroutines {
			return
		}
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			buf = buf[:runtime.Stack(buf, true)]
			out, _ := exec.Command("sh", "-c", fmt.Sprintf("ls -l /proc/%d/fd; ss -tanpe | grep pid=%d", os.Getpid(), os.Getpid())).CombinedOutput()
			t.Fatalf("after every connection ended: %d sockets (baseline %d), %d goroutines (baseline %d)\n%s\n%s",
				f, fds, g, goroutines, out, buf)
		}
		time.Sleep(20 * time.Millisecond) // polling a condition to a deadline, not synchronising
	}
}

// baseline warms the server up (the first connection starts the hub's pumps and
// watchdog for good), waits until that connection is gone, and returns the
// descriptors and goroutines in use.
func (s *server) baseline(t *testing.T) (fds, goroutines int) {
	t.Helper()
	c, _ := s.dial(t)
	c.c.CloseNow()
	testenv.WaitFor(t, testenv.Timeout, "the warm-up connection to end", func() bool { return s.hub.Stats().Connections == 0 })
	return openFDs(t), runtime.NumGoroutine()
}

// hostile is one way a client can end or break a connection, and what the server
// must answer with (0: no close frame, only a closed socket).
type hostile struct {
	name string
	do   func(c *wstest.Conn) error
	code uint16
	// dropped: the client itself goes away; only the descriptor count can tell.
	dropped bool
}

func u64(v uint64) *uint64 { return &v }

func hostileCases() []hostile {
	text := func(p []byte) wstest.Frame { return wstest.Frame{Fin: true, Opcode: wstest.OpText, Payload: p} }
	send := func(fs ...wstest.Frame) func(*wstest.Conn) error {
		return func(c *wstest.Conn) error { return c.Send(fs...) }
	}
	return []hostile{
		{name: "message over the read limit (70 KB)", do: send(text(bytes.Repeat([]byte("x"), 70<<10))), code: 1009},
		{name: "message over the read limit (300 KB)", do: send(text(bytes.Repeat([]byte("x"), 300<<10))), code: 1009},
		{name: "continuation without a start", do: send(wstest.Frame{Fin: true, Opcode: wstest.OpContinuation, Payload: []byte("x")}), code: 1002},
		{name: "interleaved messages", do: send(
			wstest.Frame{Opcode: wstest.OpText, Payload: []byte(`{"ty`)},
			wstest.Frame{Fin: true, Opcode: wstest.OpText, Payload: []byte(`{}`)}), code: 1002},
		{name: "control frame over 125 bytes", do: send(wstest.Frame{Fin: true, Opcode: wstest.OpPing, Payload: bytes.Repeat([]byte("p"), 126)}), code: 1002},
		{name: "fragmented ping", do: send(wstest.Frame{Opcode: wstest.OpPing, Payload: []byte("p")}), code: 1002},
		{name: "close payload of one byte", do: send(wstest.Frame{Fin: true, Opcode: wstest.OpClose, Payload: []byte{3}}), code: 1002},
		{name: "close with an invalid code", do: send(wstest.Frame{Fin: true, Opcode: wstest.OpClose, Payload: wstest.ClosePayload(999, "")}), code: 1002},
		{name: "RSV1 without an extension", do: send(wstest.Frame{Fin: true, RSV1: true, Opcode: wstest.OpText, Payload: []byte(`{}`)}), code: 1002},
		{name: "reserved opcode 3", do: send(wstest.Frame{Fin: true, Opcode: 3, Payload: []byte(`{}`)}), code: 1002},
		{name: "unmasked client frame", do: send(wstest.Frame{Fin: true, Opcode: wstest.OpText, Unmasked: true, Payload: []byte(`{}`)}), code: 1002},
		{name: "length 2^63", do: send(wstest.Frame{Fin: true, Opcode: wstest.OpText, Length: u64(1 << 63)}), code: 1002},
		{name: "invalid UTF-8 in a text message", do: send(text([]byte("{\"type\":\"\xff\xfe\"}"))), code: 1007},
		{name: "clean close from the client", do: send(wstest.Frame{Fin: true, Opcode: wstest.OpClose, Payload: wstest.ClosePayload(1000, "bye")}), code: 1000},
		{name: "drop with FIN", do: func(c *wstest.Conn) error { return c.Close() }, dropped: true},
		{name: "drop with RST", do: func(c *wstest.Conn) error { return c.Reset() }, dropped: true},
		{name: "drop half-way through a frame", do: func(c *wstest.Conn) error {
			b := text(bytes.Repeat([]byte("x"), 1000)).Append(nil)
			c.Write(b[:500])
			return c.Close()
		}, dropped: true},
		{name: "drop half-way through a frame with RST", do: func(c *wstest.Conn) error {
			b := text(bytes.Repeat([]byte("x"), 1000)).Append(nil)
			c.Write(b[:500])
			return c.Reset()
		}, dropped: true},
	}
}

// TestServerClosesEveryEnding: however a connection ends — the peer misbehaves, the
// peer vanishes, the peer closes — the server answers with the right close code,
// closes TCP itself within its drain time (also for a peer that, like Node's ws or a
// browser, answers the close and then waits for the server's FIN, and for one that
// never answers), and leaves no descriptor or goroutine behind.
func TestServerClosesEveryEnding(t *testing.T) {
	s := start(t, "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT);", ws.Options{}, fanout.Options{})
	addr := strings.TrimPrefix(s.http.URL, "http://")
	fds, goroutines := s.baseline(t)

	var wg sync.WaitGroup
	for _, h := range hostileCases() {
		for _, reply := range []bool{true, false} {
			name := fmt.Sprintf("%s/reply=%v", h.name, reply)
			if h.dropped && !reply {
				continue
			}
			wg.Go(func() {
				c, err := wstest.Dial(addr, "/ws", testenv.Timeout)
				if err != nil {
					t.Errorf("%s: %v", name, err)
					return
				}
				defer c.Close()
				if _, p, err := c.ReadFrame(); err != nil || !bytes.Contains(p, []byte(`"hello"`)) {
					t.Errorf("%s: no hello: %s %v", name, p, err)
					return
				}
				// Sent on a goroutine: a large message is only taken in as the server
				// drains it.
				sent := make(chan error, 1)
				go func() { sent <- h.do(c) }()
				if h.dropped {
					<-sent
					return
				}
				e := c.AwaitEnd(time.Now().Add(testenv.Timeout), reply, true)
				if e.CloseCode != h.code {
					t.Errorf("%s: close code %d (%q), want %d; ended by %v", name, e.CloseCode, e.Reason, h.code, e.Err)
				}
				if !e.FIN {
					t.Errorf("%s: the server did not close TCP after its close frame: %v", name, e.Err)
				}
				<-sent
			})
		}
	}
	wg.Wait()
	waitBaseline(t, fds, goroutines)

	st := s.hub.Stats()
	for reason, min := range map[ws.CloseReason]uint64{
		ws.CloseTooBig: 4, ws.CloseProtocol: 20, ws.CloseInvalidUTF8: 2, ws.ClosePeer: 2, ws.ClosePeerGone: 4,
	} {
		if st.Closes[reason] < min {
			t.Errorf("closes counted as %s: %d, want at least %d", reason, st.Closes[reason], min)
		}
	}
}

// TestPingTimeoutClosesSilentPeer: a peer that never answers pings gets 1008 and a
// FIN; one that answers stays.
func TestPingTimeoutClosesSilentPeer(t *testing.T) {
	s := start(t, "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT);",
		ws.Options{PingInterval: 100 * time.Millisecond, PingTimeout: 400 * time.Millisecond}, fanout.Options{})
	addr := strings.TrimPrefix(s.http.URL, "http://")
	silent, err := wstest.Dial(addr, "/ws", testenv.Timeout)
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	answering, err := wstest.Dial(addr, "/ws", testenv.Timeout)
	if err != nil {
		t.Fatal(err)
	}
	defer answering.Close()
	done := make(chan wstest.Ending, 1)
	go func() { done <- answering.AwaitEnd(time.Now().Add(testenv.Timeout), true, true) }()

	e := silent.AwaitEnd(time.Now().Add(testenv.Timeout), true, false)
	if e.CloseCode != 1008 || !e.FIN {
		t.Errorf("silent peer: close %d (%q), FIN %v (%v); want 1008 and FIN", e.CloseCode, e.Reason, e.FIN, e.Err)
	}
	select {
	case e := <-done:
		t.Fatalf("a peer that answers pings was closed: %+v", e)
	default:
	}
	if n := s.hub.Stats().Closes[ws.ClosePingTimeout]; n != 1 {
		t.Errorf("ping timeouts counted: %d, want 1", n)
	}
}

// TestRequestFloodIsClosed: a client that sends requests without reading the
// replies is disconnected, and its socket closed, rather than queueing without bound.
func TestRequestFloodIsClosed(t *testing.T) {
	s := start(t, "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT);", ws.Options{MessageRate: -1}, fanout.Options{})
	addr := strings.TrimPrefix(s.http.URL, "http://")
	fds, goroutines := s.baseline(t)
	c, err := wstest.Dial(addr, "/ws", testenv.Timeout)
	if err != nil {
		t.Fatal(err)
	}
	// Requests, written and never a reply read, until the server gives up on the
	// client: the socket buffers fill, the replies queue up, the server must close.
	var b []byte
	for i := range 1000 {
		b = wstest.Frame{Fin: true, Opcode: wstest.OpText, Payload: fmt.Appendf(nil, `{"type":"unsubscribe","id":%d}`, i)}.Append(b)
	}
	c.SetWriteDeadline(time.Now().Add(testenv.Timeout))
	var err2 error
	for err2 == nil {
		_, err2 = c.Write(b)
	}
	if ne, ok := err2.(net.Error); ok && ne.Timeout() {
		t.Fatalf("flooding client: the server still took requests after %v", testenv.Timeout)
	}
	c.Close()
	waitBaseline(t, fds, goroutines)
	if n := s.hub.Stats().Closes[ws.CloseFlood]; n != 1 {
		t.Errorf("floods counted: %d, want 1", n)
	}
}
