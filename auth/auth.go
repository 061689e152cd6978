// Package auth verifies who a request comes from: it checks a JWT (signature, pinned
// algorithm, expiry, audience, issuer) and turns it into an Identity carried in the
// request's context. What an identity may do is package rules' concern; how a
// refusal looks on the wire is package web's.
package auth

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/sqlws/sqlws/errors"
)

// Leeway is the clock skew tolerated on exp, nbf and iat: issuers' and sqlws's clocks
// are never exactly in step, and a token refused for a second's skew is refused for
// nothing.
const Leeway = 30 * time.Second

// MinSecretBytes is the shortest HS256 secret accepted: RFC 7518 §3.2 asks for a key
// at least as long as the hash (256 bits); a shorter one can be brute-forced offline
// from any token.
const MinSecretBytes = 32

// DefaultAdminRole is the role claim that bypasses the rules unless configured otherwise.
const DefaultAdminRole = "admin"

// QueryParam is the query parameter a browser's WebSocket may carry its token in
// (browsers cannot set headers on a WebSocket handshake).
const QueryParam = "access_token"

// Config says which tokens a Verifier accepts. At least one of Secret and PublicKeyPEM
// is required.
type Config struct {
	// Secret is the HS256 key.
	Secret []byte
	// PublicKeyPEM is an RSA (RS256) or P-256 ECDSA (ES256) public key in PEM.
	PublicKeyPEM []byte
	// Audience and Issuer, when set, must match the token's aud and iss.
	Audience string
	Issuer   string
	// AdminRole is the value of the role claim that makes an identity an admin
	// (DefaultAdminRole when empty).
	AdminRole string
	// Now is the clock (time.Now when nil); tests set it.
	Now func() time.Time
}

// Verifier checks tokens against one Config. It is safe for concurrent use.
type Verifier struct {
	parser    *jwt.Parser
	secret    []byte
	pub       any // *rsa.PublicKey or *ecdsa.PublicKey
	methods   []string
	adminRole string
}

// NewVerifier checks cfg and returns its Verifier. The accepted algorithms follow
// from the keys and nothing else: HS256 only with a secret, RS256 or ES256 only with
// a public key of that type, never "none". A token cannot choose how it is checked.
func NewVerifier(cfg Config) (*Verifier, error) {
	v := &Verifier{adminRole: cfg.AdminRole}
	if v.adminRole == "" {
		v.adminRole = DefaultAdminRole
	}
	if len(cfg.Secret) == 0 && len(cfg.PublicKeyPEM) == 0 {
		return nil, fmt.Errorf("auth: no key: give an HS256 secret or a public key")
	}
	if len(cfg.Secret) > 0 {
		if len(cfg.Secret) < MinSecretBytes {
			return nil, fmt.Errorf("auth: the HS256 secret has %d bytes; at least %d are needed (e.g. openssl rand -hex 32)", len(cfg.Secret), MinSecretBytes)
		}
		v.secret = cfg.Secret
		v.methods = append(v.methods, jwt.SigningMethodHS256.Alg())
	}
	if len(cfg.PublicKeyPEM) > 0 {
		if k, err := jwt.ParseRSAPublicKeyFromPEM(cfg.PublicKeyPEM); err == nil {
			if k.N.BitLen() < 2048 {
				return nil, fmt.Errorf("auth: the RSA public key has %d bits; at least 2048 are needed", k.N.BitLen())
			}
			v.pub = k
			v.methods = append(v.methods, jwt.SigningMethodRS256.Alg())
		} else if k, err := jwt.ParseECPublicKeyFromPEM(cfg.PublicKeyPEM); err == nil {
			if k.Curve != elliptic.P256() {
				return nil, fmt.Errorf("auth: the ECDSA public key is on %s; ES256 needs P-256", k.Curve.Params().Name)
			}
			v.pub = k
			v.methods = append(v.methods, jwt.SigningMethodES256.Alg())
		} else {
			return nil, fmt.Errorf("auth: the public key is neither an RSA nor an ECDSA public key in PEM")
		}
	}
	opts := []jwt.ParserOption{
		jwt.WithValidMethods(v.methods),
		jwt.WithExpirationRequired(),
		jwt.WithIssuedAt(),
		jwt.WithLeeway(Leeway),
		jwt.WithJSONNumber(), // numeric claims keep their exact text for rule placeholders
	}
	if cfg.Audience != "" {
		opts = append(opts, jwt.WithAudience(cfg.Audience))
	}
	if cfg.Issuer != "" {
		opts = append(opts, jwt.WithIssuer(cfg.Issuer))
	}
	if cfg.Now != nil {
		opts = append(opts, jwt.WithTimeFunc(cfg.Now))
	}
	v.parser = jwt.NewParser(opts...)
	return v, nil
}

