package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/sqlws/sqlws/auth"
	"github.com/sqlws/sqlws/capture"
	"github.com/sqlws/sqlws/query"
	"github.com/sqlws/sqlws/rules"
)

// securityConfig is serve's access-control flags (docs/security.md).
type securityConfig struct {
	insecure       bool
	jwtSecretFile  string
	jwtPublicKey   string
	jwtAudience    string
	jwtIssuer      string
	adminRole      string
	rulesPath      string
	allowedHosts   string
	restRate       float64
	restBurst      int
	maxConnsPerIP  int
	trustedProxies string
	tlsCert        string
	tlsKey         string
}

// secretEnv holds the HS256 secret itself, for deployments that inject secrets as
// variables. It is deliberately not a flag: a flag's value shows in ps.
const secretEnv = "SQLWS_JWT_SECRET"

func securityFlags(fs *flag.FlagSet, c *securityConfig) {
	fs.BoolVar(&c.insecure, "insecure", false, "allow a non-loopback --addr without authentication (anyone who reaches the port may read and write everything)")
	fs.StringVar(&c.jwtSecretFile, "jwt-secret-file", "", "file holding the HS256 secret that signs access tokens (at least 32 bytes; or the secret itself in "+secretEnv+")")
	fs.StringVar(&c.jwtPublicKey, "jwt-public-key", "", "PEM file of the RSA (RS256) or P-256 ECDSA (ES256) public key that verifies access tokens")
	fs.StringVar(&c.jwtAudience, "jwt-audience", "", "when set, a token's aud must include this")
	fs.StringVar(&c.jwtIssuer, "jwt-issuer", "", "when set, a token's iss must be this")
	fs.StringVar(&c.adminRole, "admin-role", auth.DefaultAdminRole, "a token whose role claim is this bypasses the rules")
	fs.StringVar(&c.allowedHosts, "allowed-hosts", "", "comma-separated host names (*.example.com for subdomains) the Host header may name; on a loopback --addr, loopback names are always allowed and no others by default (DNS rebinding)")
	fs.Float64Var(&c.restRate, "rest-rate", 100, "REST requests (and WebSocket upgrades) per second per client address; over it 429 with Retry-After (0: no limit; loopback clients are not limited)")
	fs.IntVar(&c.restBurst, "rest-burst", 200, "REST requests a client address may make at once before --rest-rate applies")
	fs.IntVar(&c.maxConnsPerIP, "max-conns-per-ip", 256, "most open connections from one client address; more are answered 503 (0: no limit; loopback clients are not limited)")
	fs.StringVar(&c.trustedProxies, "trusted-proxies", "", "comma-separated addresses or CIDRs of reverse proxies whose X-Forwarded-For names the client for --rest-rate (and which --max-conns-per-ip does not cap)")
	fs.StringVar(&c.tlsCert, "tls-cert", "", "PEM certificate (chain) file: serve https and wss instead of http and ws; re-read on SIGHUP (with --tls-key)")
	fs.StringVar(&c.tlsKey, "tls-key", "", "PEM private key file of --tls-cert; re-read on SIGHUP")
	fs.StringVar(&c.rulesPath, "rules", "", "JSON file of per-table read and write rules, reloaded on SIGHUP (default with authentication: any valid token may read and write everything)")
}

// verifier builds the token verifier from the flags; nil when no key is configured
// (authentication off).
func (c *securityConfig) verifier() (*auth.Verifier, error) {
	var cfg auth.Config
	cfg.Audience, cfg.Issuer, cfg.AdminRole = c.jwtAudience, c.jwtIssuer, c.adminRole
	if c.jwtSecretFile != "" {
		s, err := auth.ReadSecretFile(c.jwtSecretFile)
		if err != nil {
			return nil, fmt.Errorf("--jwt-secret-file: %w", err)
		}
		cfg.Secret = s
	} else if s, ok := os.LookupEnv(secretEnv); ok {
		cfg.Secret = []byte(s)
		if len(s) == 0 {
			return nil, fmt.Errorf("%s is set but empty", secretEnv)
		}
	}
	if c.jwtPublicKey != "" {
		b, err := os.ReadFile(c.jwtPublicKey)
		if err != nil {
			return nil, fmt.Errorf("--jwt-public-key: %w", err)
		}
		cfg.PublicKeyPEM = b
	}
	if len(cfg.Secret) == 0 && len(cfg.PublicKeyPEM) == 0 {
		if c.rulesPath != "" || c.jwtAudience != "" || c.jwtIssuer != "" {
			return nil, fmt.Errorf("--rules, --jwt-audience and --jwt-issuer need authentication: give --jwt-secret-file (or %s) or --jwt-public-key", secretEnv)
		}
		return nil, nil
	}
	return auth.NewVerifier(cfg)
}

// access is what the security flags come to: settled before a node connects to
// anything, so one that must not start changes nothing.
type access struct {
	verifier *auth.Verifier // nil: authentication off
	proxies  []*net.IPNet
	cert     *certHolder // nil: plain HTTP
	exposed  bool        // --insecure on a non-loopback address
}

// settle verifies the flags for a node listening on addr; risk is what an insecure
// exposure allows, for the warning. TLS does not count towards a safe exposure: it
// keeps the traffic private, but without authentication whoever reaches the port
// still has everything.
func (c *securityConfig) settle(ctx context.Context, addr string, log *slog.Logger, risk string) (access, error) {
	var a access
	var err error
	if a.verifier, err = c.verifier(); err != nil {
		return a, err
	}
	if a.proxies, err = c.proxies(); err != nil {
		return a, err
	}
	tlsOn, err := c.tlsOn()
	if err != nil {
		return a, err
	}
	if tlsOn {
		if a.cert, err = loadCertificate(c.tlsCert, c.tlsKey); err != nil {
			return a, err
		}
	}
	if a.exposed, err = checkExposure(ctx, addr, a.verifier != nil, c.insecure); err != nil {
		return a, err
	}
	if a.exposed {
		log.Warn("INSECURE: serving without authentication on a non-loopback address (--insecure): anyone who can reach it may "+risk, "addr", addr)
	}
	return a, nil
}

