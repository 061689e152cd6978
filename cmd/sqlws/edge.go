package main

import (
	"cmp"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/sqlws/sqlws/auth"
	"github.com/sqlws/sqlws/broker"
	"github.com/sqlws/sqlws/fanout"
	"github.com/sqlws/sqlws/rules"
	"github.com/sqlws/sqlws/web"
	"github.com/sqlws/sqlws/ws"
)

// edgeConfig is `sqlws edge`'s flags.
type edgeConfig struct {
	natsURL        string
	nats           natsConfig
	addr           string
	source         string
	pingInterval   time.Duration
	pingTimeout    time.Duration
	writeTimeout   time.Duration
	readLimit      int64
	windowChanges  int
	windowBytes    int
	memoryBudget   int64
	pumps          int
	maxConns       int
	origins        string
	logLevel       string
	readyLag       int64
	headWait       time.Duration
	requestTimeout time.Duration
	idleTimeout    time.Duration
	security       securityConfig // the same authentication, rules, limits and TLS as serve (security.go)
}

func edgeFlags(fs *flag.FlagSet, c *edgeConfig) {
	fs.StringVar(&c.natsURL, "nats", "", "NATS server URL (nats://HOST:4222) whose JetStream carries the source's changes")
	natsFlags(fs, &c.nats)
	fs.StringVar(&c.addr, "addr", "127.0.0.1:8081", "listen address; port 0 picks a free port")
	fs.StringVar(&c.source, "source", "", "the source node's URL (http://HOST:PORT): REST, /api/changes and the dashboard are proxied to it; without it they answer 503")
	fs.DurationVar(&c.pingInterval, "ping-interval", 30*time.Second, "WebSocket ping interval")
	fs.DurationVar(&c.pingTimeout, "ping-timeout", 15*time.Second, "close a peer whose pong takes longer")
	fs.DurationVar(&c.writeTimeout, "write-timeout", 10*time.Second, "close a client that cannot take a frame within this")
	fs.Int64Var(&c.readLimit, "read-limit", 64<<10, "largest WebSocket client message in bytes (larger: close 1009)")
	fs.IntVar(&c.windowChanges, "window-changes", 100_000, "changes kept in memory for fan-out")
	fs.IntVar(&c.windowBytes, "window-bytes", 64<<20, "bytes of encoded changes kept in memory for fan-out (at most a quarter of --memory-budget)")
	fs.Int64Var(&c.memoryBudget, "memory-budget", fanout.DefaultMemoryBudget, "bytes for the fan-out window and the JetStream pages shared by subscribers catching up")
	fs.IntVar(&c.pumps, "pumps", 0, "goroutines writing live frames (0: half the cores, at least 1)")
	fs.IntVar(&c.maxConns, "max-conns", 0, "most open client connections; more are answered 503 (0: the descriptor limit less a reserve)")
	fs.StringVar(&c.origins, "allowed-origins", "", "comma-separated extra origins (host[:port] or scheme://host[:port] patterns as path.Match: * for any characters) allowed to open WebSockets and to call the proxied REST across origins (CORS); same origin is always allowed")
	fs.StringVar(&c.logLevel, "log-level", "info", "debug, info, warn or error")
	fs.Int64Var(&c.readyLag, "ready-lag", 10_000, "/readyz answers 503 while the edge is more than this many changes behind JetStream")
	fs.DurationVar(&c.headWait, "head-wait", 5*time.Second, "how long a subscribe whose since is beyond JetStream's last sequence waits for the publisher before reset future (a client may have read that seq from the source's REST)")
	fs.DurationVar(&c.requestTimeout, "request-timeout", 30*time.Second, "longest a proxied REST request may take to arrive and be answered")
	fs.DurationVar(&c.idleTimeout, "idle-timeout", 30*time.Second, "close an idle keep-alive HTTP connection after this")
	securityFlags(fs, &c.security)
}