// Methods returns the algorithms v accepts.
func (v *Verifier) Methods() []string { return append([]string(nil), v.methods...) }

// key hands the parser the key for the token's algorithm. WithValidMethods has
// already refused any other algorithm; the type switch makes sure an HS256 token is
// never checked against the public key's bytes (the classic RS/HS confusion) even
// if that check were lost.
func (v *Verifier) key(t *jwt.Token) (any, error) {
	switch t.Method.(type) {
	case *jwt.SigningMethodHMAC:
		if v.secret != nil {
			return v.secret, nil
		}
	case *jwt.SigningMethodRSA:
		if k, ok := v.pub.(*rsa.PublicKey); ok {
			return k, nil
		}
	case *jwt.SigningMethodECDSA:
		if k, ok := v.pub.(*ecdsa.PublicKey); ok {
			return k, nil
		}
	}
	return nil, jwt.ErrTokenUnverifiable
}

// Identity is a verified token: who it is and what it claims.
type Identity struct {
	// Subject is the sub claim ("" when absent).
	Subject string
	// Claims are every claim of the token, numbers as json.Number.
	Claims map[string]any
	// Admin is set when the role claim equals the admin role: such an identity is
	// not subject to the rules.
	Admin bool
	// Expires is the exp claim.
	Expires time.Time
}

// Claim returns the claim name and whether the token has it (a JSON null counts as
// absent).
func (id *Identity) Claim(name string) (any, bool) {
	if id == nil {
		return nil, false
	}
	v, ok := id.Claims[name]
	return v, ok && v != nil
}

// Verify checks token and returns its identity. Every failure is an Unauthorized
// error whose message says what is wrong with the token without repeating any of
// it.
func (v *Verifier) Verify(token string) (*Identity, error) {
	claims := jwt.MapClaims{}
	if _, err := v.parser.ParseWithClaims(token, claims, v.key); err != nil {
		msg := reason(err)
		if !v.algAccepted(token) {
			// The library reports a refused algorithm as a bad signature; say what it is.
			msg = "the token's algorithm is not accepted (accepted: " + strings.Join(v.methods, ", ") + ")"
		}
		return nil, errors.E(errors.Op("verify token"), errors.Unauthorized, errors.CodeUnauthorized, msg, err)
	}
	id := &Identity{Claims: claims}
	if sub, ok := claims["sub"].(string); ok {
		id.Subject = sub
	}
	if role, ok := claims["role"].(string); ok && role == v.adminRole {
		id.Admin = true
	}
	if exp, err := claims.GetExpirationTime(); err == nil && exp != nil {
		id.Expires = exp.Time
	}
	return id, nil
}

// algAccepted reports whether token's header names an algorithm v accepts (false for
// a token whose header does not parse: the error then says malformed).
func (v *Verifier) algAccepted(token string) bool {
	t, _, err := jwt.NewParser().ParseUnverified(token, jwt.MapClaims{})
	if t == nil || t.Header == nil {
		return err != nil // malformed: reason says so
	}
	alg, _ := t.Header["alg"].(string)
	for _, m := range v.methods {
		if alg == m {
			return true
		}
	}
	return false
}

// requiredClaim finds the claim the library names in "X claim is required" (its own
// text, not the token's).
var requiredClaim = regexp.MustCompile(`\b(exp|nbf|iat|aud|iss|sub) claim is required`)

