package consult

import (
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

func TestRoomTokens(t *testing.T) {
	t.Parallel()
	keys := newMemKeys(t, "k1")
	now := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	clock := func() time.Time { return now }
	tokens, err := NewRoomTokens(RoomTokensConfig{Keys: keys, Issuer: "qinba", Now: clock})
	if err != nil {
		t.Fatal(err)
	}
	grant := RoomGrant{ConsultID: "c1", UserID: "u1", Publish: true, Subscribe: true}
	good, exp, err := tokens.Issue(grant)
	if err != nil {
		t.Fatal(err)
	}
	if want := now.Add(DefaultRoomTokenTTL); !exp.Equal(want) {
		t.Errorf("expiry = %v, want %v", exp, want)
	}

	// sign builds a token with the given header typ, claims and key.
	sign := func(typ string, method jwt.SigningMethod, key any, mutate func(*roomClaims)) string {
		c := roomClaims{
			RegisteredClaims: jwt.RegisteredClaims{
				Issuer: "qinba", Subject: "u1", Audience: jwt.ClaimStrings{DefaultRoomAudience},
				IssuedAt: jwt.NewNumericDate(now), ExpiresAt: jwt.NewNumericDate(now.Add(time.Minute)),
			},
			ConsultID: "c1", Publish: true, Subscribe: true,
		}
		if mutate != nil {
			mutate(&c)
		}
		tok := jwt.NewWithClaims(method, c)
		tok.Header["kid"] = "k1"
		if typ != "" {
			tok.Header["typ"] = typ
		}
		s, err := tok.SignedString(key)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	_, otherKey, _ := ed25519.GenerateKey(rand.Reader)
	pub, _ := keys.PublicKey("k1")
	expired, _, err := tokens.Issue(RoomGrant{ConsultID: "c1", UserID: "u1", Publish: true, TTL: time.Second})
	if err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name    string
		token   string
		consult string
		advance time.Duration
		want    error
	}{
		{name: "valid", token: good, consult: "c1"},
		{name: "valid typ with application prefix", token: sign("application/consult+jwt", jwt.SigningMethodEdDSA, keys.priv, nil), consult: "c1"},
		{name: "other consult", token: good, consult: "c2", want: ErrTokenWrongConsult},
		{name: "expired", token: expired, consult: "c1", advance: time.Minute, want: ErrTokenExpired},
		{name: "forged signature", token: sign(RoomTokenType, jwt.SigningMethodEdDSA, otherKey, nil), consult: "c1", want: ErrTokenInvalid},
		{name: "access token type", token: sign("at+jwt", jwt.SigningMethodEdDSA, keys.priv, nil), consult: "c1", want: ErrTokenInvalid},
		{name: "plain JWT type", token: sign("JWT", jwt.SigningMethodEdDSA, keys.priv, nil), consult: "c1", want: ErrTokenInvalid},
		{name: "no type", token: sign("", jwt.SigningMethodEdDSA, keys.priv, nil), consult: "c1", want: ErrTokenInvalid},
		{name: "HMAC with the public key (alg confusion)", token: sign(RoomTokenType, jwt.SigningMethodHS256, []byte(pub), nil), consult: "c1", want: ErrTokenInvalid},
		{name: "alg none", token: sign(RoomTokenType, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, nil), consult: "c1", want: ErrTokenInvalid},
		{name: "wrong audience", token: sign(RoomTokenType, jwt.SigningMethodEdDSA, keys.priv, func(c *roomClaims) { c.Audience = jwt.ClaimStrings{"qinba-api"} }), consult: "c1", want: ErrTokenInvalid},
		{name: "wrong issuer", token: sign(RoomTokenType, jwt.SigningMethodEdDSA, keys.priv, func(c *roomClaims) { c.Issuer = "evil" }), consult: "c1", want: ErrTokenInvalid},
		{name: "no expiry", token: sign(RoomTokenType, jwt.SigningMethodEdDSA, keys.priv, func(c *roomClaims) { c.ExpiresAt = nil }), consult: "c1", want: ErrTokenInvalid},
		{name: "no subject", token: sign(RoomTokenType, jwt.SigningMethodEdDSA, keys.priv, func(c *roomClaims) { c.Subject = "" }), consult: "c1", want: ErrTokenInvalid},
		{name: "issued in the future", token: sign(RoomTokenType, jwt.SigningMethodEdDSA, keys.priv, func(c *roomClaims) { c.IssuedAt = jwt.NewNumericDate(now.Add(time.Hour)) }), consult: "c1", want: ErrTokenExpired},
		{name: "garbage", token: "not.a.jwt", consult: "c1", want: ErrTokenInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tk, err := NewRoomTokens(RoomTokensConfig{Keys: keys, Issuer: "qinba", Now: func() time.Time { return now.Add(tt.advance) }})
			if err != nil {
				t.Fatal(err)
			}
			g, err := tk.Verify(tt.token, tt.consult)
			if tt.want != nil {
				if !errors.Is(err, tt.want) {
					t.Fatalf("err = %v, want %v", err, tt.want)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if g.ConsultID != "c1" || g.UserID != "u1" || !g.Publish || !g.Subscribe || g.ExpiresAt.IsZero() {
				t.Errorf("grant = %+v", g)
			}
		})
	}
}

func TestRoomTokensRejectUnknownKeyAfterRotation(t *testing.T) {
	t.Parallel()
	keys := newMemKeys(t, "k1")
	tokens, err := NewRoomTokens(RoomTokensConfig{Keys: keys, Issuer: "qinba"})
	if err != nil {
		t.Fatal(err)
	}
	tok, _, err := tokens.Issue(RoomGrant{ConsultID: "c1", UserID: "u1", Subscribe: true})
	if err != nil {
		t.Fatal(err)
	}
	delete(keys.pubs, "k1") // the key was retired
	if _, err := tokens.Verify(tok, "c1"); !errors.Is(err, ErrTokenInvalid) {
		t.Fatalf("err = %v, want ErrTokenInvalid", err)
	}
}

func TestRoomTokensIssueValidates(t *testing.T) {
	t.Parallel()
	tokens, err := NewRoomTokens(RoomTokensConfig{Keys: newMemKeys(t, "k"), Issuer: "qinba"})
	if err != nil {
		t.Fatal(err)
	}
	for _, g := range []RoomGrant{
		{UserID: "u", Publish: true},
		{ConsultID: "c", Publish: true},
		{ConsultID: "c", UserID: "u"},
		{ConsultID: "c", UserID: "u", Publish: true, TTL: 2 * time.Hour},
	} {
		if _, _, err := tokens.Issue(g); err == nil {
			t.Errorf("Issue(%+v) succeeded", g)
		}
	}
	if _, err := NewRoomTokens(RoomTokensConfig{Issuer: "x"}); err == nil {
		t.Error("NewRoomTokens without keys succeeded")
	}
}
