package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/golang-jwt/jwt/v5"

	"github.com/qinba/qinba/auth"
)

// serverKey reads the server's current signing key from the database, as
// a second server instance would.
func serverKey(t *testing.T, ts *testServer) (string, ed25519.PrivateKey) {
	t.Helper()
	ks, err := auth.OpenKeyStore(context.Background(), ts.Pool, auth.KeyStoreConfig{})
	if err != nil {
		t.Fatal(err)
	}
	return ks.SigningKey()
}

// craft signs claims with key under header fields hdr (alg EdDSA).
func craft(t *testing.T, key ed25519.PrivateKey, hdr map[string]any, claims jwt.MapClaims) string {
	t.Helper()
	tok := jwt.NewWithClaims(jwt.SigningMethodEdDSA, claims)
	for k, v := range hdr {
		tok.Header[k] = v
	}
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func b64(v any) string {
	js, _ := json.Marshal(v)
	return base64.RawURLEncoding.EncodeToString(js)
}

func TestForgedTokensAreRefused(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t)
	name, _ := ts.user(t, auth.RoleDoctor, facTownship)
	u, err := auth.GetUserByName(context.Background(), ts.Pool, name)
	if err != nil {
		t.Fatal(err)
	}
	kid, key := serverKey(t, ts)
	pub := key.Public().(ed25519.PublicKey)
	now := time.Now()
	good := func() jwt.MapClaims {
		return jwt.MapClaims{"iss": "qinba-test", "aud": []string{auth.Audience}, "sub": strconv.FormatInt(u.ID, 10),
			"exp": now.Add(10 * time.Minute).Unix(), "nbf": now.Unix(), "iat": now.Unix(), "jti": "j1"}
	}
	with := func(k string, v any) jwt.MapClaims {
		c := good()
		if v == nil {
			delete(c, k)
		} else {
			c[k] = v
		}
		return c
	}
	hdr := map[string]any{"kid": kid, "typ": "at+jwt"}

	// The control: a token crafted like the server's is accepted, so each
	// refusal below is down to the one thing changed.
	control := craft(t, key, hdr, good())
	if st, body := ts.do(t, "GET", "/api/v1/auth/me", bearer(control), nil); st != http.StatusOK {
		t.Fatalf("well-formed token refused: %d %v", st, body)
	}

	parts := strings.Split(control, ".")
	hs256 := func() string {
		// HS256 "signed" with the public key bytes: the classic key-confusion attack.
		tok := jwt.NewWithClaims(jwt.SigningMethodHS256, good())
		tok.Header["kid"], tok.Header["typ"] = kid, "at+jwt"
		s, err := tok.SignedString([]byte(pub))
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	_, otherKey, _ := ed25519.GenerateKey(rand.Reader)
	tampered := func() string {
		c := good()
		c["jti"] = "j2"
		return parts[0] + "." + b64(c) + "." + parts[2]
	}

	forged := map[string]string{
		"alg none":                  b64(map[string]any{"alg": "none", "typ": "at+jwt", "kid": kid}) + "." + parts[1] + ".",
		"alg none, no signature":    b64(map[string]any{"alg": "none", "typ": "at+jwt", "kid": kid}) + "." + parts[1],
		"HS256 with the public key": hs256(),
		"expired":                   craft(t, key, hdr, with("exp", now.Add(-time.Hour).Unix())),
		"not yet valid":             craft(t, key, hdr, with("nbf", now.Add(time.Hour).Unix())),
		"issued in the future":      craft(t, key, hdr, with("iat", now.Add(time.Hour).Unix())),
		"wrong aud":                 craft(t, key, hdr, with("aud", []string{"qinba-consult"})),
		"no aud":                    craft(t, key, hdr, with("aud", nil)),
		"wrong iss":                 craft(t, key, hdr, with("iss", "https://evil.example")),
		"no exp":                    craft(t, key, hdr, with("exp", nil)),
		"no nbf":                    craft(t, key, hdr, with("nbf", nil)),
		"no jti":                    craft(t, key, hdr, with("jti", nil)),
		"lifetime too long":         craft(t, key, hdr, with("exp", now.Add(24*time.Hour).Unix())),
		"sub not a user":            craft(t, key, hdr, with("sub", "999999")),
		"sub not a number":          craft(t, key, hdr, with("sub", "admin")),
		"wrong typ consult+jwt":     craft(t, key, map[string]any{"kid": kid, "typ": "consult+jwt"}, good()),
		"typ JWT":                   craft(t, key, map[string]any{"kid": kid, "typ": "JWT"}, good()),
		"no typ":                    craft(t, key, map[string]any{"kid": kid}, good()),
		"unknown kid":               craft(t, key, map[string]any{"kid": "no-such-kid", "typ": "at+jwt"}, good()),
		"no kid":                    craft(t, key, map[string]any{"typ": "at+jwt"}, good()),
		"crit header":               craft(t, key, map[string]any{"kid": kid, "typ": "at+jwt", "crit": []string{"exp"}}, good()),
		"signed by another key":     craft(t, otherKey, hdr, good()),
		"tampered payload":          tampered(),
		"tampered signature":        parts[0] + "." + parts[1] + "." + strings.Repeat("A", len(parts[2])),
		"padded base64":             parts[0] + "=." + parts[1] + "." + parts[2],
		"oversized":                 strings.Repeat("a", 5000),
	}
	for name, tok := range forged {
		t.Run(name, func(t *testing.T) {
			st, body := ts.do(t, "GET", "/api/v1/auth/me", bearer(tok), nil)
			if st != http.StatusUnauthorized || errCode(body) != "unauthenticated" {
				t.Errorf("status %d %v, want 401 unauthenticated", st, body)
			}
		})
	}
	// Wrong scheme and a token in the wrong header are not credentials.
	for _, h := range []string{"Basic " + control, "Bearer", "Bearer  ", control} {
		req, _ := http.NewRequest("GET", ts.URL+"/api/v1/auth/me", nil)
		req.Header.Set("Authorization", h)
		resp, err := ts.client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("Authorization %.20q: status %d, want 401", h, resp.StatusCode)
		}
	}
}

