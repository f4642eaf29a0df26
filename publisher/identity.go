package publisher

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// DefaultTrustedProxies are the peers whose user header is believed when
// PrivacyConfig.TrustedProxies is nil: a proxy on the same host.
var DefaultTrustedProxies = []string{"127.0.0.0/8", "::1/128"}

// JWTConfig verifies the bearer JWT in Authorization to take the user id
// from one of its claims. Exactly one key source is required; tokens must
// carry exp, and aud/iss when set here.
type JWTConfig struct {
	// Claim holds the user id (default "sub").
	Claim string
	// HS256Secret verifies HS256 tokens.
	HS256Secret []byte
	// PublicKeyPEM is an RSA (RS256) or EC P-256 (ES256) public key.
	PublicKeyPEM []byte
	// JWKS is a JSON Web Key Set (RSA and EC P-256 keys, chosen by kid).
	JWKS []byte
	// Audience and Issuer, when set, must match aud and iss.
	Audience string
	Issuer   string
}

func (c JWTConfig) enabled() bool {
	return c.Claim != "" || len(c.HS256Secret) > 0 || len(c.PublicKeyPEM) > 0 || len(c.JWKS) > 0
}

// verifier checks bearer JWTs.
type verifier struct {
	claim   string
	methods []string
	keys    map[string]any // kid → key; "" for a single key
	opts    []jwt.ParserOption
}

func newVerifier(c JWTConfig) (*verifier, error) {
	v := &verifier{claim: c.Claim, keys: map[string]any{}}
	if v.claim == "" {
		v.claim = "sub"
	}
	sources := 0
	if len(c.HS256Secret) > 0 {
		sources++
		if len(c.HS256Secret) < 32 {
			return nil, fmt.Errorf("JWT HS256 secret is %d bytes: want at least 32", len(c.HS256Secret))
		}
		v.keys[""] = c.HS256Secret
		v.methods = []string{"HS256"}
	}
	if len(c.PublicKeyPEM) > 0 {
		sources++
		if k, err := jwt.ParseRSAPublicKeyFromPEM(c.PublicKeyPEM); err == nil {
			v.keys[""] = k
			v.methods = []string{"RS256"}
		} else if k, err := jwt.ParseECPublicKeyFromPEM(c.PublicKeyPEM); err == nil {
			v.keys[""] = k
			v.methods = []string{"ES256"}
		} else {
			return nil, errors.New("JWT public key: not a PEM RSA or EC public key")
		}
	}
	if len(c.JWKS) > 0 {
		sources++
		keys, err := parseJWKS(c.JWKS)
		if err != nil {
			return nil, fmt.Errorf("JWKS: %w", err)
		}
		v.keys = keys
		v.methods = []string{"RS256", "ES256"}
	}
	switch sources {
	case 0:
		return nil, errors.New("a JWT user claim needs a key to verify the token: set one of SHADOWCUBE_TAP_JWT_HS256_SECRET, SHADOWCUBE_TAP_JWT_PUBLIC_KEY, SHADOWCUBE_TAP_JWT_JWKS")
	case 1:
	default:
		return nil, errors.New("JWT: set only one of the HS256 secret, the public key and the JWKS")
	}
	v.opts = []jwt.ParserOption{jwt.WithValidMethods(v.methods), jwt.WithExpirationRequired(), jwt.WithJSONNumber(), jwt.WithLeeway(30 * time.Second)}
	if c.Audience != "" {
		v.opts = append(v.opts, jwt.WithAudience(c.Audience))
	}
	if c.Issuer != "" {
		v.opts = append(v.opts, jwt.WithIssuer(c.Issuer))
	}
	return v, nil
}

func (v *verifier) key(t *jwt.Token) (any, error) {
	kid, _ := t.Header["kid"].(string)
	k, ok := v.keys[kid]
	if !ok && len(v.keys) == 1 {
		for _, only := range v.keys {
			k, ok = only, true
		}
	}
	if !ok {
		return nil, fmt.Errorf("no key for kid %q", kid)
	}
	switch k.(type) {
	case []byte:
		if _, ok := t.Method.(*jwt.SigningMethodHMAC); ok {
			return k, nil
		}
	case *rsa.PublicKey:
		if _, ok := t.Method.(*jwt.SigningMethodRSA); ok {
			return k, nil
		}
	case *ecdsa.PublicKey:
		if _, ok := t.Method.(*jwt.SigningMethodECDSA); ok {
			return k, nil
		}
	}
	return nil, fmt.Errorf("key %q does not fit %s", kid, t.Method.Alg())
}

