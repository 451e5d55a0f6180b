package auth

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"fmt"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"go.uber.org/goleak"

	"github.com/qinba/qinba/facility"
	"github.com/qinba/qinba/internal/apperr"
	"github.com/qinba/qinba/internal/dbtest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// fakeClock is a settable clock for lifetimes, buckets and lockouts.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *fakeClock { return &fakeClock{t: time.Now().Truncate(time.Second)} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// cheap are hashing costs for tests that hash a lot.
var cheap = HashParams{Memory: 64, Time: 1, Threads: 1, SaltLen: 16, KeyLen: 32}

// bundle is a service on a fresh database with the demo facilities and a
// second region (420625).
type bundle struct {
	pool  *pgxpool.Pool
	clock *fakeClock
	keys  *KeyStore
	svc   *Service
}

func setup(t *testing.T, limits LoginLimits) *bundle {
	t.Helper()
	ctx := context.Background()
	pool := dbtest.New(t)
	other := "code,name,tier,parent_code,region_code\nK420625-01,测试县人民医院,county,C4206-01,420625\nT420625-01,测试镇卫生院,township,K420625-01,420625\n"
	for _, csv := range [][]byte{facility.DemoCSV, []byte(other)} {
		if _, err := facility.Import(ctx, pool, bytes.NewReader(csv)); err != nil {
			t.Fatal(err)
		}
	}
	clock := newClock()
	keys, err := OpenKeyStore(ctx, pool, KeyStoreConfig{Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	svc, err := NewService(pool, keys, Config{Issuer: "test", HashParams: cheap, Limits: limits, Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	return &bundle{pool: pool, clock: clock, keys: keys, svc: svc}
}

func (b *bundle) user(t *testing.T, name string, role Role, fac string) User {
	t.Helper()
	u, err := CreateUser(context.Background(), b.pool, NewUser{Username: name, Password: "password-" + name, Role: role, Facility: fac, Params: cheap})
	if err != nil {
		t.Fatal(err)
	}
	return u
}

func TestPasswordHash(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	h, err := HashPassword(ctx, "correct horse", cheap)
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`^\$argon2id\$v=19\$m=64,t=1,p=1\$[A-Za-z0-9+/]{22}\$[A-Za-z0-9+/]{43}$`).MatchString(h) {
		t.Errorf("hash %q is not a PHC argon2id string", h)
	}
	h2, _ := HashPassword(ctx, "correct horse", cheap)
	if h == h2 {
		t.Error("two hashes of one password are equal: no salt?")
	}
	if ok, _, err := VerifyPassword(ctx, "correct horse", h, cheap); !ok || err != nil {
		t.Errorf("right password: %v %v", ok, err)
	}
	if ok, _, _ := VerifyPassword(ctx, "correct horsE", h, cheap); ok {
		t.Error("wrong password accepted")
	}
	if _, rehash, _ := VerifyPassword(ctx, "correct horse", h, DefaultHashParams); !rehash {
		t.Error("a weaker hash is not flagged for rehashing")
	}
	for _, bad := range []string{"", "$argon2i$v=19$m=64,t=1,p=1$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNoaGFzaA",
		"$argon2id$v=18$m=64,t=1,p=1$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNoaGFzaA",
		"$argon2id$v=19$m=99999999,t=1,p=1$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNoaGFzaA",
		"$argon2id$v=19$m=64,t=1000,p=1$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNoaGFzaA",
		"$argon2id$v=19$m=64,t=1,p=1$!!$aGFzaGhhc2hoYXNoaGFzaA", "$argon2id$v=19$m=64,t=1,p=1$c2FsdHNhbHRzYWx0$aA",
		"$argon2id$v=19$m=64,t=1,p=1$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNoaGFzaA$x", "bcrypt$2a$10$xyz"} {
		if _, _, err := VerifyPassword(ctx, "x", bad, cheap); err == nil {
			t.Errorf("malformed hash %q accepted", bad)
		}
	}
	for pw, ok := range map[string]bool{"123456789": false, "1234567890": true, "密码密码密码密码密码密": true, strings.Repeat("x", 257): false, "\xff\xfe234567890": false} {
		if err := CheckPassword(pw, "someone"); (err == nil) != ok {
			t.Errorf("CheckPassword(%q) = %v", pw, err)
		}
	}
}

func TestLimiter(t *testing.T) {
	t.Parallel()
	c := newClock()
	l := newLimiter(3, 10*time.Second, c.Now)
	for i := range 3 {
		if ok, _ := l.take("a"); !ok {
			t.Fatalf("attempt %d refused within the burst", i)
		}
	}
	ok, wait := l.take("a")
	if ok || wait != 10*time.Second {
		t.Fatalf("4th attempt: %v, wait %v", ok, wait)
	}
	if ok, _ := l.take("b"); !ok {
		t.Error("another key shares the bucket")
	}
	c.Add(5 * time.Second)
	if ok, wait := l.take("a"); ok || wait != 5*time.Second {
		t.Errorf("half refilled: %v %v", ok, wait)
	}
	c.Add(5 * time.Second)
	if ok, _ := l.take("a"); !ok {
		t.Error("not refilled after 10 s")
	}
	c.Add(time.Hour)
	l.prune()
	if len(l.m) != 0 {
		t.Errorf("%d full buckets not pruned", len(l.m))
	}
}

func TestMaskIDNumbers(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"420626199001011234":                        "420626********1234",
		"42062619900101123X":                        "420626********123X",
		"ids 420626199001011234,420626198512120011": "ids 420626********1234,420626********0011",
		"4206261990010112345":                       "4206261990010112345", // 19 digits: not an id number
		"phone 13800138000":                         "phone 13800138000",
		"":                                          "",
	} {
		if got := MaskIDNumbers(in); got != want {
			t.Errorf("MaskIDNumbers(%q) = %q, want %q", in, got, want)
		}
	}
	v := maskValue(map[string]any{"a": []any{"x 420626199001011234"}, "b": map[string]any{"c": "420626199001011234"}, "n": 3})
	if s := strings.Join([]string{v.(map[string]any)["a"].([]any)[0].(string), v.(map[string]any)["b"].(map[string]any)["c"].(string)}, " "); strings.Contains(s, "19900101") {
		t.Errorf("nested detail not masked: %v", v)
	}
}

func TestScope(t *testing.T) {
	t.Parallel()
	b := setup(t, LoginLimits{})
	ctx := context.Background()
	s := &Scope{DB: b.pool}
	village := &Principal{UserID: 1, Username: "v", Role: RoleVillageDoctor, Facility: "V420626-001", Tier: "village", Region: "420626"}
	doctor := &Principal{UserID: 2, Username: "d", Role: RoleDoctor, Facility: "T420626-01", Tier: "township", Region: "420626"}
	admin := &Principal{UserID: 3, Username: "a", Role: RoleAdmin, Facility: "K420626-01", Tier: "county", Region: "420626"}
	auditor := &Principal{UserID: 4, Username: "au", Role: RoleAuditor, Facility: "K420626-01", Tier: "county", Region: "420626"}
	clerk := &Principal{UserID: 5, Username: "c", Role: RoleBillingClerk, Facility: "K420626-01", Tier: "county", Region: "420626"}
	forged := &Principal{UserID: 6, Username: "f", Role: "root", Facility: "K420626-01", Region: "420626"}
	tests := []struct {
		name string
		p    *Principal
		facs []string
		want bool
	}{
		{"own facility", village, []string{"V420626-001"}, true},
		{"another village", village, []string{"V420626-002"}, false},
		{"own township's village", doctor, []string{"V420626-001"}, false},
		{"referral: sender", village, []string{"V420626-001", "T420626-01"}, true},
		{"referral: receiver", doctor, []string{"V420626-001", "T420626-01"}, true},
		{"referral: neither", clerk, []string{"V420626-001", "T420626-01"}, false},
		{"billing own", clerk, []string{"K420626-01"}, true},
		{"admin: region", admin, []string{"V420626-077"}, true},
		{"admin: other region", admin, []string{"T420625-01"}, false},
		{"admin: city (region 420600)", admin, []string{"C4206-01"}, false},
		{"admin: unknown facility", admin, []string{"NOPE"}, false},
		{"admin: nothing named", admin, nil, false},
		{"auditor: own facility", auditor, []string{"K420626-01"}, false},
		{"unknown role", forged, []string{"K420626-01"}, false},
		{"no principal", nil, []string{"K420626-01"}, false},
		{"empty facility", &Principal{Role: RoleDoctor}, []string{""}, false},
	}
	for _, tt := range tests {
		got, err := s.CanSee(ctx, tt.p, tt.facs...)
		if err != nil || got != tt.want {
			t.Errorf("%s: CanSee = %v, %v; want %v", tt.name, got, err, tt.want)
		}
	}

	pctx := WithMeta(WithPrincipal(ctx, doctor), RequestMeta{IP: "10.1.1.1", RequestID: "r-9"})
	if err := s.Check(pctx, doctor, DenyNotFound, "person", "77", "V420626-002"); !apperr.Is(err, apperr.NotFound) {
		t.Errorf("DenyNotFound: %v", err)
	}
	if err := s.Check(pctx, doctor, DenyForbidden, "referral", "5", "V420626-002", "K420626-01"); !apperr.Is(err, apperr.Forbidden) {
		t.Errorf("DenyForbidden: %v", err)
	}
	if err := s.Check(pctx, doctor, DenyNotFound, "person", "78", "T420626-01"); err != nil {
		t.Errorf("own: %v", err)
	}
	var n int
	if err := b.pool.QueryRow(ctx, `SELECT count(*) FROM audit_log WHERE action = 'deny' AND username = 'd' AND ip = '10.1.1.1' AND request_id = 'r-9'`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 2 {
		t.Errorf("%d denials audited, want 2", n)
	}

	for _, tt := range []struct {
		p        *Principal
		fac, reg string
	}{
		{village, "V420626-001", ""}, {admin, "", "420626"}, {auditor, NoFacility, ""}, {nil, NoFacility, ""},
		{&Principal{Role: RoleAdmin, Facility: "K420626-01"}, NoFacility, ""}, {forged, NoFacility, ""},
		{&Principal{Role: RoleDoctor}, NoFacility, ""},
	} {
		if f, r := ScopeFilter(tt.p); f != tt.fac || r != tt.reg || (f == "" && r == "") {
			t.Errorf("ScopeFilter(%+v) = %q, %q; want %q, %q", tt.p, f, r, tt.fac, tt.reg)
		}
	}
}

func TestAllowNeedsRoles(t *testing.T) {
	t.Parallel()
	for _, roles := range [][]Role{nil, {"root"}} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("Allow(%v) did not panic", roles)
				}
			}()
			Allow(nil, nil, roles...)
		}()
	}
}