// reason is the client-safe description of a verification failure.
func reason(err error) string {
	switch {
	case errors.Is(err, jwt.ErrTokenMalformed):
		return "the token is malformed"
	case errors.Is(err, jwt.ErrTokenSignatureInvalid):
		return "the token's signature is invalid"
	case errors.Is(err, jwt.ErrTokenUnverifiable):
		return "the token's algorithm is not accepted"
	case errors.Is(err, jwt.ErrTokenExpired):
		return "the token has expired"
	case errors.Is(err, jwt.ErrTokenNotValidYet), errors.Is(err, jwt.ErrTokenUsedBeforeIssued):
		return "the token is not valid yet"
	case errors.Is(err, jwt.ErrTokenRequiredClaimMissing):
		if m := requiredClaim.FindStringSubmatch(err.Error()); m != nil {
			return "the token lacks the required claim " + m[1]
		}
		return "the token lacks a required claim"
	case errors.Is(err, jwt.ErrTokenInvalidAudience):
		return "the token is not for this audience"
	case errors.Is(err, jwt.ErrTokenInvalidIssuer):
		return "the token's issuer is not accepted"
	}
	return "the token is invalid"
}

// ReadSecretFile reads an HS256 secret from path. Surrounding whitespace (the newline
// an editor or echo leaves) is not part of the secret.
func ReadSecretFile(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return []byte(strings.TrimSpace(string(b))), nil
}

// FromHeader returns the token of an "Authorization: Bearer T" header, "" if there is
// none. The scheme is case-insensitive (RFC 9110 §11.1).
func FromHeader(h http.Header) string {
	scheme, tok, ok := strings.Cut(strings.TrimSpace(h.Get("Authorization")), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return ""
	}
	return strings.TrimSpace(tok)
}

// TakeQueryToken removes every access_token parameter from u's query, keeping the
// others exactly as they were, and returns the last one's value. The request then
// goes on without it, so nothing downstream (a log line, an error, a proxy) can
// repeat the token.
func TakeQueryToken(u *url.URL) string {
	if !strings.Contains(u.RawQuery, QueryParam) {
		return ""
	}
	tok := ""
	parts := strings.Split(u.RawQuery, "&")
	kept := parts[:0]
	for _, p := range parts {
		k, v, _ := strings.Cut(p, "=")
		if uk, err := url.QueryUnescape(k); k == QueryParam || err == nil && uk == QueryParam {
			if uv, err := url.QueryUnescape(v); err == nil {
				tok = uv
			}
			continue
		}
		kept = append(kept, p)
	}
	u.RawQuery = strings.Join(kept, "&")
	return tok
}

// Redact returns s (a URL or a log line) with every access_token value replaced by
// "REDACTED", for text that may quote a request's URL.
func Redact(s string) string {
	const mark = QueryParam + "="
	var b strings.Builder
	for {
		i := strings.Index(s, mark)
		if i < 0 {
			b.WriteString(s)
			return b.String()
		}
		b.WriteString(s[:i+len(mark)])
		b.WriteString("REDACTED")
		s = s[i+len(mark):]
		j := strings.IndexAny(s, "& \"\n")
		if j < 0 {
			return b.String()
		}
		s = s[j:]
	}
}

type idKey struct{}

// WithIdentity returns ctx carrying id.
func WithIdentity(ctx context.Context, id *Identity) context.Context {
	return context.WithValue(ctx, idKey{}, id)
}

// FromContext returns the identity a request was verified as, if any.
func FromContext(ctx context.Context) (*Identity, bool) {
	id, ok := ctx.Value(idKey{}).(*Identity)
	return id, ok && id != nil
}

// ClaimText turns a scalar claim into the text a filter value is: a string as it
// is, a number as its JSON text, a boolean as 1 or 0 (how sqlws stores JSON booleans).
// Objects, arrays and null have no text: ok is false.
func ClaimText(v any) (string, bool) {
	switch v := v.(type) {
	case string:
		return v, true
	case json.Number:
		return v.String(), true
	case float64: // an Identity built without json.Number
		return strconv.FormatFloat(v, 'g', -1, 64), true
	case bool:
		if v {
			return "1", true
		}
		return "0", true
	}
	return "", false
}
