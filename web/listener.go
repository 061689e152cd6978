package web

import (
	"errors"
	"log/slog"
	"net"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// maxAcceptBackoff caps the wait between accepts while descriptors are exhausted:
// long enough not to spin, short enough that a waiting client hears 503 promptly.
const maxAcceptBackoff = 250 * time.Millisecond

// ListenerOptions configure NewListener.
type ListenerOptions struct {
	// MaxConns caps open client connections (HTTP and WebSocket alike). Zero derives it
	// from the process's descriptor limit less Reserve, so the server never runs itself
	// out of descriptors by accepting. Over the cap a new connection is answered 503
	// and closed; connections already open are unaffected.
	MaxConns int
	// Reserve is how many descriptors are kept free for everything that is not a
	// client connection: SQLite's database, WAL and shared-memory files for every
	// pooled connection, the WAL watch, logs. Default 64.
	Reserve int
	// MaxConnsPerIP caps open connections from one client address (0: no cap); over
	// it a new connection is answered 503 and closed, the address's others are
	// unaffected. Loopback clients are not capped unless LimitLoopback: a reverse
	// proxy on the same host carries many clients' connections and limits them itself.
	MaxConnsPerIP int
	LimitLoopback bool
	// TrustedProxies are not capped per address either: each carries many clients
	// (whose own addresses only its X-Forwarded-For knows).
	TrustedProxies []*net.IPNet
	Logger         *slog.Logger
}

// Listener accepts connections for the HTTP server without ever letting clients
// exhaust the process's file descriptors, and without spinning when something else
// has. It counts open connections and refuses those over MaxConns with a short 503;
// when accept itself fails for lack of descriptors it frees a spare descriptor it
// holds for the purpose, accepts and refuses the waiting connection (so the client
// gets an answer instead of hanging in the backlog), and backs off, logging once per
// episode rather than once per failed accept.
type Listener struct {
	net.Listener
	max     int64
	open    atomic.Int64
	refused atomic.Uint64
	log     *slog.Logger

	perIP         int
	limitLoopback bool
	trusted       []*net.IPNet
	ipMu          sync.Mutex
	byIP          map[string]int // open connections per capped client address

	mu      sync.Mutex
	spare   *os.File // released to make room for one accept when descriptors run out
	closed  chan struct{}
	closeMu sync.Once
}

// NewListener wraps ln.
func NewListener(ln net.Listener, opts ListenerOptions) *Listener {
	if opts.Reserve <= 0 {
		opts.Reserve = 64
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	l := &Listener{Listener: ln, log: opts.Logger, closed: make(chan struct{}),
		perIP: opts.MaxConnsPerIP, limitLoopback: opts.LimitLoopback, trusted: opts.TrustedProxies, byIP: map[string]int{}}
	l.max = int64(opts.MaxConns)
	if l.max <= 0 {
		l.max = int64(fdLimit() - opts.Reserve)
		if l.max < 16 {
			l.max = 16
		}
	}
	l.spare, _ = os.Open(os.DevNull)
	return l
}

// MaxConns is the connection cap in force.
func (l *Listener) MaxConns() int { return int(l.max) }

// Open is the number of client connections open now.
func (l *Listener) Open() int { return int(l.open.Load()) }

// Refused is the number of connections refused so far.
func (l *Listener) Refused() uint64 { return l.refused.Load() }

// Accept returns the next connection the server may serve.
func (l *Listener) Accept() (net.Conn, error) {
	var backoff time.Duration
	for {
		c, err := l.Listener.Accept()
		if err == nil {
			if backoff > 0 {
				l.log.Info("accepting connections again")
				backoff = 0
			}
			if l.open.Load() >= l.max {
				l.refused.Add(1)
				refuse(c, "too many connections")
				continue
			}
			ip, ok := l.takeIP(c)
			if !ok {
				l.refused.Add(1)
				refuseWith(c, refusalPerIP)
				continue
			}
			l.open.Add(1)
			return &countedConn{Conn: c, l: l, ip: ip}, nil
		}
		if !isOutOfFDs(err) {
			return nil, err
		}
		if backoff == 0 {
			l.log.Warn("out of file descriptors: refusing new connections until some close",
				"err", err, "open_connections", l.open.Load(), "max_conns", l.max)
			backoff = 5 * time.Millisecond
		} else {
			backoff = min(2*backoff, maxAcceptBackoff)
		}
		l.refuseOne()
		select {
		case <-l.closed:
			return nil, net.ErrClosed
		case <-time.After(backoff):
		}
	}
}

// takeIP counts c against its address's cap and returns the address it counted
// ("" when not capped); ok is false when the address is at its cap.
func (l *Listener) takeIP(c net.Conn) (string, bool) {
	if l.perIP <= 0 {
		return "", true
	}
	ta, isTCP := c.RemoteAddr().(*net.TCPAddr)
	if !isTCP || ta.IP.IsLoopback() && !l.limitLoopback || inNets(ta.IP, l.trusted) {
		return "", true
	}
	ip := ta.IP.String()
	l.ipMu.Lock()
	defer l.ipMu.Unlock()
	if l.byIP[ip] >= l.perIP {
		return "", false
	}
	l.byIP[ip]++
	return ip, true
}

// releaseIP gives back a place of address ip.
func (l *Listener) releaseIP(ip string) {
	if ip == "" {
		return
	}
	l.ipMu.Lock()
	if l.byIP[ip]--; l.byIP[ip] <= 0 {
		delete(l.byIP, ip)
	}
	l.ipMu.Unlock()
}

// refuseOne frees the spare descriptor, accepts one waiting connection into it and
// refuses it, then takes the spare again.
func (l *Listener) refuseOne() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.spare == nil {
		return
	}
	l.spare.Close()
	l.spare = nil
	if tl, ok := l.Listener.(*net.TCPListener); ok {
		// Only a connection already queued: a deadline already past would fail before
		// even trying, so give the one attempt a moment.
		tl.SetDeadline(time.Now().Add(5 * time.Millisecond))
		if c, err := tl.Accept(); err == nil {
			l.refused.Add(1)
			refuse(c, "out of file descriptors")
		}
		tl.SetDeadline(time.Time{})
	}
	l.spare, _ = os.Open(os.DevNull)
}

// Close stops accepting.
func (l *Listener) Close() error {
	l.closeMu.Do(func() { close(l.closed) })
	l.mu.Lock()
	if l.spare != nil {
		l.spare.Close()
		l.spare = nil
	}
	l.mu.Unlock()
	return l.Listener.Close()
}

// refusal is what a refused connection reads: a complete HTTP response in the error
// envelope, so a client (or a WebSocket handshake) sees why.
const refusalBody = `{"error":{"code":"unavailable","message":"the server has too many connections; retry"}}`

var refusal = []byte("HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nRetry-After: 1\r\n" +
	"Connection: close\r\nContent-Length: " + strconv.Itoa(len(refusalBody)) + "\r\n\r\n" + refusalBody)

const refusalPerIPBody = `{"error":{"code":"unavailable","message":"too many connections from your address; close some or retry later"}}`

var refusalPerIP = []byte("HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nRetry-After: 1\r\n" +
	"Connection: close\r\nContent-Length: " + strconv.Itoa(len(refusalPerIPBody)) + "\r\n\r\n" + refusalPerIPBody)

func refuse(c net.Conn, _ string) { refuseWith(c, refusal) }

// refuseWith writes a refusal response (bounded: the client may not read) and closes.
func refuseWith(c net.Conn, resp []byte) {
	c.SetWriteDeadline(time.Now().Add(100 * time.Millisecond))
	c.Write(resp)
	c.Close()
}

func isOutOfFDs(err error) bool {
	return errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE)
}

// countedConn gives back its place when closed, once however often Close is called.
type countedConn struct {
	net.Conn
	l      *Listener
	ip     string // the capped address it counts against, if any
	closed atomic.Bool
}

func (c *countedConn) Close() error {
	if c.closed.CompareAndSwap(false, true) {
		c.l.open.Add(-1)
		c.l.releaseIP(c.ip)
	}
	return c.Conn.Close()
}

// PlainConn is the accepted socket itself: the wrapper passes bytes through
// untouched, so the WebSocket layer may write to the socket directly.
func (c *countedConn) PlainConn() net.Conn { return c.Conn }
