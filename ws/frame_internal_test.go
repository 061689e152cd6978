package ws

import (
	"bytes"
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
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
