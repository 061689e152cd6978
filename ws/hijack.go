package ws

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/http"
	"sync"
	"syscall"
	"time"

	"github.com/coder/websocket"
)

// Buffer sizes for hijacked WebSocket connections. net/http hands a hijacker 4 KiB
// read and write buffers; idle subscribers dominate a busy server's memory, so sqlws
// swaps them for small ones. Client messages are tiny, and only the library's control
// frames (at most 127 bytes from a server) go through the write buffer: data frames
// are written to the socket directly (frameConn).
const (
	connReadBuffer  = 512
	connWriteBuffer = 256
)

// smallBuffers wraps a ResponseWriter so that Hijack returns small buffers and drops
// every reference to net/http's own, which are then freed once the handler returns.
// The connection it hands to the WebSocket library is a frameConn, kept in fc.
type smallBuffers struct {
	http.ResponseWriter
	fc *frameConn
}

func (w *smallBuffers) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	nc, brw, err := http.NewResponseController(w.ResponseWriter).Hijack()
	if err != nil {
		return nil, nil, err
	}
	if err := brw.Writer.Flush(); err != nil {
		nc.Close()
		return nil, nil, err
	}
	// net/http's ReadTimeout and WriteTimeout bound a request by deadlines on the
	// socket, which stay set after a hijack: a WebSocket must not inherit them.
	if err := nc.SetDeadline(time.Time{}); err != nil {
		nc.Close()
		return nil, nil, err
	}
	// Bytes the client sent right after the upgrade request (say, a subscribe written
	// on open) may already sit in net/http's reader. websocket.Accept keeps only what
	// the returned reader has *buffered*, so they must be in its buffer, not behind it.
	br := bufio.NewReaderSize(nc, connReadBuffer)
	if n := brw.Reader.Buffered(); n > 0 {
		b, _ := brw.Reader.Peek(n)
		br = bufio.NewReaderSize(io.MultiReader(bytes.NewReader(bytes.Clone(b)), nc), max(connReadBuffer, n))
		if _, err := br.Peek(n); err != nil {
			nc.Close()
			return nil, nil, err
		}
	}
	w.fc = &frameConn{Conn: nc}
	// The non-blocking fast path writes to the descriptor itself, which is only right
	// for a plain socket: a TLS connection (say) must encrypt what goes through it, and
	// *tls.Conn's NetConn would hand over the socket under it. A wrapper that passes
	// bytes through untouched (web.Listener's, which counts connections) says so with
	// PlainConn.
	sock := nc
	if u, ok := nc.(interface{ PlainConn() net.Conn }); ok {
		sock = u.PlainConn()
	}
	switch sc := sock.(type) {
	case *net.TCPConn:
		w.fc.raw, _ = sc.SyscallConn()
	case *net.UnixConn:
		w.fc.raw, _ = sc.SyscallConn()
	}
	if w.fc.raw != nil {
		w.fc.sock = sock
	}
	return w.fc, bufio.NewReadWriter(br, bufio.NewWriterSize(w.fc, connWriteBuffer)), nil
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (w *smallBuffers) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// frameConn is the socket under a WebSocket connection. coder/websocket writes its
// control frames (pong, ping, close) through it; sqlws writes data frames, built with
// their header in front of the payload in one buffer, with tryWrite (the pump) and
// writeData (the connection's writer). Going around the library's Write for data
// saves its per-message locks, writer reset and copy into its buffer: about a fifth
// of the server's CPU per frame at 1,000 subscribers (docs/performance.md).
//
// mu makes each frame one uninterrupted write: the library flushes every control
// frame (at most 127 bytes, less than connWriteBuffer) in a single Write, so its
// writes always start at a frame boundary, and closeSent can watch for the close
// frame after which no data frame may follow.
type frameConn struct {
	net.Conn
	raw       syscall.RawConn // for tryWrite; nil unless a plain socket
	sock      net.Conn        // the plain socket under Conn, for writev; nil unless raw is set
	mu        sync.Mutex
	closeSent bool

	// tryWrite's write callback and its arguments and results, under mu.
	writeFn func(fd uintptr) bool
	wbuf    []byte
	wn      int
	werr    error
}

func (f *frameConn) Write(p []byte) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(p) > 0 && p[0]&0x0F == 0x8 {
		f.closeSent = true
	}
	return f.Conn.Write(p)
}

// writeData writes one complete data frame (see frameHeader), unless the close
// handshake has begun.
func (f *frameConn) writeData(frame []byte) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closeSent {
		return net.ErrClosed
	}
	_, err := f.Conn.Write(frame)
	return err
}

