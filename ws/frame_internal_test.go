package ws

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// Data frames bypass the library's Write (frameConn.writeData). A real client must
// read them, whatever the length encoding, interleaved with the library's own control
// frames; after the library has sent a close frame no data frame may follow.
func TestDirectFramesReadByRealClient(t *testing.T) {
	sizes := []int{0, 1, 125, 126, 127, 65535, 65536, 1 << 20}
	fcs := make(chan *frameConn, 1)
	wss := make(chan *websocket.Conn, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sb := &smallBuffers{ResponseWriter: w}
		ws, err := websocket.Accept(sb, r, nil)
		if err != nil {
			t.Error(err)
			return
		}
		fcs <- sb.fc
		wss <- ws
	}))
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	client, _, err := websocket.Dial(ctx, srv.URL, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer client.CloseNow()
	client.SetReadLimit(2 << 20)
	fc, ws := <-fcs, <-wss
	defer ws.CloseNow()
	// The server side must read for the library to answer pings and closes.
	go func() {
		for {
			if _, _, err := ws.Read(context.Background()); err != nil {
				return
			}
		}
	}()

	pings := make(chan error, len(sizes))
	for _, n := range sizes {
		msg := bytes.Repeat([]byte{'a' + byte(n%26)}, n)
		if err := fc.writeData(textFrame(msg)); err != nil {
			t.Fatalf("write %d bytes: %v", n, err)
		}
		// Control frames from the library between data frames; each ping returns once
		// the client, reading below, has answered it.
		go func() { pings <- ws.Ping(ctx) }()
	}
	for _, n := range sizes {
		typ, got, err := client.Read(ctx)
		if err != nil {
			t.Fatalf("read the %d-byte message: %v", n, err)
		}
		if typ != websocket.MessageText || len(got) != n || (n > 0 && got[n-1] != 'a'+byte(n%26)) {
			t.Fatalf("message of %d bytes came back as %v of %d bytes", n, typ, len(got))
		}
	}

	// The client keeps reading (answering the remaining pings) until the close.
	clientEnd := make(chan error, 1)
	go func() {
		_, _, err := client.Read(ctx)
		clientEnd <- err
	}()
	for range sizes {
		if err := <-pings; err != nil {
			t.Fatalf("server ping: %v", err)
		}
	}

	// Once the library has sent its close frame, data frames are refused.
	closed := make(chan error, 1)
	go func() { closed <- ws.Close(websocket.StatusGoingAway, "bye") }()
	if err := <-clientEnd; websocket.CloseStatus(err) != websocket.StatusGoingAway {
		t.Fatalf("client read after close: %v, want 1001", err)
	}
	if err := fc.writeData(textFrame([]byte("late"))); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("data frame after the close frame: %v, want net.ErrClosed", err)
	}
	client.Close(websocket.StatusNormalClosure, "")
	select {
	case <-closed:
	case <-ctx.Done():
		t.Fatal("close handshake did not finish")
	}
}

// recordingConn records each Write the WebSocket library makes through frameConn.
type recordingConn struct {
	net.Conn
	mu     sync.Mutex
	writes [][]byte
}

func (r *recordingConn) Write(p []byte) (int, error) {
	r.mu.Lock()
	r.writes = append(r.writes, bytes.Clone(p))
	r.mu.Unlock()
	return r.Conn.Write(p)
}

// wholeFrames reports whether b is a sequence of complete unmasked frames, and the
// opcodes of those frames.
func wholeFrames(b []byte) ([]byte, bool) {
	var ops []byte
	for len(b) > 0 {
		if len(b) < 2 || b[1]&0x80 != 0 {
			return ops, false
		}
		n, h := int(b[1]&0x7F), 2
		switch n {
		case 126:
			if len(b) < 4 {
				return ops, false
			}
			n, h = int(binary.BigEndian.Uint16(b[2:])), 4
		case 127:
			if len(b) < 10 {
				return ops, false
			}
			n, h = int(binary.BigEndian.Uint64(b[2:])), 10
		}
		if len(b) < h+n {
			return ops, false
		}
		ops = append(ops, b[0]&0x0F)
		b = b[h+n:]
	}
	return ops, true
}