func TestParseAuditFilter(t *testing.T) {
	t.Parallel()
	f, err := ParseAuditFilter(url.Values{"username": {"Demo.Admin"}, "action": {"login_failed"}, "record_type": {"person"},
		"record_id": {"42"}, "from": {"2019-06-01T08:00:00+08:00"}, "to": {"2019-06-02T08:00:00+08:00"}, "before": {"99"}, "limit": {"10"}})
	if err != nil {
		t.Fatal(err)
	}
	if f.Username != "demo.admin" || f.Action != "login_failed" || f.Before != 99 || f.Limit != 10 || f.From.IsZero() || f.To.IsZero() {
		t.Errorf("filter %+v", f)
	}
	if f, err := ParseAuditFilter(url.Values{}); err != nil || f.Limit != 100 {
		t.Errorf("default: %+v %v", f, err)
	}
	for q, field := range map[string]string{"limit=0": "limit", "limit=1001": "limit", "before=0": "before", "from=2019-06-01": "from",
		"action=Login": "action", "record_id=" + strings.Repeat("x", 129): "record_id", "x=1": "x", "username=a%27b": "username"} {
		v, _ := url.ParseQuery(q)
		_, err := ParseAuditFilter(v)
		if ae, ok := apperr.As(err); !ok || ae.Fields[field] == "" {
			t.Errorf("%s: %v, want a message for %s", q, err, field)
		}
	}
}

