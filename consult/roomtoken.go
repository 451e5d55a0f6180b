package consult

import (
	"crypto/ed25519"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Room token defaults.
const (
	// RoomTokenType is the JOSE "typ" header of a consult room token. It keeps a room
	// token from being accepted where an access token (typ "at+jwt") is expected, and
	// the other way round.
	RoomTokenType = "consult+jwt"
	// DefaultRoomAudience is the "aud" claim of room tokens when RoomTokensConfig.Audience is empty.
	DefaultRoomAudience = "qinba-consult"
	// DefaultRoomTokenTTL is the lifetime of a room token when neither the config nor the
	// grant says otherwise.
	DefaultRoomTokenTTL = 10 * time.Minute
	// maxRoomTokenTTL bounds what a caller may ask for: room tokens are meant to be short-lived.
	maxRoomTokenTTL = time.Hour
)

// Errors returned by RoomTokens.Verify. All of them mean "refuse the connection";
// they are distinct so that logs and tests can tell them apart.
var (
	// ErrTokenInvalid is returned for a token that is malformed, forged, of the wrong
	// type, issuer or audience, or signed with an unknown key.
	ErrTokenInvalid = errors.New("consult: invalid room token")
	// ErrTokenExpired is returned for a token past its expiry (or not yet valid).
	ErrTokenExpired = errors.New("consult: room token expired")
	// ErrTokenWrongConsult is returned for a valid token bound to another consult.
	ErrTokenWrongConsult = errors.New("consult: room token is for another consult")
)

// KeySource provides the Ed25519 keys that sign and verify room tokens. The auth
// package implements it with its rotating key store; tests use an in-memory one.
type KeySource interface {
	// SigningKey returns the current signing key and its key id.
	SigningKey() (kid string, key ed25519.PrivateKey)
	// PublicKey returns the public key with the given key id, if it is still trusted.
	PublicKey(kid string) (ed25519.PublicKey, bool)
}

// RoomGrant is what a room token grants: one participant (UserID) in one consult,
// with publish and/or subscribe rights.
type RoomGrant struct {
	// ConsultID is the consult (room) the token is bound to.
	ConsultID string
	// UserID is the participant; it becomes the JWT subject.
	UserID string
	// Publish allows sending audio and video to the room.
	Publish bool
	// Subscribe allows receiving the other participants' audio and video.
	Subscribe bool
	// TTL is the token lifetime; zero means the RoomTokens default.
	TTL time.Duration
	// ExpiresAt is set by Verify to the token's expiry; Issue ignores it.
	ExpiresAt time.Time
}

// roomClaims is the JSON body of a room token.
type roomClaims struct {
	jwt.RegisteredClaims
	ConsultID string `json:"cid"`
	Publish   bool   `json:"can_publish"`
	Subscribe bool   `json:"can_subscribe"`
}

// RoomTokensConfig configures RoomTokens.
type RoomTokensConfig struct {
	// Keys signs and verifies tokens. Required.
	Keys KeySource
	// Issuer is the "iss" claim written and required. Required.
	Issuer string
	// Audience is the "aud" claim written and required; DefaultRoomAudience if empty.
	Audience string
	// TTL is the default token lifetime; DefaultRoomTokenTTL if zero.
	TTL time.Duration
	// Leeway tolerates clock skew when checking exp/nbf/iat; 30 s if zero.
	Leeway time.Duration
	// Now is the clock; time.Now if nil.
	Now func() time.Time
}

// RoomTokens issues and verifies consult room tokens: short-lived EdDSA JWTs with
// header typ "consult+jwt", their own audience, bound to one consult and one user.
type RoomTokens struct {
	cfg    RoomTokensConfig
	parser *jwt.Parser
}

// NewRoomTokens validates cfg, fills its defaults and returns a RoomTokens.
func NewRoomTokens(cfg RoomTokensConfig) (*RoomTokens, error) {
	if cfg.Keys == nil {
		return nil, errors.New("consult: RoomTokensConfig.Keys is required")
	}
	if cfg.Issuer == "" {
		return nil, errors.New("consult: RoomTokensConfig.Issuer is required")
	}
	if cfg.Audience == "" {
		cfg.Audience = DefaultRoomAudience
	}
	if cfg.TTL <= 0 {
		cfg.TTL = DefaultRoomTokenTTL
	}
	if cfg.TTL > maxRoomTokenTTL {
		return nil, fmt.Errorf("consult: room token TTL %s is over %s", cfg.TTL, maxRoomTokenTTL)
	}
	if cfg.Leeway <= 0 {
		cfg.Leeway = 30 * time.Second
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	t := &RoomTokens{cfg: cfg}
	t.parser = jwt.NewParser(
		jwt.WithValidMethods([]string{jwt.SigningMethodEdDSA.Alg()}),
		jwt.WithIssuer(cfg.Issuer),
		jwt.WithAudience(cfg.Audience),
		jwt.WithExpirationRequired(),
		jwt.WithIssuedAt(),
		jwt.WithLeeway(cfg.Leeway),
		jwt.WithTimeFunc(cfg.Now),
	)
	return t, nil
}

// Issue signs a room token for g and returns it with its expiry.
func (t *RoomTokens) Issue(g RoomGrant) (token string, expiresAt time.Time, err error) {
	if g.ConsultID == "" || g.UserID == "" {
		return "", time.Time{}, errors.New("consult: a room grant needs a consult id and a user id")
	}
	if !g.Publish && !g.Subscribe {
		return "", time.Time{}, errors.New("consult: a room grant needs publish or subscribe")
	}
	ttl := g.TTL
	if ttl <= 0 {
		ttl = t.cfg.TTL
	}
	if ttl > maxRoomTokenTTL {
		return "", time.Time{}, fmt.Errorf("consult: room token TTL %s is over %s", ttl, maxRoomTokenTTL)
	}
	kid, key := t.cfg.Keys.SigningKey()
	if len(key) != ed25519.PrivateKeySize {
		return "", time.Time{}, errors.New("consult: key source returned no Ed25519 signing key")
	}
	now := t.cfg.Now()
	exp := now.Add(ttl)
	claims := roomClaims{
		RegisteredClaims: jwt.RegisteredClaims{
			Issuer:    t.cfg.Issuer,
			Subject:   g.UserID,
			Audience:  jwt.ClaimStrings{t.cfg.Audience},
			IssuedAt:  jwt.NewNumericDate(now),
			NotBefore: jwt.NewNumericDate(now),
			ExpiresAt: jwt.NewNumericDate(exp),
		},
		ConsultID: g.ConsultID,
		Publish:   g.Publish,
		Subscribe: g.Subscribe,
	}
	tok := jwt.NewWithClaims(jwt.SigningMethodEdDSA, claims)
	tok.Header["typ"] = RoomTokenType
	tok.Header["kid"] = kid
	s, err := tok.SignedString(key)
	if err != nil {
		return "", time.Time{}, fmt.Errorf("consult: sign room token: %w", err)
	}
	return s, exp.Truncate(time.Second), nil
}

// Verify checks a room token (signature with alg pinned to EdDSA, typ, iss, aud, exp,
// iat) and that it is bound to consultID. It returns ErrTokenInvalid,
// ErrTokenExpired or ErrTokenWrongConsult (wrapped) on failure.
func (t *RoomTokens) Verify(token, consultID string) (RoomGrant, error) {
	var claims roomClaims
	_, err := t.parser.ParseWithClaims(token, &claims, func(tok *jwt.Token) (any, error) {
		typ, _ := tok.Header["typ"].(string)
		if !isRoomTokenType(typ) {
			return nil, fmt.Errorf("token type %q is not %q", typ, RoomTokenType)
		}
		kid, _ := tok.Header["kid"].(string)
		pub, ok := t.cfg.Keys.PublicKey(kid)
		if !ok {
			return nil, fmt.Errorf("unknown key id %q", kid)
		}
		return pub, nil
	})
	switch {
	case errors.Is(err, jwt.ErrTokenExpired), errors.Is(err, jwt.ErrTokenNotValidYet),
		errors.Is(err, jwt.ErrTokenUsedBeforeIssued):
		return RoomGrant{}, fmt.Errorf("%w: %v", ErrTokenExpired, err)
	case err != nil:
		return RoomGrant{}, fmt.Errorf("%w: %v", ErrTokenInvalid, err)
	}
	if claims.Subject == "" || claims.ConsultID == "" {
		return RoomGrant{}, fmt.Errorf("%w: missing subject or consult id", ErrTokenInvalid)
	}
	if claims.ConsultID != consultID {
		return RoomGrant{}, ErrTokenWrongConsult
	}
	g := RoomGrant{
		ConsultID: claims.ConsultID,
		UserID:    claims.Subject,
		Publish:   claims.Publish,
		Subscribe: claims.Subscribe,
	}
	if claims.ExpiresAt != nil {
		g.ExpiresAt = claims.ExpiresAt.Time
	}
	return g, nil
}

// isRoomTokenType compares a typ header with RoomTokenType the way RFC 7515 asks
// (case-insensitive, optional "application/" prefix).
func isRoomTokenType(typ string) bool {
	typ = strings.ToLower(typ)
	typ = strings.TrimPrefix(typ, "application/")
	return typ == RoomTokenType
}
