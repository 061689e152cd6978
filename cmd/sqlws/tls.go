package main

import (
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"sync/atomic"
)

// certHolder is the serving certificate, swapped whole on reload: each handshake
// reads the pair in force when it starts, so a renewal reaches new connections
// without a restart and open ones keep theirs.
type certHolder struct {
	certFile, keyFile string
	cur               atomic.Pointer[tls.Certificate]
}

// loadCertificate reads the pair, refusing one that does not parse or whose key
// does not match its certificate.
func loadCertificate(certFile, keyFile string) (*certHolder, error) {
	h := &certHolder{certFile: certFile, keyFile: keyFile}
	if err := h.reload(); err != nil {
		return nil, err
	}
	return h, nil
}

// reload re-reads the files; on error the certificate in force stays.
func (h *certHolder) reload() error {
	c, err := tls.LoadX509KeyPair(h.certFile, h.keyFile)
	if err != nil {
		return fmt.Errorf("--tls-cert %s / --tls-key %s: %w", h.certFile, h.keyFile, err)
	}
	h.cur.Store(&c)
	return nil
}

func (h *certHolder) getCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return h.cur.Load(), nil
}

// tlsFlags reports whether TLS is configured, refusing half of a pair.
func (c *securityConfig) tlsOn() (bool, error) {
	if (c.tlsCert == "") != (c.tlsKey == "") {
		return false, fmt.Errorf("--tls-cert and --tls-key go together: give both, or neither")
	}
	return c.tlsCert != "", nil
}

// serveTLS wraps ln (web.Listener, which counts and caps connections before any
// handshake is spent on them) so that it serves TLS with h's certificate.
//
// Only HTTP/1.1 is offered: a WebSocket upgrade takes over the connection
// (hijacking), which HTTP/2 has no way to do. Hijacked connections are *tls.Conn,
// which the WebSocket's direct-to-socket write path recognises as not a plain
// socket, so wss frames go through TLS.
func serveTLS(ln net.Listener, h *certHolder) net.Listener {
	return tls.NewListener(ln, &tls.Config{
		MinVersion:     tls.VersionTLS12,
		GetCertificate: h.getCertificate,
		NextProtos:     []string{"http/1.1"},
	})
}

// reloadCertificate is the SIGHUP action for the certificate: an invalid new pair
// keeps the old one, and the log says why.
func reloadCertificate(h *certHolder, log *slog.Logger) func() {
	return func() {
		if err := h.reload(); err != nil {
			log.Error("TLS certificate not reloaded; the previous certificate stays in use", "err", err)
			return
		}
		log.Info("TLS certificate reloaded", "cert", h.certFile)
	}
}
