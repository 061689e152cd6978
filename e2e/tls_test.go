package e2e

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/sqlws/sqlws/internal/testenv"
)

// testCert is a self-signed certificate for 127.0.0.1 and localhost, in PEM.
type testCert struct {
	certPEM, keyPEM []byte
	cert            *x509.Certificate
}

func newTestCert(t *testing.T, serial int64) testCert {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial),
		Subject:      pkix.Name{CommonName: "sqlws test"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		DNSNames:     []string{"localhost"},
		// Self-signed: it is its own root in the client's pool.
		IsCA:                  true,
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return testCert{
		certPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		keyPEM:  pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}),
		cert:    cert,
	}
}

// tlsClient trusts only c, and opens a new connection per request so that each
// request sees the certificate the server serves now.
func tlsClient(c testCert) *http.Client {
	pool := x509.NewCertPool()
	pool.AddCert(c.cert)
	return &http.Client{Timeout: timeout, Transport: &http.Transport{
		TLSClientConfig:   &tls.Config{RootCAs: pool},
		DisableKeepAlives: true,
	}}
}

// servedSerial is the serial number of the certificate the server presents now.
func servedSerial(t *testing.T, addr string) int64 {
	t.Helper()
	d := &tls.Dialer{NetDialer: &net.Dialer{Timeout: timeout}, Config: &tls.Config{InsecureSkipVerify: true}}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.(*tls.Conn).ConnectionState().PeerCertificates[0].SerialNumber.Int64()
}

// TestTLS: --tls-cert/--tls-key serve REST over https and the stream over wss (a
// change written by the sqlite3 CLI arrives through TLS, which the WebSocket's
// direct socket writes must not bypass); SIGHUP re-reads the certificate, and an
// invalid new pair keeps the old one; TLS alone does not permit a public bind.
func TestTLS(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	c1 := newTestCert(t, 1)
	writeFile(t, certFile, string(c1.certPEM))
	writeFile(t, keyFile, string(c1.keyPEM))
	db, srv := start(t, `CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT); INSERT INTO t(v) VALUES('before');`,
		"--tls-cert", certFile, "--tls-key", keyFile)
	if !strings.HasPrefix(srv.URL, "https://") {
		t.Fatalf("listening line %q, want https://", srv.URL)
	}

	hc := tlsClient(c1)
	resp, err := hc.Get(srv.URL + "/api/tables/t/rows")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(body), "before") || resp.TLS == nil {
		t.Fatalf("GET over https: %d %s", resp.StatusCode, body)
	}
	// Plain http on the TLS port is not served.
	if resp, err := http.Get("http://" + srv.Addr + "/api/tables/t/rows"); err == nil {
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if strings.Contains(string(b), "before") {
			t.Errorf("plain http on the TLS port served rows: %d", resp.StatusCode)
		}
	}

	wsURL := "wss://" + srv.Addr + "/ws"
	cl, err := testenv.DialWith(t, wsURL, &websocket.DialOptions{HTTPClient: tlsClient(c1)})
	if err != nil {
		t.Fatal(err)
	}
	cl.Subscribe("a", []string{"t"}, nil, "")
	testenv.SQLite(t, db, `INSERT INTO t(v) VALUES('over wss');`)
	got := cl.WaitChanges("a", 1, timeout)
	if !strings.Contains(string(got[0].New), "over wss") {
		t.Fatalf("change over wss: %+v", got[0])
	}
	if _, err := testenv.DialWith(t, "ws://"+srv.Addr+"/ws", nil); err == nil {
		t.Errorf("a plain ws:// dial on the TLS port succeeded")
	}

	// SIGHUP with a new pair: new connections get it; the open WebSocket goes on.
	c2 := newTestCert(t, 2)
	writeFile(t, certFile, string(c2.certPEM))
	writeFile(t, keyFile, string(c2.keyPEM))
	syscall.Kill(srv.PID(), syscall.SIGHUP)
	testenv.WaitFor(t, timeout, "the certificate reloaded", func() bool { return strings.Contains(srv.Stderr(), "TLS certificate reloaded") })
	if s := servedSerial(t, srv.Addr); s != 2 {
		t.Fatalf("after reload the server presents serial %d, want 2", s)
	}
	if resp, err := tlsClient(c2).Get(srv.URL + "/healthz"); err != nil {
		t.Fatal(err)
	} else {
		resp.Body.Close()
	}
	testenv.SQLite(t, db, `INSERT INTO t(v) VALUES('after reload');`)
	if got := cl.WaitChanges("a", 1, timeout); !strings.Contains(string(got[0].New), "after reload") {
		t.Fatalf("change after reload: %+v", got[0])
	}

	// An invalid pair (the new key with the old certificate): kept the old, saying why.
	c3 := newTestCert(t, 3)
	writeFile(t, keyFile, string(c3.keyPEM))
	syscall.Kill(srv.PID(), syscall.SIGHUP)
	testenv.WaitFor(t, timeout, "the refused reload logged", func() bool { return strings.Contains(srv.Stderr(), "TLS certificate not reloaded") })
	if !strings.Contains(srv.Stderr(), "private key does not match public key") {
		t.Errorf("the log does not say why:\n%s", srv.Stderr())
	}
	if s := servedSerial(t, srv.Addr); s != 2 {
		t.Errorf("after a refused reload the server presents serial %d, want 2 (kept)", s)
	}

	// TLS without authentication still may not bind a public address; half a pair is refused.
	writeFile(t, keyFile, string(c2.keyPEM))
	_, stderr, code := testenv.RunBinary(t, "serve", "--db", db, "--addr", "0.0.0.0:0", "--tls-cert", certFile, "--tls-key", keyFile)
	if code == 0 || !strings.Contains(stderr, "without authentication") {
		t.Errorf("TLS alone on 0.0.0.0: exit %d\n%s", code, stderr)
	}
	_, stderr, code = testenv.RunBinary(t, "serve", "--db", db, "--addr", "127.0.0.1:0", "--tls-cert", certFile)
	if code == 0 || !strings.Contains(stderr, "--tls-key") {
		t.Errorf("--tls-cert alone: exit %d\n%s", code, stderr)
	}
	// Configured by environment like every flag.
	t.Setenv("SQLWS_TLS_CERT", certFile)
	t.Setenv("SQLWS_TLS_KEY", filepath.Join(dir, "missing.pem"))
	_, stderr, code = testenv.RunBinary(t, "serve", "--db", db, "--addr", "127.0.0.1:0")
	if code == 0 || !strings.Contains(stderr, "missing.pem") {
		t.Errorf("SQLWS_TLS_KEY naming a missing file: exit %d\n%s", code, stderr)
	}
}
