package shadow

import (
	"fmt"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/heal7/shadowcube/internal/routes"
)

// Credential kinds of the routes file.
const (
	credBearer = "bearer"
	credJWT    = "jwt-hs256"
)

// credentials produces the Authorization header value a replay carries to
// one target: the service's own credentials, never a user's.
type credentials interface {
	authorization() (string, error)
}

// newCredentials resolves a routes.Credentials against the environment
// lookup. Errors name the service and the missing variable.
func newCredentials(service string, c *routes.Credentials, lookup func(string) (string, bool), now func() time.Time) (credentials, error) {
	if c == nil {
		return nil, nil
	}
	get := func(field, env string) (string, error) {
		if env == "" {
			return "", fmt.Errorf("service %s: credentials.%s is empty", service, field)
		}
		v, ok := lookup(env)
		if !ok || v == "" {
			return "", fmt.Errorf("service %s: credentials.%s names %s, which is not set (export it with the cube's service token or secret)", service, field, env)
		}
		return v, nil
	}
	switch c.Kind {
	case credBearer:
		tok, err := get("token_env", c.TokenEnv)
		if err != nil {
			return nil, err
		}
		return staticBearer("Bearer " + tok), nil
	case credJWT:
		secret, err := get("secret_env", c.SecretEnv)
		if err != nil {
			return nil, err
		}
		ttl := c.TTL.D()
		if ttl <= 0 {
			ttl = 5 * time.Minute
		}
		return &jwtMinter{secret: []byte(secret), iss: c.Issuer, aud: c.Audience, sub: c.Subject, ttl: ttl, now: now}, nil
	default:
		return nil, fmt.Errorf("service %s: credentials.kind %q is not one of bearer, jwt-hs256", service, c.Kind)
	}
}

type staticBearer string

func (s staticBearer) authorization() (string, error) { return string(s), nil }

// jwtMinter mints HS256 JWTs for one target and reuses each token until it
// is within a fifth of its lifetime of expiring.
type jwtMinter struct {
	secret        []byte
	iss, aud, sub string
	ttl           time.Duration
	now           func() time.Time

	mu     sync.Mutex
	header string
	exp    time.Time
}

func (m *jwtMinter) authorization() (string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.now()
	if m.header != "" && now.Before(m.exp.Add(-m.ttl/5)) {
		return m.header, nil
	}
	exp := now.Add(m.ttl)
	tok, err := signHS256(m.secret, jwtClaims{Iss: m.iss, Aud: m.aud, Sub: m.sub, Iat: now.Unix(), Exp: exp.Unix()})
	if err != nil {
		return "", err
	}
	m.header, m.exp = "Bearer "+tok, exp
	return m.header, nil
}

type jwtClaims struct {
	Iss string `json:"iss,omitempty"`
	Aud string `json:"aud,omitempty"`
	Sub string `json:"sub,omitempty"`
	Iat int64  `json:"iat"`
	Exp int64  `json:"exp"`
}

// signHS256 returns the compact JWS of claims signed with HMAC-SHA256
// (RFC 7519), by golang-jwt. aud stays a single string, as cubes expect.
func signHS256(secret []byte, c jwtClaims) (string, error) {
	claims := jwt.MapClaims{"iat": c.Iat, "exp": c.Exp}
	for k, v := range map[string]string{"iss": c.Iss, "aud": c.Aud, "sub": c.Sub} {
		if v != "" {
			claims[k] = v
		}
	}
	tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString(secret)
	if err != nil {
		return "", fmt.Errorf("sign jwt: %w", err)
	}
	return tok, nil
}
