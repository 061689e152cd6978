package web

import (
	"log/slog"
	"math"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/sqlws/sqlws/errors"
)

// maxLimiters bounds the per-address limiters kept: past it, idle ones are swept
// early, and if none is idle a new address shares one overflow limiter, so a flood
// from many addresses costs bounded memory (and is limited as one client).
const maxLimiters = 100_000

// ipLimiter is a token bucket per client address.
type ipLimiter struct {
	limit rate.Limit
	burst int
	// loopback peers (local tools, a reverse proxy on the same host, which limits
	// its own clients) are not limited unless limitLoopback.
	limitLoopback bool
	// trusted are the proxies whose X-Forwarded-For is believed: a request from one
	// is limited as the client it forwarded for.
	trusted []*net.IPNet

	mu        sync.Mutex
	m         map[string]*limiterEntry
	overflow  *rate.Limiter
	lastSweep time.Time
}

type limiterEntry struct {
	lim  *rate.Limiter
	last time.Time
}

func newIPLimiter(perSecond float64, burst int, limitLoopback bool, trusted []*net.IPNet) *ipLimiter {
	if burst < 1 {
		burst = max(1, int(math.Ceil(perSecond)))
	}
	return &ipLimiter{limit: rate.Limit(perSecond), burst: burst, limitLoopback: limitLoopback, trusted: trusted,
		m: map[string]*limiterEntry{}, overflow: rate.NewLimiter(rate.Limit(perSecond), burst)}
}

// ClientIP is the address a request is limited as: its peer's, or, when the peer
// is one of trusted, the last address in X-Forwarded-For that is not a trusted
// proxy (the client as the first trusted proxy saw it; what came before that is the
// client's own word). forwarded reports the latter.
func ClientIP(remoteAddr string, xff []string, trusted []*net.IPNet) (ip net.IP, forwarded bool) {
	host, _, err := net.SplitHostPort(remoteAddr)
	if err != nil {
		host = remoteAddr
	}
	ip = net.ParseIP(host)
	if ip == nil || !inNets(ip, trusted) {
		return ip, false
	}
	var hops []string
	for _, h := range xff {
		hops = append(hops, strings.Split(h, ",")...)
	}
	for i := len(hops) - 1; i >= 0; i-- {
		hop := net.ParseIP(strings.TrimSpace(hops[i]))
		if hop == nil {
			break // a malformed hop: believe nothing before it
		}
		if !inNets(hop, trusted) {
			return hop, true
		}
	}
	return ip, false
}

func inNets(ip net.IP, nets []*net.IPNet) bool {
	for _, n := range nets {
		if n.Contains(ip) {
			return true
		}
	}
	return false
}

// allow takes a token for the request's client, or returns how long until one is
// free.
func (l *ipLimiter) allow(remoteAddr string, xff []string, now time.Time) (bool, time.Duration) {
	ip, forwarded := ClientIP(remoteAddr, xff, l.trusted)
	host := remoteAddr
	if ip != nil {
		host = ip.String()
	}
	if ip != nil && ip.IsLoopback() && !forwarded && !l.limitLoopback {
		return true, 0
	}
	l.mu.Lock()
	e, ok := l.m[host]
	if !ok {
		if len(l.m) >= maxLimiters || now.Sub(l.lastSweep) > time.Minute {
			l.sweep(now)
		}
		if len(l.m) < maxLimiters {
			e = &limiterEntry{lim: rate.NewLimiter(l.limit, l.burst)}
			l.m[host] = e
		}
	}
	lim := l.overflow
	if e != nil {
		e.last = now
		lim = e.lim
	}
	l.mu.Unlock()
	r := lim.ReserveN(now, 1)
	if d := r.DelayFrom(now); d > 0 {
		r.CancelAt(now) // a refused request spends no token
		return false, d
	}
	return true, 0
}

// sweep forgets limiters idle long enough to have refilled: a new one is the same.
func (l *ipLimiter) sweep(now time.Time) {
	l.lastSweep = now
	full := time.Duration(float64(l.burst)/float64(l.limit)*float64(time.Second)) + time.Second
	for k, e := range l.m {
		if now.Sub(e.last) > full {
			delete(l.m, k)
		}
	}
}

// middleware answers a request over its address's rate 429 rate_limited with
// Retry-After (whole seconds, at least 1), before any work.
func (l *ipLimiter) middleware(log *slog.Logger) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if ok, wait := l.allow(r.RemoteAddr, r.Header.Values("X-Forwarded-For"), time.Now()); !ok {
				w.Header().Set("Retry-After", strconv.Itoa(max(1, int(math.Ceil(wait.Seconds())))))
				writeError(w, r, log, errors.WithCode(errors.RateLimited, errors.CodeRateLimited,
					"too many requests from your address; retry after the time in Retry-After"))
				return
			}
			next.ServeHTTP(w, r)
		})
	}
}
