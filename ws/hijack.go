package ws

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"net/http"
)

// Buffer sizes for hijacked WebSocket connections. net/http hands a hijacker 4 KiB
// read and write buffers; idle subscribers dominate a busy server's memory, so sqlws
// swaps them for small ones. Client messages are tiny, and a frame larger than the
// write buffer goes to the socket directly, so throughput does not suffer.
const (
	connReadBuffer  = 512
	connWriteBuffer = 1024
)

// smallBuffers wraps a ResponseWriter so that Hijack returns small buffers and drops
// every reference to net/http's own, which are then freed once the handler returns.
type smallBuffers struct {
	http.ResponseWriter
}

func (w smallBuffers) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	nc, brw, err := http.NewResponseController(w.ResponseWriter).Hijack()
	if err != nil {
		return nil, nil, err
	}
	if err := brw.Writer.Flush(); err != nil {
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
	return nc, bufio.NewReadWriter(br, bufio.NewWriterSize(nc, connWriteBuffer)), nil
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (w smallBuffers) Unwrap() http.ResponseWriter { return w.ResponseWriter }