// runEdge runs `sqlws edge`: WebSocket clients served from the JetStream stream a
// `sqlws serve --publish` fills, with the same protocol and guarantees as the
// source (docs/scaling.md).
func runEdge(ctx context.Context, args []string, stdout io.Writer) error {
	var c edgeConfig
	fs := flag.NewFlagSet("edge", flag.ContinueOnError)
	edgeFlags(fs, &c)
	fs.Usage = func() {
		envUsage(fs, fs.Output(), "Usage: sqlws edge --nats nats://HOST:4222 [flags]\n\nEvery flag can also be set by the environment variable shown (the flag wins).\n\n")
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if err := applyEnv(fs); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments: %v", fs.Args())
	}
	if c.natsURL == "" {
		return fmt.Errorf("--nats is required")
	}
	if err := broker.ValidateStreamName(c.nats.stream); err != nil {
		return fmt.Errorf("--nats-stream: %w", err)
	}
	var source *url.URL
	if c.source != "" {
		u, err := url.Parse(c.source)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("--source %q: want http://HOST:PORT", c.source)
		}
		source = u
	}
	log, err := newLogger(c.logLevel)
	if err != nil {
		return err
	}
	log = log.With("node", "edge")
	slog.SetDefault(log)
	// The access checks serve makes: an edge serves the same rows, so it verifies
	// tokens identically and may not be exposed without them either.
	acc, err := c.security.settle(ctx, c.addr, log, "read every row")
	if err != nil {
		return err
	}
	verifier, proxies, cert := acc.verifier, acc.proxies, acc.cert
	// The edge has no database to check the rules' columns against; the source
	// checks the same file against its schema.
	ruleSet, err := loadRules(c.security.rulesPath, nil, log)
	if err != nil {
		return err
	}
	liveRules := rules.NewLive(ruleSet)
	if verifier != nil {
		log.Info("authentication on", "algorithms", strings.Join(verifier.Methods(), ","), "rules", cmp.Or(c.security.rulesPath, "none (any valid token may read everything)"))
	}

	// The edge's WebSocket ends a connection whose token expires (4001) and takes
	// in-place refreshes ({"type":"auth"}) as serve's does.
	var verify func(string) (*auth.Identity, error)
	if verifier != nil {
		verify = verifier.Verify
	}

	nc, err := c.nats.connect(c.natsURL, "sqlws edge", log)
	if err != nil {
		return err
	}
	defer nc.Close()

	tcpln, err := net.Listen("tcp", c.addr)
	if err != nil {
		return err
	}
	ln := web.NewListener(tcpln, web.ListenerOptions{MaxConns: c.maxConns, MaxConnsPerIP: c.security.maxConnsPerIP, TrustedProxies: proxies, Logger: log})
	edge, err := broker.NewEdge(nc, broker.EdgeOptions{
		Stream: c.nats.stream,
		Window: fanout.Options{WindowChanges: c.windowChanges, WindowBytes: c.windowBytes, MemoryBudget: c.memoryBudget},
		Hub: ws.Options{PingInterval: c.pingInterval, PingTimeout: c.pingTimeout, WriteTimeout: c.writeTimeout,
			ReadLimit: c.readLimit, OriginPatterns: splitList(c.origins), Pumps: c.pumps, Logger: log, Verify: verify},
		HeadWait: c.headWait, ReadyLag: c.readyLag, Listener: ln, Logger: log,
	})
	if err != nil {
		ln.Close()
		return err
	}
	srv := &http.Server{
		Handler: edgeRouter(edge, source, c.requestTimeout, log, web.Config{Logger: log,
			Auth: verifier, Rules: liveRules, LoopbackBind: isLoopback(tcpln.Addr()), AllowedHosts: splitList(c.security.allowedHosts),
			RESTRate: c.security.restRate, RESTBurst: c.security.restBurst, TrustedProxies: proxies, AllowedOrigins: splitList(c.origins),
			WebSocketEnforcesRules: true}),
		ReadHeaderTimeout: min(10*time.Second, c.requestTimeout),
		ReadTimeout:       c.requestTimeout,
		WriteTimeout:      c.requestTimeout,
		IdleTimeout:       c.idleTimeout,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}

	runCtx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { edge.Run(runCtx) })
	wg.Go(func() {
		followMemoryLimit(runCtx, c.memoryBudget, func() int {
			if h := edge.Hub(); h != nil {
				return h.Stats().Connections
			}
			return 0
		})
	})
	var served net.Listener = ln
	scheme := "http://"
	hupActions := []func(){reloadRules(c.security.rulesPath, liveRules, nil, log)}
	if cert != nil {
		served, scheme = serveTLS(ln, cert), "https://"
		hupActions = append(hupActions, reloadCertificate(cert, log))
	}
	hup := notifyHUP()
	wg.Go(func() { onHUP(runCtx, hup, log, hupActions...) })
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(served) }()

	url := scheme + ln.Addr().String()
	// The same single stdout line as serve: scripts wait for it. Ready is /readyz.
	fmt.Fprintf(stdout, "sqlws listening on %s\n", url)
	log.Info("edge serving", "addr", url, "nats", c.natsURL, "nats_stream", c.nats.stream, "source", c.source)

	var runErr error
	select {
	case <-ctx.Done():
		log.Info("shutting down")
	case runErr = <-serveErr:
	}
	// As serve: REST finishes while WebSockets close with 1001 (the edge's Run does
	// that when cancelled), each with its own deadline.
	shutDone := make(chan struct{})
	go func() {
		defer close(shutDone)
		sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer scancel()
		srv.Shutdown(sctx)
	}()
	cancel()
	wg.Wait()
	<-shutDone
	if runErr == http.ErrServerClosed {
		runErr = nil
	}
	return runErr
}