// The JWKS verifies our access token in an independent library.
func TestJWKSVerifiesTokenWithGoJose(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t)
	name, pw := ts.user(t, auth.RoleBillingClerk, facCounty)
	tok := ts.login(t, name, pw)

	resp, raw := ts.raw(t, "GET", "/.well-known/jwks.json", token{}, "", nil)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("jwks: %d", resp.StatusCode)
	}
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(raw, &set); err != nil {
		t.Fatalf("parse jwks with go-jose: %v\n%s", err, raw)
	}
	if len(set.Keys) == 0 {
		t.Fatal("empty jwks")
	}
	for _, k := range set.Keys {
		if k.Algorithm != "EdDSA" || k.Use != "sig" || k.KeyID == "" || !k.IsPublic() {
			t.Errorf("jwk %+v: want a public EdDSA signing key with a kid", k)
		}
		if _, ok := k.Key.(ed25519.PublicKey); !ok {
			t.Errorf("jwk %s holds %T, want ed25519.PublicKey", k.KeyID, k.Key)
		}
		if !bytes.Contains(raw, []byte(`"kty":"OKP"`)) || !bytes.Contains(raw, []byte(`"crv":"Ed25519"`)) {
			t.Errorf("jwks is not OKP/Ed25519: %s", raw)
		}
	}

	jws, err := jose.ParseSigned(tok.Access, []jose.SignatureAlgorithm{jose.EdDSA})
	if err != nil {
		t.Fatal(err)
	}
	hdr := jws.Signatures[0].Header
	if typ, _ := hdr.ExtraHeaders["typ"].(string); typ != "at+jwt" {
		t.Errorf("typ header %q", typ)
	}
	keys := set.Key(hdr.KeyID)
	if len(keys) != 1 {
		t.Fatalf("kid %q: %d keys in the jwks", hdr.KeyID, len(keys))
	}
	payload, err := jws.Verify(keys[0])
	if err != nil {
		t.Fatalf("go-jose does not verify our token with our jwks: %v", err)
	}
	var claims map[string]any
	if err := json.Unmarshal(payload, &claims); err != nil {
		t.Fatal(err)
	}
	for _, c := range []string{"iss", "aud", "sub", "exp", "iat", "nbf", "jti"} {
		if claims[c] == nil {
			t.Errorf("claim %s missing: %v", c, claims)
		}
	}
	if claims["iss"] != "qinba-test" || !strings.Contains(jsonString(claims["aud"]), auth.Audience) {
		t.Errorf("iss/aud: %v", claims)
	}
	if exp, iat := claims["exp"].(float64), claims["iat"].(float64); exp-iat != 15*60 {
		t.Errorf("lifetime %v s, want 900", exp-iat)
	}
	// A token changed by one byte fails in go-jose too.
	bad := flipSignature(tok.Access)
	if j, err := jose.ParseSigned(bad, []jose.SignatureAlgorithm{jose.EdDSA}); err == nil {
		if _, err := j.Verify(keys[0]); err == nil {
			t.Error("go-jose verified a tampered token")
		}
	}
}