// userID verifies the bearer token of authz at time now and returns its
// claim; "" when there is none or it does not verify.
func (v *verifier) userID(authz string, now time.Time) string {
	tok, ok := strings.CutPrefix(authz, "Bearer ")
	if !ok {
		tok, ok = strings.CutPrefix(authz, "bearer ")
	}
	if !ok {
		return ""
	}
	opts := v.opts
	if !now.IsZero() {
		opts = append(opts[:len(opts):len(opts)], jwt.WithTimeFunc(func() time.Time { return now }))
	}
	claims := jwt.MapClaims{}
	if _, err := jwt.NewParser(opts...).ParseWithClaims(strings.TrimSpace(tok), claims, v.key); err != nil {
		return ""
	}
	switch x := claims[v.claim].(type) {
	case string:
		return x
	case json.Number:
		return x.String()
	}
	return ""
}

// parseJWKS reads RSA and EC P-256 public keys of a JWK set.
func parseJWKS(data []byte) (map[string]any, error) {
	var set struct {
		Keys []struct {
			Kty, Kid, Crv, N, E, X, Y, Use string
		} `json:"keys"`
	}
	if err := json.Unmarshal(data, &set); err != nil {
		return nil, err
	}
	keys := map[string]any{}
	b64 := func(s string) (*big.Int, error) {
		b, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(s, "="))
		if err != nil || len(b) == 0 {
			return nil, fmt.Errorf("bad base64url value %q", s)
		}
		return new(big.Int).SetBytes(b), nil
	}
	for i, k := range set.Keys {
		if k.Use != "" && k.Use != "sig" {
			continue
		}
		switch k.Kty {
		case "RSA":
			n, err := b64(k.N)
			if err != nil {
				return nil, fmt.Errorf("key %d: n: %w", i, err)
			}
			e, err := b64(k.E)
			if err != nil || !e.IsInt64() {
				return nil, fmt.Errorf("key %d: bad e", i)
			}
			keys[k.Kid] = &rsa.PublicKey{N: n, E: int(e.Int64())}
		case "EC":
			if k.Crv != "P-256" {
				return nil, fmt.Errorf("key %d: curve %q: want P-256 (ES256)", i, k.Crv)
			}
			x, err := b64(k.X)
			if err != nil {
				return nil, fmt.Errorf("key %d: x: %w", i, err)
			}
			y, err := b64(k.Y)
			if err != nil {
				return nil, fmt.Errorf("key %d: y: %w", i, err)
			}
			if x.BitLen() > 256 || y.BitLen() > 256 {
				return nil, fmt.Errorf("key %d: not a point on P-256", i)
			}
			pt := make([]byte, 65)
			pt[0] = 4 // uncompressed point: 0x04 || X || Y
			x.FillBytes(pt[1:33])
			y.FillBytes(pt[33:])
			pk, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), pt)
			if err != nil {
				return nil, fmt.Errorf("key %d: not a point on P-256", i)
			}
			keys[k.Kid] = pk
		}
	}
	if len(keys) == 0 {
		return nil, errors.New("no RSA or EC P-256 signing key")
	}
	return keys, nil
}

// trust holds the peers whose user header is believed.
type trust []netip.Prefix

func parseTrust(cidrs []string) (trust, error) {
	if cidrs == nil {
		cidrs = DefaultTrustedProxies
	}
	var t trust
	for _, c := range cidrs {
		c = strings.TrimSpace(c)
		if c == "" || strings.EqualFold(c, "none") {
			continue
		}
		p, err := netip.ParsePrefix(c)
		if err != nil {
			a, aerr := netip.ParseAddr(c)
			if aerr != nil {
				return nil, fmt.Errorf("trusted proxy %q: want a CIDR like 10.0.0.0/8 or an address", c)
			}
			p = netip.PrefixFrom(a, a.BitLen())
		}
		t = append(t, p.Masked())
	}
	return t, nil
}

// peer reports whether remoteAddr (host:port, as in http.Request) is trusted.
func (t trust) peer(remoteAddr string) bool {
	if len(t) == 0 || remoteAddr == "" {
		return false
	}
	host, _, err := net.SplitHostPort(remoteAddr)
	if err != nil {
		host = remoteAddr
	}
	a, err := netip.ParseAddr(host)
	if err != nil {
		return false
	}
	a = a.Unmap()
	for _, p := range t {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// userID finds the raw user id of a request and whether it is verified:
// the user header when the peer is a trusted proxy (verified), then a valid
// bearer JWT's claim (verified), then the cookie (not verified: a client sets
// it). now is the time tokens are checked at.
func (p *privacy) userID(h http.Header, trustedPeer bool, now time.Time) (string, bool) {
	if trustedPeer {
		if v := h.Get(p.userHeader); v != "" {
			return v, true
		}
	}
	if p.jwt != nil {
		if id := p.jwt.userID(h.Get("Authorization"), now); id != "" {
			return id, true
		}
	}
	if p.userCookie != "" {
		r := http.Request{Header: h}
		if c, err := r.Cookie(p.userCookie); err == nil && c.Value != "" {
			return c.Value, false
		}
	}
	return "", false
}