// edgeRouter serves /ws from the edge, its health, readiness and metrics, and
// proxies everything else to the source (REST, /api/changes, the dashboard, whose
// page then opens its WebSocket on this edge) — or, without a source, answers 503
// saying where those are. sec's protection is serve's: the Host check and CORS on
// every route, the rate limit and the token check on /ws and /api/ (a proxied REST
// request is checked here and again by the source, with the same keys).
//
// The edge's WebSocket is the same ws.Hub as serve's, which applies the request's
// rules.Access to every subscription (sec sets WebSocketEnforcesRules).
func edgeRouter(edge *broker.Edge, source *url.URL, timeout time.Duration, log *slog.Logger, sec web.Config) http.Handler {
	all, data := web.Protection(sec)
	mux := http.NewServeMux()
	mux.Handle("/ws", data(edge))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		if err := edge.Ready(r.Context()); err != nil {
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintf(w, "not ready: %v\n", err)
			return
		}
		st, _ := edge.Status(r.Context())
		fmt.Fprintf(w, "ready: at seq %d of %d (lag %d)\n", st.Delivered, st.Head, st.Lag)
	})
	mux.Handle("GET /metrics", edge.MetricsHandler())
	if source == nil {
		unserved := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			edgeError(w, http.StatusServiceUnavailable, "this is a sqlws edge: it serves /ws only; REST, /api/changes and the dashboard are served by the source node (start the edge with --source URL to proxy them)")
		})
		mux.Handle("/api/", data(unserved))
		mux.Handle("/", unserved)
		return all(mux)
	}
	proxy := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(source)
			pr.SetXForwarded()
		},
		Transport: &http.Transport{
			DialContext:           (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
			ResponseHeaderTimeout: timeout,
			MaxIdleConnsPerHost:   64,
			IdleConnTimeout:       90 * time.Second,
		},
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			log.Warn("proxy to the source failed", "method", r.Method, "path", r.URL.Path, "source", source.String(), "err", err)
			w.Header().Set("Retry-After", "1")
			edgeError(w, http.StatusBadGateway, "the source node "+source.String()+" did not answer; retry")
		},
	}
	mux.Handle("/api/", data(proxy))
	mux.Handle("/", proxy)
	return all(mux)
}

// edgeError writes sqlws's error envelope with code unavailable.
func edgeError(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(map[string]any{"error": map[string]string{"code": "unavailable", "message": msg}})
}