func TestKeyStoreEncryptionAndRetirement(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := dbtest.New(t)
	clock := newClock()
	secret := []byte("a secret of at least sixteen bytes")
	ks, err := OpenKeyStore(ctx, pool, KeyStoreConfig{Secret: secret, Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	kid1, key1 := ks.SigningKey()
	var enc string
	var stored []byte
	if err := pool.QueryRow(ctx, `SELECT enc, private_key FROM signing_key WHERE kid = $1`, kid1).Scan(&enc, &stored); err != nil {
		t.Fatal(err)
	}
	if enc != "a256gcm" || bytes.Contains(stored, key1.Seed()) {
		t.Errorf("key not encrypted at rest: enc %s", enc)
	}
	if _, err := OpenKeyStore(ctx, pool, KeyStoreConfig{}); err == nil || !strings.Contains(err.Error(), "QINBA_KEY_SECRET") {
		t.Errorf("encrypted keys opened without the secret: %v", err)
	}
	if _, err := OpenKeyStore(ctx, pool, KeyStoreConfig{Secret: []byte("another secret, also long")}); err == nil {
		t.Error("encrypted keys opened with the wrong secret")
	}
	if _, err := OpenKeyStore(ctx, pool, KeyStoreConfig{Secret: []byte("short")}); err == nil {
		t.Error("a short secret was accepted")
	}

	// A second instance on the same database agrees on the keys.
	ks2, err := OpenKeyStore(ctx, pool, KeyStoreConfig{Secret: secret, Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	clock.Add(time.Minute)
	kid2, err := ks.Rotate(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if k, _ := ks.SigningKey(); k != kid2 || kid2 == kid1 {
		t.Errorf("after rotation signing with %s, want the new %s", k, kid2)
	}
	// ks2 has not reloaded yet, but an unknown kid makes it look.
	if _, ok := ks2.PublicKey(kid2); !ok {
		t.Error("second instance does not find the new kid")
	}
	for _, tc := range []struct {
		after time.Duration
		old   bool
	}{{0, true}, {2*DefaultAccessTTL - time.Second, true}, {2*DefaultAccessTTL + time.Second, false}} {
		c := newClock()
		c.t = clock.Now().Add(tc.after)
		ks.cfg.Now = c.Now
		_, ok := ks.PublicKey(kid1)
		published := false
		for _, k := range ks.JWKS().Keys {
			published = published || k.Kid == kid1
		}
		if ok != tc.old || published != tc.old {
			t.Errorf("%v after rotation: old key valid %v, published %v; want %v", tc.after, ok, published, tc.old)
		}
		if _, ok := ks.PublicKey(kid2); !ok {
			t.Errorf("%v after rotation: current key not valid", tc.after)
		}
	}
	ks.cfg.Now = clock.Now
	if _, ok := ks.PublicKey("never-heard-of"); ok {
		t.Error("unknown kid accepted")
	}
	infos, err := ks.List(ctx)
	if err != nil || len(infos) != 2 || !infos[0].Current || !infos[1].Published || !infos[0].Encrypted {
		t.Errorf("List: %+v %v", infos, err)
	}
}

// KeyStore has the shape of package consult's KeySource.
var _ interface {
	SigningKey() (kid string, key ed25519.PrivateKey)
	PublicKey(kid string) (ed25519.PublicKey, bool)
} = (*KeyStore)(nil)

func TestKeyStoreConcurrentUse(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := dbtest.New(t)
	ks, err := OpenKeyStore(ctx, pool, KeyStoreConfig{ReloadEvery: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); _ = ks.Run(runCtx) }()
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for range 200 {
				kid, key := ks.SigningKey()
				if pub, ok := ks.PublicKey(kid); ok && !pub.Equal(key.Public()) {
					t.Error("public key does not match the signing key")
				}
				_ = ks.JWKS()
			}
		})
	}
	for range 3 {
		if _, err := ks.Rotate(ctx); err != nil {
			t.Fatal(err)
		}
	}
	wg.Wait()
	stop()
	<-done
}

func TestLoginThrottleAndLockoutExpiry(t *testing.T) {
	t.Parallel()
	limits := LoginLimits{IPBurst: 4, IPEvery: time.Minute, UserBurst: 100, UserEvery: time.Second,
		MaxFailures: 3, FailureWindow: 10 * time.Minute, LockFor: 10 * time.Minute}
	b := setup(t, limits)
	b.user(t, "li.na", RoleDoctor, "T420626-01")
	// Unknown users are checked against the dummy hash: it must parse (or
	// no argon2 would run and the answer would come back faster).
	if d := b.svc.dummy(); !ValidHash(d) || !strings.HasPrefix(d, "$argon2id$v=19$m=64,t=1,p=1$") {
		t.Fatalf("dummy hash %q", d)
	}
	ctx := WithMeta(context.Background(), RequestMeta{IP: "192.0.2.1"})
	other := WithMeta(context.Background(), RequestMeta{IP: "192.0.2.2"})

	// Per IP: 4 attempts, then 429 telling when to retry.
	for i := range 4 {
		if _, err := b.svc.Login(ctx, fmt.Sprintf("nobody.%d", i), "some-password"); !apperr.Is(err, apperr.Unauthenticated) {
			t.Fatalf("attempt %d: %v", i, err)
		}
	}
	_, err := b.svc.Login(ctx, "li.na", "password-li.na")
	ae, _ := apperr.As(err)
	if ae == nil || ae.Code != apperr.RateLimited || !strings.Contains(ae.Message, "try again in 60 seconds") || ae.Details["retry_after_seconds"] != 60 {
		t.Fatalf("5th attempt from one address: %v", err)
	}
	if _, err := b.svc.Login(other, "li.na", "password-li.na"); err != nil {
		t.Fatalf("another address is throttled too: %v", err)
	}

	// Lockout: 3 failures lock for 10 minutes, from whatever address; it
	// ends on time.
	n := 0
	fresh := func() context.Context {
		n++
		return WithMeta(context.Background(), RequestMeta{IP: fmt.Sprintf("198.51.100.%d", n)})
	}
	for range 3 {
		if _, err := b.svc.Login(fresh(), "li.na", "wrong-password"); !apperr.Is(err, apperr.Unauthenticated) {
			t.Fatal(err)
		}
	}
	_, err = b.svc.Login(fresh(), "li.na", "password-li.na")
	if ae, _ := apperr.As(err); ae == nil || ae.Code != apperr.RateLimited || !strings.Contains(ae.Message, "locked; try again in 10 minutes") {
		t.Fatalf("locked account: %v", err)
	}
	b.clock.Add(9 * time.Minute)
	if _, err := b.svc.Login(fresh(), "li.na", "password-li.na"); !apperr.Is(err, apperr.RateLimited) {
		t.Fatalf("still locked after 9 min: %v", err)
	}
	b.clock.Add(time.Minute + time.Second)
	// The failures before the lock do not count again: one more failure
	// does not re-lock.
	if _, err := b.svc.Login(fresh(), "li.na", "wrong-password"); !apperr.Is(err, apperr.Unauthenticated) {
		t.Fatalf("after the lock: %v", err)
	}
	resp, err := b.svc.Login(fresh(), "li.na", "password-li.na")
	if err != nil {
		t.Fatalf("login after the lock ended: %v", err)
	}
	if resp.ExpiresIn != 900 || resp.TokenType != "Bearer" || len(resp.RefreshToken) != 43 {
		t.Errorf("token response %+v", resp)
	}
}

func TestRefreshLifetimesAndRace(t *testing.T) {
	t.Parallel()
	b := setup(t, LoginLimits{})
	b.user(t, "zhao.lei", RoleBillingClerk, "K420626-01")
	ctx := context.Background()
	login := func() TokenResponse {
		r, err := b.svc.Login(ctx, "zhao.lei", "password-zhao.lei")
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	// Idle expiry: 12 h unused.
	r := login()
	b.clock.Add(DefaultRefreshIdleTTL + time.Second)
	if _, err := b.svc.Refresh(ctx, r.RefreshToken); !apperr.Is(err, apperr.Unauthenticated) {
		t.Errorf("idle token: %v", err)
	}
	// Absolute expiry: refreshed every 11 h, the session still ends after 7 days.
	r = login()
	start := b.clock.Now()
	var err error
	for b.clock.Now().Sub(start) < DefaultRefreshMaxTTL-11*time.Hour {
		b.clock.Add(11 * time.Hour)
		if r, err = b.svc.Refresh(ctx, r.RefreshToken); err != nil {
			t.Fatalf("refresh at %v: %v", b.clock.Now().Sub(start), err)
		}
	}
	b.clock.Add(11 * time.Hour)
	if _, err := b.svc.Refresh(ctx, r.RefreshToken); !apperr.Is(err, apperr.Unauthenticated) {
		t.Errorf("refresh after 7 days: %v", err)
	}
	// The access token expires after 15 minutes.
	r = login()
	if _, err := b.svc.VerifyAccessToken(ctx, r.AccessToken); err != nil {
		t.Fatal(err)
	}
	b.clock.Add(DefaultAccessTTL + clockLeeway + time.Second)
	if _, err := b.svc.VerifyAccessToken(ctx, r.AccessToken); !apperr.Is(err, apperr.Unauthenticated) {
		t.Errorf("expired access token: %v", err)
	}
	// Two clients race with one refresh token: one wins, and the loser's
	// attempt is a reuse that ends the session.
	r = login()
	var wg sync.WaitGroup
	results := make([]error, 2)
	for i := range results {
		wg.Go(func() { _, results[i] = b.svc.Refresh(ctx, r.RefreshToken) })
	}
	wg.Wait()
	wins := 0
	for _, e := range results {
		if e == nil {
			wins++
		}
	}
	if wins != 1 {
		t.Errorf("%d of 2 concurrent refreshes won: %v", wins, results)
	}
	var revoked int
	if err := b.pool.QueryRow(ctx, `SELECT count(*) FROM refresh_family f JOIN refresh_token t ON t.family_id = f.id
		WHERE t.token_hash = $1 AND f.revoke_reason = 'reuse detected'`, hashRefresh(r.RefreshToken)).Scan(&revoked); err != nil {
		t.Fatal(err)
	}
	if revoked != 1 {
		t.Error("the race did not revoke the family")
	}
	if err := b.svc.Cleanup(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestCleanRequestID(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"smxzxbQjscsdpyJlCSNlFkmNJCjiaABP": "smxzxbQjscsdpyJlCSNlFkmNJCjiaABP",
		"a b\n'; DROP TABLE x;--":          "abDROPTABLEx--",
		strings.Repeat("x", 100):           strings.Repeat("x", 64),
		"":                                 "",
	} {
		if got := cleanRequestID(in); got != want {
			t.Errorf("cleanRequestID(%q) = %q, want %q", in, got, want)
		}
	}
}
