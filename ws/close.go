package ws

import (
	"context"
	stderrors "errors"
	"io"
	"net"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/coder/websocket"
)

// CloseReason says why a connection ended. The set is fixed, so it can label a
// metric without unbounded cardinality.
type CloseReason uint8

// Reasons a connection ends. The first five are the peer's doing; the rest are the
// server's, and each of those is logged once and counted.
const (
	ClosePeer         CloseReason = iota // the peer sent a close frame
	ClosePeerGone                        // EOF, reset or a read error: the peer went away without closing
	CloseTooBig                          // a message over the read limit (1009)
	CloseProtocol                        // a frame that breaks RFC 6455 (1002)
	CloseInvalidUTF8                     // a text message that is not UTF-8 (1007)
	ClosePingTimeout                     // no pong within the ping timeout (1008)
	CloseFlood                           // too many requests whose replies were not read (1008)
	CloseSlowConsumer                    // a frame could not be written within the write timeout (no close frame)
	CloseWriteFailed                     // the socket failed while writing (no close frame)
	CloseShutdown                        // the server is shutting down (1001)
	CloseUnavailable                     // the database was unavailable when the connection opened (1013)
	CloseTokenExpired                    // the connection's token expired and was not replaced (4001)
	CloseRateLimited                     // messages over the rate limit, sustained (1008)
	// NumCloseReasons is how many reasons there are.
	NumCloseReasons
)

var closeReasonNames = [NumCloseReasons]string{
	ClosePeer:         "peer_close",
	ClosePeerGone:     "peer_gone",
	CloseTooBig:       "message_too_big",
	CloseProtocol:     "protocol_error",
	CloseInvalidUTF8:  "invalid_utf8",
	ClosePingTimeout:  "ping_timeout",
	CloseFlood:        "request_flood",
	CloseSlowConsumer: "slow_consumer",
	CloseWriteFailed:  "write_failed",
	CloseShutdown:     "shutdown",
	CloseUnavailable:  "unavailable",
	CloseTokenExpired: "token_expired",
	CloseRateLimited:  "rate_limited",
}

// String is the reason's stable name, as logged and used as a metric label.
func (r CloseReason) String() string {
	if r < NumCloseReasons {
		return closeReasonNames[r]
	}
	return "unknown"
}

// serverInitiated reports whether the server chose to end the connection, as opposed
// to the peer closing or vanishing.
func (r CloseReason) serverInitiated() bool { return r != ClosePeer && r != ClosePeerGone }

// closeDrain bounds how long the server waits, after sending a close frame, for the
// peer to finish: to read the frame, send the rest of a message it was writing, and
// answer with its own close. RFC 6455 has the server close TCP first; clients such as
// Node's ws and browsers wait for that FIN, so it must come promptly. Longer lets a
// peer on a slow link finish; shorter frees the socket sooner.
const closeDrain = 2 * time.Second

// end ends c, once: the first reason wins, and later calls do nothing. A graceful
// reason sends a close frame with code (unless the library already sent one, as it
// does for an oversized or malformed message), lets the peer finish for at most
// closeDrain, then closes the socket; an abrupt one closes the socket at once. It
// blocks until the socket is closed, so callers that must not wait (the watchdog)
// run it on a goroutine of the hub's.
func (c *conn) end(reason CloseReason, code websocket.StatusCode, text string) {
	if !c.ending.CompareAndSwap(false, true) {
		// Someone else is closing: wait for it, so the socket is closed when we return.
		<-c.endDone
		return
	}
	defer close(c.endDone)
	c.hub.closes[reason].Add(1)
	log := c.hub.opts.Logger
	if reason.serverInitiated() {
		if code != 0 {
			log.Info("websocket closed", "conn", c.id, "reason", reason.String(), "code", int(code), "text", text)
		} else {
			log.Info("websocket dropped", "conn", c.id, "reason", reason.String(), "text", text)
		}
	} else {
		log.Debug("websocket ended by peer", "conn", c.id, "reason", reason.String())
	}
	if code == 0 {
		c.ws.CloseNow()
		return
	}
	// A deadline on the socket bounds everything the close can wait for: our own
	// blocked data write (which holds the frame lock the close frame needs), the close
	// frame itself, the blocked read of the connection's goroutine and the wait for
	// the peer's close. The library sets none of its own on the socket.
	c.fc.Conn.SetDeadline(time.Now().Add(closeDrain))
	if reason == CloseProtocol {
		// After a frame that breaks the protocol the stream cannot be parsed any
		// more, so the library's wait for the peer's close frame would fail at once
		// and close with the peer's reply still on its way, which the kernel answers
		// with a reset. Instead: the close frame (unless the library sent one),
		// then FIN, then read and discard whatever comes until the peer closes too.
		// Only the connection's own goroutine ends for this reason, so nothing else
		// reads the socket meanwhile.
		c.fc.writeClose(code, text)
		c.fc.drain()
		c.ws.CloseNow()
		return
	}
	c.ws.Close(code, text)
}

// endAsync is end on a goroutine the hub waits for, for callers that must not block
// (the watchdog, the pump, a request handler queueing a reply). It does nothing once
// the hub is closing: Close then ends every connection itself.
func (c *conn) endAsync(reason CloseReason, code websocket.StatusCode, text string) {
	if c.ending.Load() {
		return
	}
	c.hub.goTracked(func() { c.end(reason, code, text) })
}

// readEnd classifies the error that ended the read loop: what the peer did, or what
// the library refused, and the close code the server answers with (0: none, close at
// once).
func readEnd(err error) (CloseReason, websocket.StatusCode, string) {
	var ce websocket.CloseError
	switch {
	case stderrors.As(err, &ce):
		// The library has answered the peer's close frame and closed the socket.
		return ClosePeer, 0, ""
	case stderrors.Is(err, errRateLimited):
		return CloseRateLimited, websocket.StatusPolicyViolation, "message rate exceeded"
	case stderrors.Is(err, errInvalidUTF8):
		return CloseInvalidUTF8, websocket.StatusInvalidFramePayloadData, "invalid UTF-8"
	case stderrors.Is(err, websocket.ErrMessageTooBig):
		return CloseTooBig, websocket.StatusMessageTooBig, "message too big"
	case stderrors.Is(err, io.EOF), stderrors.Is(err, io.ErrUnexpectedEOF),
		stderrors.Is(err, net.ErrClosed), stderrors.Is(err, syscall.ECONNRESET),
		stderrors.Is(err, syscall.EPIPE), stderrors.Is(err, context.Canceled):
		return ClosePeerGone, 0, ""
	}
	var ne net.Error
	if stderrors.As(err, &ne) && ne.Timeout() {
		return ClosePeerGone, 0, ""
	}
	// What remains is the library refusing a frame: a bad opcode, RSV bits, an
	// unmasked or fragmented control frame, a bad close payload, continuation
	// misuse, an impossible length. For some it has sent 1002 already; for others
	// (an unmasked frame, a negative length) nothing, and the peer would wait forever.
	return CloseProtocol, websocket.StatusProtocolError, "protocol error"
}

// closeCounts is one counter per reason.
type closeCounts [NumCloseReasons]atomic.Uint64