// flipSignature changes one character in the middle of a JWS's signature.
func flipSignature(raw string) string {
	i := strings.LastIndexByte(raw, '.') + 20
	c := byte('A')
	if raw[i] == 'A' {
		c = 'B'
	}
	return raw[:i] + string(c) + raw[i+1:]
}

func jsonString(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

func TestRefreshRotationAndReuseRevokesFamily(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t)
	name, pw := ts.user(t, auth.RoleVillageDoctor, facVillage)
	first := ts.login(t, name, pw)

	refresh := func(rt string) (int, map[string]any) {
		return ts.do(t, "POST", "/api/v1/auth/refresh", token{}, map[string]string{"refresh_token": rt})
	}
	st, b := refresh(first.Refresh)
	if st != http.StatusOK {
		t.Fatalf("refresh: %d %v", st, b)
	}
	second := token{Access: b["access_token"].(string), Refresh: b["refresh_token"].(string)}
	if second.Refresh == first.Refresh || second.Access == first.Access {
		t.Fatal("refresh did not rotate the tokens")
	}
	if st, _ := ts.do(t, "GET", "/api/v1/auth/me", second, nil); st != http.StatusOK {
		t.Fatalf("new access token: %d", st)
	}
	// A second login is a separate family, untouched by what follows.
	other := ts.login(t, name, pw)

	// The old refresh token comes back: stolen. The family is revoked.
	if st, b := refresh(first.Refresh); st != http.StatusUnauthorized {
		t.Fatalf("reused refresh token: %d %v, want 401", st, b)
	}
	if st, b := refresh(second.Refresh); st != http.StatusUnauthorized {
		t.Fatalf("the family's current token after a reuse: %d %v, want 401", st, b)
	}
	if st, b := refresh(other.Refresh); st != http.StatusOK {
		t.Fatalf("another session was revoked too: %d %v", st, b)
	}
	var n int
	if err := ts.Pool.QueryRow(context.Background(), `SELECT count(*) FROM audit_log WHERE action = 'refresh_reuse' AND username = $1`, name).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 1 {
		t.Errorf("%d refresh_reuse audit entries, want 1", n)
	}
	// Only hashes are stored.
	var clear, hashed int
	if err := ts.Pool.QueryRow(context.Background(), `SELECT count(*) FILTER (WHERE token_hash = $1), count(*) FILTER (WHERE token_hash = sha256($1))
		FROM refresh_token`, []byte(second.Refresh)).Scan(&clear, &hashed); err != nil {
		t.Fatal(err)
	}
	if clear != 0 || hashed != 1 {
		t.Errorf("refresh token stored in clear %d times, as its SHA-256 %d times; want 0 and 1", clear, hashed)
	}

	// Logout ends a session; the refresh token is dead afterwards.
	third := ts.login(t, name, pw)
	if st, b := ts.do(t, "POST", "/api/v1/auth/logout", third, map[string]string{"refresh_token": third.Refresh}); st != http.StatusNoContent {
		t.Fatalf("logout: %d %v", st, b)
	}
	if st, _ := refresh(third.Refresh); st != http.StatusUnauthorized {
		t.Fatalf("refresh after logout: %d, want 401", st)
	}
	// Logging out another user's session does nothing.
	victim, vpw := ts.user(t, auth.RoleDoctor, facTownship)
	vt := ts.login(t, victim, vpw)
	if st, _ := ts.do(t, "POST", "/api/v1/auth/logout", other, map[string]string{"refresh_token": vt.Refresh}); st != http.StatusNoContent {
		t.Fatalf("logout with a foreign token: %d", st)
	}
	if st, _ := refresh(vt.Refresh); st != http.StatusOK {
		t.Fatal("another user's session was ended by a logout")
	}
	for _, bad := range []any{map[string]string{"refresh_token": "nope"}, map[string]string{"refresh_token": ""}, `{"refresh_token": 1}`, `{"token":"x"}`} {
		if st, _ := ts.do(t, "POST", "/api/v1/auth/refresh", token{}, bad); st != http.StatusUnauthorized && st != http.StatusBadRequest {
			t.Errorf("refresh %v: %d", bad, st)
		}
	}
}