// checkExposure refuses to serve without authentication on an address other
// machines can reach, unless --insecure: sqlws then answers anyone who reaches the
// port with every row and every write. addr is checked as given, before anything
// opens the database; a host name counts as loopback only if all its addresses are.
func checkExposure(ctx context.Context, addr string, authOn, insecure bool) (exposed bool, err error) {
	if authOn {
		return false, nil
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false, fmt.Errorf("--addr %q: %w", addr, err)
	}
	loopback := false
	switch ip := net.ParseIP(host); {
	case host == "":
		loopback = false // every interface
	case ip != nil:
		loopback = ip.IsLoopback()
	case host == "localhost":
		loopback = true
	default:
		rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		ips, err := net.DefaultResolver.LookupIPAddr(rctx, host)
		if err != nil {
			return false, fmt.Errorf("--addr %q: %w", addr, err)
		}
		loopback = len(ips) > 0
		for _, ip := range ips {
			loopback = loopback && ip.IP.IsLoopback()
		}
	}
	if loopback {
		return false, nil
	}
	if !insecure {
		return false, fmt.Errorf("refusing to serve %s without authentication: anyone who can reach it could read and change every row. "+
			"Configure authentication with --jwt-secret-file FILE (or %s) or --jwt-public-key FILE, and optionally --rules FILE (see docs/security.md); "+
			"or bind a loopback address (--addr 127.0.0.1:8080); or, to serve it unprotected anyway, add --insecure", addr, secretEnv)
	}
	return true, nil
}

// proxies parses --trusted-proxies: addresses (a single host) or CIDRs.
func (c *securityConfig) proxies() ([]*net.IPNet, error) {
	var out []*net.IPNet
	for _, s := range splitList(c.trustedProxies) {
		if ip := net.ParseIP(s); ip != nil {
			bits := 8 * len(ip.To16())
			if ip.To4() != nil {
				ip, bits = ip.To4(), 32
			}
			out = append(out, &net.IPNet{IP: ip, Mask: net.CIDRMask(bits, bits)})
			continue
		}
		_, n, err := net.ParseCIDR(s)
		if err != nil {
			return nil, fmt.Errorf("--trusted-proxies: %q is neither an address nor a CIDR", s)
		}
		out = append(out, n)
	}
	return out, nil
}

// isLoopback reports whether a listener's address is a loopback address.
func isLoopback(a net.Addr) bool {
	ta, ok := a.(*net.TCPAddr)
	return ok && ta.IP.IsLoopback()
}

// loadRules loads the rules file (AllowAll without one) and checks it against the
// tracked tables: a rule naming a column its table lacks is an error, a table the
// schema lacks a warning (it may be created later). Without a schema (an edge, which
// has no database; its source checks the same file) only the file itself is checked.
func loadRules(path string, schema *capture.Schema, log *slog.Logger) (*rules.Set, error) {
	if path == "" {
		return rules.AllowAll(), nil
	}
	s, err := rules.Load(path)
	if err != nil || schema == nil {
		return s, err
	}
	err = s.Check(schema.Tracked, func(table string, where query.Expr) error {
		t, ok := schema.Table(table)
		if !ok {
			return nil // dropped meanwhile
		}
		// Both readers of a rule: the SQL of REST's reads and writes, and the
		// predicate the change feed evaluates on row images.
		if _, _, err := query.WhereSQL(where, t); err != nil {
			return err
		}
		_, err := query.CompilePredicate(where, t)
		return err
	})
	if err != nil {
		return nil, err
	}
	for _, t := range s.Named() {
		if !schema.Tracked(t) {
			log.Warn("the rules name a table sqlws does not capture (yet)", "table", t)
		}
	}
	return s, nil
}

// notifyHUP starts catching SIGHUP. It is called before the server says it is
// listening, so a SIGHUP sent as soon as it is ready is never lost (or, with SIGHUP's
// default action, fatal).
func notifyHUP() chan os.Signal {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	return hup
}

// onHUP runs each action (nil ones skipped) on every SIGHUP caught on hup
// (notifyHUP) until ctx ends: the rules file and the TLS certificate are both re-read
// on the same signal.
func onHUP(ctx context.Context, hup chan os.Signal, log *slog.Logger, actions ...func()) {
	defer signal.Stop(hup)
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
		}
		ran := false
		for _, a := range actions {
			if a != nil {
				a()
				ran = true
			}
		}
		if !ran {
			log.Info("SIGHUP: nothing to reload (no --rules file, no --tls-cert)")
		}
	}
}

// reloadRules is the SIGHUP action for the rules file. A file that does not load
// keeps the rules in force, and the log says why. schema nil (an edge, which has no
// database) skips the check of the rules' columns. Nil without a rules file.
func reloadRules(path string, live *rules.Live, schema *capture.Schema, log *slog.Logger) func() {
	if path == "" {
		return nil
	}
	return func() {
		s, err := loadRules(path, schema, log)
		if err != nil {
			log.Error("rules not reloaded; the previous rules stay in force", "file", path, "err", err)
			return
		}
		live.Store(s)
		log.Info("rules reloaded", "file", path, "tables", len(s.Named()))
	}
}
