package main

// The load generator's WebSocket connections. Two implementations deliver the same
// messages to the same verification: coder/websocket's client with a reader
// goroutine per connection (--client coder, the default), and, on Linux, a minimal
// RFC 6455 client whose connections are read by one epoll loop per core (--client
// epoll).
//
// Why a second client: the bench's subscribers share the two cores with the server,
// so every microsecond the load generator spends per frame is taken from the server
// it measures. With a goroutine per connection a frame costs two read(2) calls (the
// second returns EAGAIN and parks the goroutine) plus a netpoller wake-up, ~10 µs of
// CPU here, whatever the WebSocket library; the epoll loop reads each ready socket
// once. The default is nevertheless coder: the figures are to be those a user sees
// with a stock client. epoll stays available to compare, until the bench's clients
// give way to the project's own Go client package.

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/sha1"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"time"

	"github.com/coder/websocket"
)

// benchConn is one subscriber's connection as the load generator uses it.
type benchConn interface {
	// start begins delivering messages: onMessage for every data message (text
	// reports a text, not binary, message; msg is valid only during the call), then
	// onEnd exactly once when the connection ends. Calls are never concurrent.
	start(onMessage func(msg []byte, text bool), onEnd func(error))
	// writeText sends one text message.
	writeText(ctx context.Context, msg []byte) error
	// closeNow closes the connection without a handshake; onEnd follows.
	closeNow()
}

// defaultClientKind is the --client default: the stock github.com/coder/websocket
// client, as users would run one.
const defaultClientKind = "coder"

// benchClientKind selects the implementation: "coder" (default) or "epoll" (Linux).
var benchClientKind = defaultClientKind

func dialBench(ctx context.Context, wsURL string) (benchConn, error) {
	if benchClientKind == "coder" {
		ws, _, err := websocket.Dial(ctx, wsURL, &websocket.DialOptions{HTTPClient: dialClient})
		if err != nil {
			return nil, err
		}
		ws.SetReadLimit(256 << 20)
		return coderConn{ws}, nil
	}
	nc, rest, err := dialRaw(ctx, wsURL)
	if err != nil {
		return nil, err
	}
	return newPolledConn(nc, rest)
}

// coderConn is a benchConn on github.com/coder/websocket.
type coderConn struct{ ws *websocket.Conn }

func (c coderConn) start(onMessage func([]byte, bool), onEnd func(error)) {
	// The goroutine ends when the connection does (closeNow closes the socket).
	go func() {
		bp := framePool.Get().(*[]byte)
		defer framePool.Put(bp)
		for {
			// No per-read timer; closing the socket ends the read.
			typ, r, err := c.ws.Reader(context.Background())
			if err == nil {
				*bp, err = readMessage(r, *bp)
			}
			if err != nil {
				onEnd(err)
				return
			}
			onMessage(*bp, typ == websocket.MessageText)
		}
	}()
}

func (c coderConn) writeText(ctx context.Context, msg []byte) error {
	return c.ws.Write(ctx, websocket.MessageText, msg)
}

func (c coderConn) closeNow() { c.ws.CloseNow() }

const wsGUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

// dialRaw opens a WebSocket without extensions: the HTTP upgrade, checked. It returns
// the connection and the bytes read past the response (the server may send its first
// frame right behind it).
func dialRaw(ctx context.Context, wsURL string) (net.Conn, []byte, error) {
	u, err := url.Parse(wsURL)
	if err != nil {
		return nil, nil, err
	}
	if u.Scheme != "ws" {
		return nil, nil, fmt.Errorf("scheme %q not supported by --client epoll (use --client coder)", u.Scheme)
	}
	host := u.Host
	if u.Port() == "" {
		host += ":80"
	}
	nc, err := dialClient.Transport.(*http.Transport).DialContext(ctx, "tcp", host)
	if err != nil {
		return nil, nil, err
	}
	fail := func(err error) (net.Conn, []byte, error) {
		nc.Close()
		return nil, nil, err
	}
	if dl, ok := ctx.Deadline(); ok {
		nc.SetDeadline(dl)
	}
	var nonce [16]byte
	rand.Read(nonce[:])
	key := base64.StdEncoding.EncodeToString(nonce[:])
	req := "GET " + u.RequestURI() + " HTTP/1.1\r\nHost: " + u.Host + "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Key: " + key + "\r\nSec-WebSocket-Version: 13\r\n\r\n"
	if _, err := nc.Write([]byte(req)); err != nil {
		return fail(err)
	}
	br := bufio.NewReaderSize(nc, 4<<10)
	resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodGet})
	if err != nil {
		return fail(fmt.Errorf("upgrade: %w", err))
	}
	resp.Body.Close()
	sum := sha1.Sum([]byte(key + wsGUID))
	if resp.StatusCode != http.StatusSwitchingProtocols ||
		resp.Header.Get("Sec-WebSocket-Accept") != base64.StdEncoding.EncodeToString(sum[:]) {
		return fail(fmt.Errorf("upgrade refused: %s", resp.Status))
	}
	nc.SetDeadline(time.Time{})
	rest, _ := br.Peek(br.Buffered())
	return nc, append([]byte(nil), rest...), nil
}

// frameHeader parses the header of a server frame at the start of b. ok is false
// when b does not hold the whole header yet.
func frameHeader(b []byte) (hdrLen int, payload uint64, fin bool, op byte, ok bool, err error) {
	if len(b) < 2 {
		return 0, 0, false, 0, false, nil
	}
	fin, op = b[0]&0x80 != 0, b[0]&0x0F
	if b[0]&0x70 != 0 {
		return 0, 0, false, 0, false, errors.New("reserved bits set (no extension was negotiated)")
	}
	if b[1]&0x80 != 0 {
		return 0, 0, false, 0, false, errors.New("server frame is masked")
	}
	payload, hdrLen = uint64(b[1]&0x7F), 2
	switch payload {
	case 126:
		if len(b) < 4 {
			return 0, 0, false, 0, false, nil
		}
		payload, hdrLen = uint64(binary.BigEndian.Uint16(b[2:4])), 4
	case 127:
		if len(b) < 10 {
			return 0, 0, false, 0, false, nil
		}
		payload, hdrLen = binary.BigEndian.Uint64(b[2:10]), 10
	}
	if payload > 256<<20 {
		return 0, 0, false, 0, false, fmt.Errorf("frame of %d bytes", payload)
	}
	if op >= 0x8 && (!fin || payload > 125) {
		return 0, 0, false, 0, false, errors.New("bad control frame")
	}
	return hdrLen, payload, fin, op, true, nil
}

// clientFrame is one masked client frame carrying payload.
func clientFrame(op byte, payload []byte) []byte {
	var hdr [14]byte
	hdr[0] = 0x80 | op
	n := 2
	switch l := len(payload); {
	case l < 126:
		hdr[1] = 0x80 | byte(l)
	case l <= 0xFFFF:
		hdr[1] = 0x80 | 126
		binary.BigEndian.PutUint16(hdr[2:], uint16(l))
		n = 4
	default:
		hdr[1] = 0x80 | 127
		binary.BigEndian.PutUint64(hdr[2:], uint64(l))
		n = 10
	}
	rand.Read(hdr[n : n+4])
	mask := hdr[n : n+4]
	n += 4
	frame := make([]byte, 0, n+len(payload))
	frame = append(frame, hdr[:n]...)
	for i, b := range payload {
		frame = append(frame, b^mask[i&3])
	}
	return frame
}

var errClosedByPeer = errors.New("closed by the server")
