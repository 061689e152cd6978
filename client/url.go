package client

import (
	"fmt"
	"math/rand/v2"
	"net/url"
	"time"
)

// WebSocketURL returns the WebSocket endpoint for s: a ws:// or wss:// URL is kept
// as it is (a proxy may serve the feed at any path); an http:// or https:// URL
// becomes ws:// or wss://, and when it names the server's root, /ws is appended,
// because that is where sqlws serves the feed and "/" (the dashboard) cannot
// upgrade. Any fragment is dropped.
func WebSocketURL(s string) (string, error) {
	u, err := url.Parse(s)
	if err != nil {
		return "", fmt.Errorf("sqlws client: bad URL: %w", err)
	}
	switch u.Scheme {
	case "ws", "wss":
	case "http", "https":
		u.Scheme = "ws" + u.Scheme[len("http"):]
		if u.Path == "" || u.Path == "/" {
			u.Path, u.RawPath = "/ws", ""
		}
	default:
		return "", fmt.Errorf("sqlws client: unsupported URL %q: want ws://, wss://, http:// or https://", s)
	}
	if u.Host == "" {
		return "", fmt.Errorf("sqlws client: URL %q has no host", s)
	}
	u.Fragment, u.RawFragment = "", ""
	return u.String(), nil
}

// fullJitter returns the wait before reconnect attempt n (1-based): uniformly random
// in [0, min(maxDelay, minDelay·2^(n-1))). Random, rather than exactly exponential,
// so that a thousand clients dropped by one server restart do not come back in
// lockstep.
func fullJitter(n int, minDelay, maxDelay time.Duration) time.Duration {
	ceil := minDelay
	for i := 1; i < n && ceil < maxDelay; i++ {
		ceil *= 2
	}
	ceil = min(ceil, maxDelay)
	if ceil <= 0 {
		return 0
	}
	return rand.N(ceil)
}
