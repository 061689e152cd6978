package main

// W1R, W1's physical reference: the same subscribers, with the same client, on the
// least server that can do W1's job — a coder/websocket broadcast server with no
// SQLite, no changelog and no fan-out machinery, that makes 100 change records a
// second itself and writes each to every connection from that connection's own
// goroutine, as the library's chat example does. What W1R measures is what 1,000
// subscribers at 100 changes/s cost on this machine in WebSocket frames alone: the
// floor under W1's latency. The server is a child process (`sqlws-bench refserver`),
// like sqlws serve in W1, so it competes for the cores the same way.

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/coder/websocket"
)

// refServer is the broadcast server of W1R.
type refServer struct {
	payload string

	mu    sync.Mutex
	conns map[chan []byte]struct{}
	seq   int64
}

// benchRefServer is the child process: `sqlws-bench refserver --addr A --payload N`.
// It prints the listening line sqlws serve prints, accepts subscribers on /ws, and
// on POST /start?duration=D broadcasts 100 records a second for D, then answers with
// the last seq.
func benchRefServer(ctx context.Context, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("sqlws-bench refserver", flag.ContinueOnError)
	addr := fs.String("addr", "127.0.0.1:0", "listen address")
	payload := fs.Int("payload", 64, "payload bytes per record")
	if err := fs.Parse(args); err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGTERM, os.Interrupt)
	defer stop()
	s := &refServer{payload: strings.Repeat("x", *payload), conns: map[chan []byte]struct{}{}}
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return err
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/ws", s.serveWS)
	mux.HandleFunc("POST /start", func(w http.ResponseWriter, r *http.Request) {
		d, err := time.ParseDuration(r.URL.Query().Get("duration"))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		fmt.Fprint(w, s.broadcast(r.Context(), d))
	})
	srv := &http.Server{Handler: mux, BaseContext: func(net.Listener) context.Context { return ctx }}
	fmt.Fprintf(out, "%shttp://%s\n", listeningPrefix, ln.Addr())
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case <-ctx.Done():
	case err := <-errc:
		return err
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return srv.Shutdown(sctx)
}

// serveWS speaks as much of the protocol as the bench's clients need: hello, the
// subscribed reply, then every broadcast frame.
func (s *refServer) serveWS(w http.ResponseWriter, r *http.Request) {
	c, err := websocket.Accept(w, r, &websocket.AcceptOptions{CompressionMode: websocket.CompressionDisabled})
	if err != nil {
		return
	}
	defer c.CloseNow()
	ctx := r.Context()
	if err := c.Write(ctx, websocket.MessageText, []byte(`{"type":"hello","protocol":1,"stream":"ref","head":0,"oldest":1}`)); err != nil {
		return
	}
	if _, _, err := c.Read(ctx); err != nil { // the subscribe
		return
	}
	frames := make(chan []byte, 1024)
	s.mu.Lock()
	s.conns[frames] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.conns, frames)
		s.mu.Unlock()
	}()
	if err := c.Write(ctx, websocket.MessageText, []byte(`{"type":"subscribed","id":"b","head":0}`)); err != nil {
		return
	}
	ctx = c.CloseRead(ctx)
	for {
		select {
		case f := <-frames:
			if err := c.Write(ctx, websocket.MessageText, f); err != nil {
				return
			}
		case <-ctx.Done():
			return
		}
	}
}

// broadcast sends 100 records a second for d on an open-loop schedule (record i is
// made at start + i×10ms, late ones at once), each stamped with the time it was made,
// and returns the last seq.
func (s *refServer) broadcast(ctx context.Context, d time.Duration) int64 {
	const every = 10 * time.Millisecond
	start := time.Now()
	for i := time.Duration(1); i*every <= d; i++ {
		t := time.NewTimer(time.Until(start.Add(i * every)))
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return s.last()
		}
		now := time.Now()
		s.mu.Lock()
		s.seq++
		f := fmt.Appendf(nil, `{"type":"changes","id":"b","changes":[{"seq":%d,"table":%q,"op":"insert","pk":{"id":%d},"old":null,"new":{"id":%d,%q:%d,"payload":%q},"ts":%d}]}`,
			s.seq, benchTable, s.seq, s.seq, stampColumn, now.UnixNano(), s.payload, now.UnixMilli())
		for c := range s.conns {
			select {
			case c <- f:
			default: // a subscriber 1,024 frames behind misses frames: the run fails verification
			}
		}
		s.mu.Unlock()
	}
	return s.last()
}

func (s *refServer) last() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.seq
}

// w1r runs W1's clients and load against the reference server.
func (b *bencher) w1r(ctx context.Context) runResult {
	var r runResult
	dir, err := os.MkdirTemp("", "sqlws-bench-W1R-")
	if err != nil {
		return errResult(err)
	}
	defer os.RemoveAll(dir)
	srv, err := startProc(ctx, b.exe, []string{"refserver", "--payload", strconv.Itoa(b.cfg.payload)}, "", filepath.Join(dir, "server.log"))
	if err != nil {
		return errResult(err)
	}
	defer srv.stop()
	clients, err := dialClients(ctx, srv.url, b.cfg.subs, subSpec{table: benchTable, since: 0}, true)
	if err != nil {
		return errResult(err)
	}
	srvS, selfS := startSampler(srv.pid), startSampler(0)
	resp, err := http.Post(srv.url+"/start?duration="+b.cfg.w1Duration().String(), "text/plain", nil)
	var head int64
	if err == nil {
		var body []byte
		body, err = io.ReadAll(resp.Body)
		resp.Body.Close()
		if err == nil {
			err = json.Unmarshal(body, &head)
		}
	}
	if err != nil || head <= 0 {
		closeClients(clients)
		return errResult(errors.Join(fmt.Errorf("reference server: head %d", head), err))
	}
	complete := waitDelivered(ctx, clients, head, drainTimeout(b.cfg.duration))
	r.Server, r.Load = srvS.stop(), selfS.stop()
	closeClients(clients)
	rep := collect(clients, head)
	lat := rep.lat.summary()
	r.Metrics = []metric{
		{Name: "make → client p99", Unit: "ms", Value: lat.P99MS},
		{Name: "make → client p50", Unit: "ms", Value: lat.P50MS},
		{Name: "make → client p99.9", Unit: "ms", Value: lat.P999MS},
		{Name: "make → client max", Unit: "ms", Value: lat.MaxMS},
	}
	r.Latency = map[string]latSummary{"make_to_client": lat}
	r.infof("%s", frameCost(r.Server, r.Load, rep))
	r.infof("reference server: coder/websocket, a goroutine per connection writing each record as its own frame; no SQLite; %d records", head)
	r.Checks = append(r.Checks, verdictCheck("delivery", rep.verdict))
	if !complete {
		r.Checks = append(r.Checks, check{Label: "drain", Detail: "subscribers did not receive every record in time"})
	}
	return r
}