func TestKeysRotate(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t)
	name, pw := ts.user(t, auth.RoleAdmin, facCounty)
	before := ts.login(t, name, pw)
	oldKid := kidOf(t, before.Access)

	var out, errOut bytes.Buffer
	env := &Env{Stdin: strings.NewReader(""), Stdout: &out, Stderr: &errOut, Getenv: func(string) string { return "" }}
	if err := Run(context.Background(), env, []string{"keys", "rotate", "--database-url", ts.DBURL}); err != nil {
		t.Fatalf("keys rotate: %v\n%s", err, errOut.String())
	}
	if !strings.Contains(out.String(), "new signing key") {
		t.Errorf("keys rotate printed %q", out.String())
	}
	// The running server learns of the rotation by notification.
	var newKid string
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if newKid = kidOf(t, ts.mint(t, name).Access); newKid != oldKid {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if newKid == oldKid {
		t.Fatal("the server still signs with the old key after keys rotate")
	}
	after := ts.login(t, name, pw)
	if kidOf(t, after.Access) != newKid {
		t.Errorf("login token kid %s, want the new %s", kidOf(t, after.Access), newKid)
	}
	for label, tok := range map[string]token{"signed before the rotation": before, "signed after": after} {
		if st, b := ts.do(t, "GET", "/api/v1/auth/me", tok, nil); st != http.StatusOK {
			t.Errorf("token %s: %d %v", label, st, b)
		}
	}
	_, raw := ts.raw(t, "GET", "/.well-known/jwks.json", token{}, "", nil)
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(raw, &set); err != nil {
		t.Fatal(err)
	}
	if len(set.Key(oldKid)) != 1 || len(set.Key(newKid)) != 1 {
		t.Errorf("jwks after rotation should publish both %s and %s: %s", oldKid, newKid, raw)
	}
	out.Reset()
	if err := Run(context.Background(), env, []string{"keys", "list", "--database-url", ts.DBURL}); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), newKid+"  ") || !strings.Contains(out.String(), "current") || !strings.Contains(out.String(), "published") {
		t.Errorf("keys list:\n%s", out.String())
	}
}

func kidOf(t *testing.T, raw string) string {
	t.Helper()
	tok, _, err := jwt.NewParser().ParseUnverified(raw, jwt.MapClaims{})
	if err != nil {
		t.Fatal(err)
	}
	kid, _ := tok.Header["kid"].(string)
	return kid
}