// writeGathered writes one complete data frame gathered from vec (header first),
// unless the close handshake has begun: with writev on a plain socket, else copied
// into one buffer (a TLS connection would make a record of every piece).
func (f *frameConn) writeGathered(vec net.Buffers) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closeSent {
		return net.ErrClosed
	}
	if f.sock != nil {
		_, err := vec.WriteTo(f.sock)
		return err
	}
	n := 0
	for _, b := range vec {
		n += len(b)
	}
	buf := make([]byte, 0, n)
	for _, b := range vec {
		buf = append(buf, b...)
	}
	_, err := f.Conn.Write(buf)
	return err
}

// writeClose writes a close frame with code and text, unless one was written, and
// then half-closes the socket (FIN): nothing follows a close frame.
func (f *frameConn) writeClose(code websocket.StatusCode, text string) {
	f.mu.Lock()
	if !f.closeSent {
		f.closeSent = true
		payload := binary.BigEndian.AppendUint16(nil, uint16(code))
		payload = append(payload, text[:min(len(text), 123)]...)
		frame := append([]byte{0x88, byte(len(payload))}, payload...)
		f.Conn.Write(frame)
	}
	f.mu.Unlock()
	switch s := f.plain().(type) {
	case interface{ CloseWrite() error }:
		s.CloseWrite()
	}
}

// drain reads and discards until the peer closes or the read deadline passes, so
// that closing the socket afterwards sends a FIN, not a reset for unread data.
func (f *frameConn) drain() {
	io.Copy(io.Discard, f.Conn)
}

// plain is the socket with bytes exactly as they go on the wire: the socket itself
// for the fast path, else the connection as the server received it.
func (f *frameConn) plain() net.Conn {
	if f.sock != nil {
		return f.sock
	}
	return f.Conn
}

// errWouldBlock is tryWrite's "not now": the socket's buffer is full, or a control
// frame is being written.
var errWouldBlock = errors.New("write would block")

// tryWrite writes as much of frame as the socket takes without waiting. When it
// wrote part of the frame it returns with f.mu still held (locked true): no other
// frame may start until the rest is written with finishWrite, by whichever goroutine
// continues. errWouldBlock means nothing was written.
func (f *frameConn) tryWrite(frame []byte) (n int, locked bool, err error) {
	if f.raw == nil || !f.mu.TryLock() {
		return 0, false, errWouldBlock
	}
	if f.closeSent {
		f.mu.Unlock()
		return 0, false, net.ErrClosed
	}
	if f.writeFn == nil {
		// Made once per connection and fed through fields: a closure capturing
		// frame and the results would be three allocations per frame.
		f.writeFn = func(fd uintptr) bool {
			f.wn, f.werr = writeOnce(fd, f.wbuf)
			return true // one attempt: never wait for the socket here
		}
	}
	f.wbuf = frame
	// RawConn.Write, not the bare descriptor: it keeps the socket from being closed
	// (and its number reused) during the write.
	if err = f.raw.Write(f.writeFn); err == nil {
		n, err = f.wn, f.werr
	}
	f.wbuf, f.werr = nil, nil
	if n > 0 && n < len(frame) {
		return n, true, nil
	}
	f.mu.Unlock()
	return max(n, 0), false, err
}

// finishWrite writes the rest of a frame that tryWrite began (locked) or could not
// begin, waiting for the socket as long as it takes.
func (f *frameConn) finishWrite(rest []byte, locked bool) error {
	if !locked {
		return f.writeData(rest)
	}
	defer f.mu.Unlock()
	_, err := f.Conn.Write(rest)
	return err
}

// frameHeaderMax is the longest header of an unmasked server frame: two bytes and a
// 64-bit length. Frame buffers keep this much room in front of the payload, so the
// header goes right before it and the frame is written with one call.
const frameHeaderMax = 10

// frameHeader writes the header of a final, unmasked text frame with a payload of
// n bytes into the end of hdr (frameHeaderMax bytes) and returns where it starts.
func frameHeader(hdr []byte, n int) int {
	hdr = hdr[:frameHeaderMax]
	switch {
	case n < 126:
		hdr[8], hdr[9] = 0x81, byte(n)
		return 8
	case n <= 0xFFFF:
		hdr[6], hdr[7] = 0x81, 126
		binary.BigEndian.PutUint16(hdr[8:], uint16(n))
		return 6
	default:
		hdr[0], hdr[1] = 0x81, 127
		binary.BigEndian.PutUint64(hdr[2:], uint64(n))
		return 0
	}
}

// textFrame is msg as a complete text frame.
func textFrame(msg []byte) []byte {
	b := make([]byte, frameHeaderMax+len(msg))
	copy(b[frameHeaderMax:], msg)
	return b[frameHeader(b, len(msg)):]
}