// TestFrameLayerAssumptions pins what the frame layer relies on in coder/websocket,
// none of which is its public API, so that a library upgrade that changes it fails
// here rather than corrupting streams: every write the library makes is whole
// frames starting at a frame boundary (so frameConn's lock keeps data frames
// between them, and its first byte tells a close frame); the close frame is seen;
// compression is never negotiated even when a client offers it; and the
// non-blocking fast path is taken only on plain sockets, also behind web.Listener's
// counting wrapper, never on TLS.
func TestFrameLayerAssumptions(t *testing.T) {
	type accepted struct {
		sb  *smallBuffers
		ws  *websocket.Conn
		rec *recordingConn
	}
	handler := func(got chan<- accepted) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			sb := &smallBuffers{ResponseWriter: w}
			ws, err := websocket.Accept(sb, r, &websocket.AcceptOptions{CompressionMode: websocket.CompressionDisabled})
			if err != nil {
				return
			}
			rec := &recordingConn{Conn: sb.fc.Conn}
			sb.fc.Conn = rec // before anything is read or written on it
			got <- accepted{sb, ws, rec}
		})
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	t.Run("plain socket", func(t *testing.T) {
		got := make(chan accepted, 1)
		srv := httptest.NewServer(handler(got))
		defer srv.Close()
		client, resp, err := websocket.Dial(ctx, srv.URL, &websocket.DialOptions{CompressionMode: websocket.CompressionContextTakeover})
		if err != nil {
			t.Fatal(err)
		}
		defer client.CloseNow()
		if ext := resp.Header.Get("Sec-WebSocket-Extensions"); ext != "" {
			t.Fatalf("compression negotiated: %q", ext)
		}
		a := <-got
		if a.sb.fc.raw == nil {
			t.Fatal("no fast path on a plain TCP socket")
		}
		go func() {
			for {
				if _, _, err := client.Read(ctx); err != nil {
					return
				}
			}
		}()
		go func() {
			for {
				if _, _, err := a.ws.Read(ctx); err != nil {
					return
				}
			}
		}()
		for range 3 {
			if err := a.ws.Ping(ctx); err != nil {
				t.Fatal(err)
			}
		}
		a.ws.Close(websocket.StatusNormalClosure, "")
		if !a.sb.fc.closeSent {
			t.Fatal("the library's close frame was not noticed")
		}
		a.rec.mu.Lock()
		defer a.rec.mu.Unlock()
		var all []byte
		for _, w := range a.rec.writes {
			ops, ok := wholeFrames(w)
			if !ok {
				t.Fatalf("the library wrote a partial frame: % x", w)
			}
			all = append(all, ops...)
		}
		if !bytes.Contains(all, []byte{0x9, 0x9, 0x9}) || all[len(all)-1] != 0x8 {
			t.Fatalf("library frames %v, want three pings then a close", all)
		}
	})

	t.Run("TLS", func(t *testing.T) {
		got := make(chan accepted, 1)
		srv := httptest.NewTLSServer(handler(got))
		defer srv.Close()
		client, _, err := websocket.Dial(ctx, "wss"+srv.URL[len("https"):], &websocket.DialOptions{HTTPClient: srv.Client()})
		if err != nil {
			t.Fatal(err)
		}
		defer client.CloseNow()
		if a := <-got; a.sb.fc.raw != nil {
			t.Fatal("the fast path, which writes to the descriptor, was taken on a TLS connection")
		}
	})

	t.Run("counted plain socket", func(t *testing.T) {
		got := make(chan accepted, 1)
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		srv := &http.Server{Handler: handler(got)}
		go srv.Serve(&unwrapListener{ln})
		defer srv.Close()
		client, _, err := websocket.Dial(ctx, "ws://"+ln.Addr().String(), nil)
		if err != nil {
			t.Fatal(err)
		}
		defer client.CloseNow()
		if a := <-got; a.sb.fc.raw == nil {
			t.Fatal("no fast path on a plain socket behind a wrapper that offers NetConn")
		}
	})
}

// unwrapListener wraps accepted connections as web.Listener does.
type unwrapListener struct{ net.Listener }

type netConnWrapper struct{ net.Conn }

func (w netConnWrapper) PlainConn() net.Conn { return w.Conn }

func (l *unwrapListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return netConnWrapper{c}, nil
}
