// Package wstest is a raw RFC 6455 client for tests that must send what no
// conforming client would: frames it builds byte by byte (bad opcodes, RSV bits,
// unmasked or oversized frames, broken fragmentation, invalid UTF-8), abrupt drops
// (FIN or RST with no close frame), and a peer that, like Node's ws and browsers,
// waits for the server to close TCP after the close handshake. It checks nothing
// itself; tests assert on what it reports.
package wstest

import (
	"bufio"
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"
)

// Opcodes of RFC 6455 §5.2.
const (
	OpContinuation = 0x0
	OpText         = 0x1
	OpBinary       = 0x2
	OpClose        = 0x8
	OpPing         = 0x9
	OpPong         = 0xA
)

// Conn is an upgraded connection speaking raw frames.
type Conn struct {
	net.Conn
	br *bufio.Reader
}

// Dial connects to addr (host:port), upgrades GET path and returns the connection.
// Bytes the server sends after the 101 response stay buffered for ReadFrame.
func Dial(addr, path string, timeout time.Duration) (*Conn, error) {
	nc, err := net.DialTimeout("tcp", addr, timeout)
	if err != nil {
		return nil, err
	}
	key := make([]byte, 16)
	rand.Read(key)
	nc.SetDeadline(time.Now().Add(timeout))
	_, err = fmt.Fprintf(nc, "GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
		"Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n", path, addr, base64.StdEncoding.EncodeToString(key))
	if err != nil {
		nc.Close()
		return nil, err
	}
	br := bufio.NewReader(nc)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("websocket handshake: %w", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSwitchingProtocols {
		nc.Close()
		return nil, fmt.Errorf("websocket handshake: status %s", resp.Status)
	}
	nc.SetDeadline(time.Time{})
	return &Conn{Conn: nc, br: br}, nil
}

// Frame describes one frame to send. Masked frames get a random key; Length, when
// set, is written as the payload length instead of len(Payload) (for impossible
// lengths), and Payload is then sent as it is.
type Frame struct {
	Fin, RSV1, RSV2, RSV3 bool
	Opcode                byte
	Unmasked              bool
	Length                *uint64
	Payload               []byte
}

// Append appends the frame's bytes to dst.
func (f Frame) Append(dst []byte) []byte {
	b0 := f.Opcode & 0x0F
	if f.Fin {
		b0 |= 0x80
	}
	if f.RSV1 {
		b0 |= 0x40
	}
	if f.RSV2 {
		b0 |= 0x20
	}
	if f.RSV3 {
		b0 |= 0x10
	}
	n := uint64(len(f.Payload))
	if f.Length != nil {
		n = *f.Length
	}
	var mask byte
	if !f.Unmasked {
		mask = 0x80
	}
	switch {
	case n < 126:
		dst = append(dst, b0, mask|byte(n))
	case n <= 0xFFFF:
		dst = append(dst, b0, mask|126)
		dst = binary.BigEndian.AppendUint16(dst, uint16(n))
	default:
		dst = append(dst, b0, mask|127)
		dst = binary.BigEndian.AppendUint64(dst, n)
	}
	if f.Unmasked {
		return append(dst, f.Payload...)
	}
	var key [4]byte
	rand.Read(key[:])
	dst = append(dst, key[:]...)
	for i, c := range f.Payload {
		dst = append(dst, c^key[i%4])
	}
	return dst
}

// Send writes frames as one write.
func (c *Conn) Send(frames ...Frame) error {
	var b []byte
	for _, f := range frames {
		b = f.Append(b)
	}
	_, err := c.Write(b)
	return err
}

// Text sends a masked, final text frame.
func (c *Conn) Text(s string) error {
	return c.Send(Frame{Fin: true, Opcode: OpText, Payload: []byte(s)})
}

// ClosePayload is a close frame's payload: the code and reason.
func ClosePayload(code uint16, reason string) []byte {
	return append(binary.BigEndian.AppendUint16(nil, code), reason...)
}

// ReadFrame reads one server frame: its opcode and payload.
func (c *Conn) ReadFrame() (byte, []byte, error) {
	var h [2]byte
	if _, err := io.ReadFull(c.br, h[:]); err != nil {
		return 0, nil, err
	}
	if h[1]&0x80 != 0 {
		return 0, nil, errors.New("server sent a masked frame")
	}
	n := uint64(h[1] & 0x7F)
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
	if n > 64<<20 {
		return 0, nil, fmt.Errorf("server frame of %d bytes", n)
	}
	p := make([]byte, n)
	_, err := io.ReadFull(c.br, p)
	return h[0] & 0x0F, p, err
}

// Ending is how a connection ended, as the client saw it.
type Ending struct {
	// CloseCode is the code of the server's close frame: 1005 for a close frame with
	// no code, 0 if no close frame came.
	CloseCode uint16
	Reason    string
	// FIN is true when the server then closed TCP (the read saw EOF); false when the
	// read failed otherwise (reset, or the deadline passed with the socket open).
	FIN bool
	Err error // the error that ended reading, io.EOF for a FIN
	// Frames are the data frames' payloads seen on the way (hello, replies).
	Frames [][]byte
}

// AwaitEnd reads until the connection ends or the deadline passes, answering pings
// if pong is set. When the server's close frame arrives it answers with the same
// close frame if reply is set (as Node's ws and browsers do) and then, either way,
// waits for the server to close TCP: it never closes first.
func (c *Conn) AwaitEnd(deadline time.Time, reply, pong bool) Ending {
	var e Ending
	c.SetReadDeadline(deadline)
	for {
		op, p, err := c.ReadFrame()
		if err != nil {
			e.Err = err
			e.FIN = errors.Is(err, io.EOF)
			return e
		}
		switch op {
		case OpClose:
			if e.CloseCode != 0 {
				continue // a second close frame: ignore
			}
			e.CloseCode = 1005
			if len(p) >= 2 {
				e.CloseCode = binary.BigEndian.Uint16(p)
				e.Reason = string(p[2:])
			}
			if reply {
				c.Send(Frame{Fin: true, Opcode: OpClose, Payload: p})
			}
		case OpPing:
			if pong {
				c.Send(Frame{Fin: true, Opcode: OpPong, Payload: p})
			}
		case OpText, OpBinary:
			e.Frames = append(e.Frames, p)
		}
	}
}

// Reset drops the connection with a TCP RST (SO_LINGER 0) instead of a FIN.
func (c *Conn) Reset() error {
	if tc, ok := c.Conn.(*net.TCPConn); ok {
		tc.SetLinger(0)
	}
	return c.Close()
}
