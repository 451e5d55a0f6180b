package auth

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/qinba/qinba/internal/apperr"
)

// Access-token constants.
const (
	// Audience is the aud of every access token.
	Audience = "qinba-api"
	// AccessTokenType is the JOSE typ header of an access token (RFC 9068).
	// Tokens of any other type (consult+jwt, ...) are never accepted as
	// access tokens.
	AccessTokenType = "at+jwt"
	// DefaultAccessTTL is an access token's lifetime.
	DefaultAccessTTL = 15 * time.Minute
	// clockLeeway tolerates clock skew between servers.
	clockLeeway = 10 * time.Second
	// maxTokenLen bounds what the parser is given.
	maxTokenLen = 4096
)

// AccessClaims are the claims of an access token. Role and Facility are a
// convenience for clients; the server re-reads the user on every request.
type AccessClaims struct {
	jwt.RegisteredClaims
	Role     Role   `json:"role,omitempty"`
	Facility string `json:"facility,omitempty"`
}

func errTokenInvalidf(reason string) error {
	return &apperr.Error{Code: apperr.Unauthenticated, Message: "invalid or expired access token", Err: errors.New(reason)}
}

// errTokenInvalid is the one answer to a bad token (the reason is logged,
// never shown).
var errTokenInvalid = errTokenInvalidf("user missing or disabled")

// randomID returns n random bytes, base64url without padding.
func randomID(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// IssueAccessToken signs an access token for u with the current key.
func (s *Service) IssueAccessToken(u User) (string, error) {
	now := s.cfg.Now()
	kid, key := s.keys.SigningKey()
	claims := AccessClaims{
		RegisteredClaims: jwt.RegisteredClaims{
			Issuer:    s.cfg.Issuer,
			Subject:   strconv.FormatInt(u.ID, 10),
			Audience:  jwt.ClaimStrings{Audience},
			ExpiresAt: jwt.NewNumericDate(now.Add(s.cfg.AccessTTL)),
			NotBefore: jwt.NewNumericDate(now),
			IssuedAt:  jwt.NewNumericDate(now),
			ID:        randomID(16),
		},
		Role:     u.Role,
		Facility: u.Facility,
	}
	t := jwt.NewWithClaims(jwt.SigningMethodEdDSA, claims)
	t.Header["kid"] = kid
	t.Header["typ"] = AccessTokenType
	return t.SignedString(key)
}

// parseAccessToken verifies raw (RFC 8725): alg pinned to EdDSA, typ
// at+jwt, a known and published kid, no crit header, iss, aud, exp, nbf,
// iat, sub and jti present and valid. It returns the claims.
func (s *Service) parseAccessToken(raw string) (*AccessClaims, error) {
	if raw == "" || len(raw) > maxTokenLen {
		return nil, errTokenInvalidf("empty or oversized token")
	}
	p := jwt.NewParser(
		jwt.WithValidMethods([]string{jwt.SigningMethodEdDSA.Alg()}),
		jwt.WithIssuer(s.cfg.Issuer),
		jwt.WithAudience(Audience),
		jwt.WithExpirationRequired(),
		jwt.WithNotBeforeRequired(),
		jwt.WithIssuedAt(),
		jwt.WithLeeway(clockLeeway),
		jwt.WithTimeFunc(s.cfg.Now),
		jwt.WithStrictDecoding(),
	)
	var c AccessClaims
	_, err := p.ParseWithClaims(raw, &c, func(t *jwt.Token) (any, error) {
		typ, _ := t.Header["typ"].(string)
		if !strings.EqualFold(typ, AccessTokenType) && !strings.EqualFold(typ, "application/"+AccessTokenType) {
			return nil, fmt.Errorf("typ %q is not an access token", typ)
		}
		if _, ok := t.Header["crit"]; ok {
			return nil, errors.New("crit header not supported")
		}
		kid, _ := t.Header["kid"].(string)
		if kid == "" {
			return nil, errors.New("no kid")
		}
		pub, ok := s.keys.PublicKey(kid)
		if !ok {
			return nil, fmt.Errorf("unknown or retired kid %q", kid)
		}
		return pub, nil
	})
	if err != nil {
		return nil, errTokenInvalidf(err.Error())
	}
	if c.IssuedAt == nil || c.ID == "" {
		return nil, errTokenInvalidf("iat or jti missing")
	}
	if c.ExpiresAt.Sub(c.IssuedAt.Time) > s.cfg.AccessTTL+clockLeeway {
		return nil, errTokenInvalidf("lifetime longer than an access token's")
	}
	return &c, nil
}

// VerifyAccessToken checks raw and re-reads its user: a disabled or
// deleted user is refused at once. It returns the request's principal.
// (Besides the middleware, a WebSocket upgrade that carries the token in
// its first message can use it.)
func (s *Service) VerifyAccessToken(ctx context.Context, raw string) (*Principal, error) {
	c, err := s.parseAccessToken(raw)
	if err != nil {
		return nil, err
	}
	id, err := strconv.ParseInt(c.Subject, 10, 64)
	if err != nil || id <= 0 {
		return nil, errTokenInvalidf("bad sub")
	}
	return loadPrincipal(ctx, s.pool, id)
}
