package auth

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/sqlws/sqlws/errors"
)

var secret = []byte("0123456789abcdef0123456789abcdef")

func pubPEM(t *testing.T, pub any) []byte {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
}

func sign(t *testing.T, m jwt.SigningMethod, key any, claims jwt.MapClaims) string {
	t.Helper()
	s, err := jwt.NewWithClaims(m, claims).SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func valid() jwt.MapClaims {
	return jwt.MapClaims{"sub": "alice", "exp": time.Now().Add(time.Hour).Unix()}
}

func with(c jwt.MapClaims, kv ...any) jwt.MapClaims {
	for i := 0; i < len(kv); i += 2 {
		if kv[i+1] == nil {
			delete(c, kv[i].(string))
		} else {
			c[kv[i].(string)] = kv[i+1]
		}
	}
	return c
}

func TestVerify(t *testing.T) {
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	ecKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	rsaPEM := pubPEM(t, &rsaKey.PublicKey)
	hs, err := NewVerifier(Config{Secret: secret, Audience: "app", Issuer: "idp"})
	if err != nil {
		t.Fatal(err)
	}
	rs, err := NewVerifier(Config{PublicKeyPEM: rsaPEM})
	if err != nil {
		t.Fatal(err)
	}
	es, err := NewVerifier(Config{PublicKeyPEM: pubPEM(t, &ecKey.PublicKey)})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	hsOK := func() jwt.MapClaims { return with(valid(), "aud", "app", "iss", "idp") }
	none := sign(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, hsOK())
	cases := []struct {
		name  string
		v     *Verifier
		token string
		want  string // "" accepted, else part of the message
	}{
		{"hs256", hs, sign(t, jwt.SigningMethodHS256, secret, hsOK()), ""},
		{"rs256", rs, sign(t, jwt.SigningMethodRS256, rsaKey, valid()), ""},
		{"es256", es, sign(t, jwt.SigningMethodES256, ecKey, valid()), ""},
		{"bad signature", hs, sign(t, jwt.SigningMethodHS256, []byte("another secret, also 32 bytes long!"), hsOK()), "signature is invalid"},
		{"alg none", hs, none, "algorithm is not accepted"},
		{"HS256 signed with the RSA public key (alg confusion)", rs, sign(t, jwt.SigningMethodHS256, rsaPEM, valid()), "algorithm is not accepted"},
		{"RS256 against an HS256 server", hs, sign(t, jwt.SigningMethodRS256, rsaKey, hsOK()), "algorithm is not accepted"},
		{"HS384 (not pinned)", hs, sign(t, jwt.SigningMethodHS384, secret, hsOK()), "algorithm is not accepted"},
		{"ES256 against an RSA key", rs, sign(t, jwt.SigningMethodES256, ecKey, valid()), "algorithm is not accepted"},
		{"expired", hs, sign(t, jwt.SigningMethodHS256, secret, with(hsOK(), "exp", now.Add(-time.Minute).Unix())), "expired"},
		{"expired within the leeway", hs, sign(t, jwt.SigningMethodHS256, secret, with(hsOK(), "exp", now.Add(-10*time.Second).Unix())), ""},
		{"no exp", hs, sign(t, jwt.SigningMethodHS256, secret, with(hsOK(), "exp", nil)), "required claim exp"},
		{"nbf ahead", hs, sign(t, jwt.SigningMethodHS256, secret, with(hsOK(), "nbf", now.Add(time.Minute).Unix())), "not valid yet"},
		{"nbf within the leeway", hs, sign(t, jwt.SigningMethodHS256, secret, with(hsOK(), "nbf", now.Add(10*time.Second).Unix())), ""},
		{"iat ahead", hs, sign(t, jwt.SigningMethodHS256, secret, with(hsOK(), "iat", now.Add(time.Minute).Unix())), "not valid yet"},
		{"wrong audience", hs, sign(t, jwt.SigningMethodHS256, secret, with(hsOK(), "aud", "other")), "audience"},
		{"no audience", hs, sign(t, jwt.SigningMethodHS256, secret, with(hsOK(), "aud", nil)), "required claim aud"},
		{"wrong issuer", hs, sign(t, jwt.SigningMethodHS256, secret, with(hsOK(), "iss", "evil")), "issuer"},
		{"malformed", hs, "not.a.jwt", "malformed"},
	}
	for _, c := range cases {
		id, err := c.v.Verify(c.token)
		switch {
		case c.want == "" && err != nil:
			t.Errorf("%s: %v, want accepted", c.name, err)
		case c.want == "" && id.Subject != "alice":
			t.Errorf("%s: subject %q", c.name, id.Subject)
		case c.want != "" && err == nil:
			t.Errorf("%s: accepted, want refused (%s)", c.name, c.want)
		case c.want != "":
			kind, code, msg := errors.Public(err)
			if kind != errors.Unauthorized || code != errors.CodeUnauthorized || !strings.Contains(msg, c.want) {
				t.Errorf("%s: %v %v %q, want unauthorized saying %q", c.name, kind, code, msg, c.want)
			}
			if strings.Contains(msg, c.token) {
				t.Errorf("%s: the message repeats the token", c.name)
			}
		}
	}
}

func TestAdminRole(t *testing.T) {
	v, err := NewVerifier(Config{Secret: secret, AdminRole: "ops"})
	if err != nil {
		t.Fatal(err)
	}
	for role, admin := range map[string]bool{"ops": true, "admin": false, "": false} {
		id, err := v.Verify(sign(t, jwt.SigningMethodHS256, secret, with(valid(), "role", role)))
		if err != nil || id.Admin != admin {
			t.Errorf("role %q: admin %v, %v; want %v", role, id != nil && id.Admin, err, admin)
		}
	}
}

func TestNewVerifierRefuses(t *testing.T) {
	small, _ := rsa.GenerateKey(rand.Reader, 1024)
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	for name, cfg := range map[string]Config{
		"nothing":      {},
		"short secret": {Secret: []byte("short")},
		"rsa 1024":     {PublicKeyPEM: pubPEM(t, &small.PublicKey)},
		"p-384":        {PublicKeyPEM: pubPEM(t, &p384.PublicKey)},
		"not pem":      {PublicKeyPEM: []byte("hello")},
	} {
		if _, err := NewVerifier(cfg); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestTokenSources(t *testing.T) {
	h := http.Header{}
	h.Set("Authorization", "bearer abc")
	if got := FromHeader(h); got != "abc" {
		t.Errorf("FromHeader = %q", got)
	}
	h.Set("Authorization", "Basic abc")
	if got := FromHeader(h); got != "" {
		t.Errorf("FromHeader(Basic) = %q", got)
	}
	u, _ := url.Parse("/ws?a=1&access_token=t%2Bx&b=2&access%5Ftoken=y")
	if got := TakeQueryToken(u); got != "y" || u.RawQuery != "a=1&b=2" {
		t.Errorf("TakeQueryToken = %q, query left %q", got, u.RawQuery)
	}
	if got := Redact(`GET /ws?access_token=secret&x=1 "next" access_token=two`); got != `GET /ws?access_token=REDACTED&x=1 "next" access_token=REDACTED` {
		t.Errorf("Redact = %q", got)
	}
}
