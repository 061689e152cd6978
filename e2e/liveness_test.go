package e2e

import (
	"bufio"
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/sqlws/sqlws/internal/testenv"
	"github.com/sqlws/sqlws/protocol"
)

// rawConn is a bare WebSocket client that never answers pings, for liveness tests.
type rawConn struct {
	net.Conn
	br *bufio.Reader
}

func rawDial(t *testing.T, addr string) *rawConn {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, timeout)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	key := make([]byte, 16)
	rand.Read(key)
	fmt.Fprintf(conn, "GET /ws HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
		"Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n", addr, base64.StdEncoding.EncodeToString(key))
	conn.SetDeadline(time.Now().Add(timeout))
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("websocket handshake: %v", err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("websocket handshake: status %s", resp.Status)
	}
	return &rawConn{conn, br}
}

// readFrame reads one frame: its opcode and payload.
func (c *rawConn) readFrame() (byte, []byte, error) {
	var h [2]byte
	if _, err := io.ReadFull(c.br, h[:]); err != nil {
		return 0, nil, err
	}
	if h[1]&0x80 != 0 {
		return 0, nil, fmt.Errorf("server sent a masked frame")
	}
	n := uint64(h[1] & 0x7f)
	switch n {
	case 126:
		var b [2]byte
		if _, err := io.ReadFull(c.br, b[:]); err != nil {
			return 0, nil, err
		}
		n = uint64(binary.BigEndian.Uint16(b[:]))
	case 127:
		var b [8]byte
		if _, err := io.ReadFull(c.br, b[:]); err != nil {
			return 0, nil, err
		}
		n = binary.BigEndian.Uint64(b[:])
	}
	p := make([]byte, n)
	_, err := io.ReadFull(c.br, p)
	return h[0] & 0x0f, p, err
}

// TestPingTimeout: a peer that stops answering pings is closed with 1008, while a
// peer that answers stays connected. (Uses --ping-timeout, default 15s, to keep the
// test short.)
func TestPingTimeout(t *testing.T) {
	t.Parallel()
	db, srv := start(t, `CREATE TABLE t(id INTEGER PRIMARY KEY, v INT);`, "--ping-interval", "300ms", "--ping-timeout", "2s")
	good := srv.Dial(t)
	good.Subscribe("a", nil, nil, "")

	raw := rawDial(t, srv.Addr)
	raw.SetDeadline(time.Now().Add(timeout))
	pings, code := 0, -1
	var sawHello bool
	for {
		op, p, err := raw.readFrame()
		if err != nil {
			t.Logf("non-answering peer: connection ended without a close frame after %d pings: %v", pings, err)
			break
		}
		switch op {
		case 0x1:
			sawHello = sawHello || strings.Contains(string(p), `"hello"`)
		case 0x9:
			pings++
		case 0x8:
			if len(p) >= 2 {
				code = int(binary.BigEndian.Uint16(p))
			} else {
				code = 1005
			}
		}
		if op == 0x8 {
			break
		}
	}
	if !sawHello || pings == 0 {
		t.Errorf("non-answering peer saw hello=%v and %d pings", sawHello, pings)
	}
	if code != int(websocket.StatusPolicyViolation) {
		t.Errorf("non-answering peer: close code %d, want 1008", code)
	}
	// The answering client outlived the ping timeout and still works.
	if closed, err := good.Closed(); closed {
		t.Fatalf("a client that answers pings was disconnected: %v", err)
	}
	testenv.SQLite(t, db, "INSERT INTO t(v) VALUES(1);")
	good.WaitChanges("a", 1, timeout)
}

// TestReadLimitFlag: --read-limit sets the largest client message.
func TestReadLimitFlag(t *testing.T) {
	t.Parallel()
	_, srv := start(t, `CREATE TABLE t(id INTEGER PRIMARY KEY, v INT);`, "--read-limit", "1024")
	c := srv.Dial(t)
	c.Send(`{"type":"subscribe","id":"a","tables":["` + strings.Repeat("y", 900) + `"]}`)
	if m := c.Next(timeout); m.Type != protocol.TypeError || m.Code != "unknown_table" {
		t.Errorf("message under the limit: got %.200s, want error unknown_table", m.Raw)
	}
	c.Send(`{"type":"subscribe","id":"a","tables":["` + strings.Repeat("y", 2000) + `"]}`)
	if code, err := c.WaitClosed(timeout); code != websocket.StatusMessageTooBig {
		t.Errorf("message over --read-limit 1024: connection ended with %d (%v), want 1009", code, err)
	}
	srv.Dial(t).Subscribe("a", []string{"t"}, nil, "")
}
