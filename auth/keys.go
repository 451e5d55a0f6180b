package auth

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/ed25519"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/qinba/qinba/internal/db"
)

// keysChannel is the PostgreSQL NOTIFY channel on which a rotation tells
// every running server to reload its keys.
const keysChannel = "qinba_signing_keys"

// KeyStoreConfig configures a KeyStore.
type KeyStoreConfig struct {
	// Secret, when set, encrypts private keys at rest (AES-256-GCM under a
	// key derived with HKDF-SHA256). Keys stored encrypted cannot be loaded
	// without it. From QINBA_KEY_SECRET.
	Secret []byte
	// Grace is how long a superseded key stays published and valid after
	// the rotation that replaced it: at least the lifetime of the longest
	// token it signs. Zero means 2 × DefaultAccessTTL.
	Grace time.Duration
	// ReloadEvery is the fallback reload period when notifications are
	// missed (default 1 minute).
	ReloadEvery time.Duration
	Log         *slog.Logger
	Now         func() time.Time
}

// KeyStore holds the Ed25519 signing keys, loaded from the signing_key
// table. It is safe for concurrent use. Several servers agree on the keys:
// a rotation notifies them (LISTEN/NOTIFY, see Run), they reload
// periodically, and an unknown kid triggers a (rate-limited) reload.
//
// Its SigningKey and PublicKey methods are the shape package consult's
// KeySource interface asks for.
type KeyStore struct {
	pool *pgxpool.Pool
	cfg  KeyStoreConfig
	aead cipher.AEAD

	mu     sync.RWMutex
	keys   []storedKey // newest first; keys[0] signs
	loaded time.Time

	missMu   sync.Mutex
	lastMiss time.Time
}

type storedKey struct {
	kid        string
	pub        ed25519.PublicKey
	priv       ed25519.PrivateKey
	created    time.Time
	superseded time.Time // created time of the next newer key; zero for the current key
}

// KeyInfo describes a key for `qinba keys list`.
type KeyInfo struct {
	Kid        string
	Created    time.Time
	Superseded time.Time
	Current    bool
	Published  bool
	Encrypted  bool
}

// OpenKeyStore loads the signing keys, creating the first one if the table
// is empty (concurrent first starts create exactly one).
func OpenKeyStore(ctx context.Context, pool *pgxpool.Pool, cfg KeyStoreConfig) (*KeyStore, error) {
	if cfg.Grace <= 0 {
		cfg.Grace = 2 * DefaultAccessTTL
	}
	if cfg.ReloadEvery <= 0 {
		cfg.ReloadEvery = time.Minute
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	ks := &KeyStore{pool: pool, cfg: cfg}
	if len(cfg.Secret) > 0 {
		if len(cfg.Secret) < 16 {
			return nil, errors.New("auth: the key secret must be at least 16 bytes")
		}
		k, err := hkdf.Key(sha256.New, cfg.Secret, []byte("qinba signing_key"), "aes-256-gcm v1", 32)
		if err != nil {
			return nil, err
		}
		block, err := aes.NewCipher(k)
		if err != nil {
			return nil, err
		}
		if ks.aead, err = cipher.NewGCM(block); err != nil {
			return nil, err
		}
	}
	err := db.WithTx(ctx, pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtext('qinba signing_key'))`); err != nil {
			return err
		}
		var n int
		if err := tx.QueryRow(ctx, `SELECT count(*) FROM signing_key`).Scan(&n); err != nil {
			return err
		}
		if n > 0 {
			return nil
		}
		_, err := ks.insertKey(ctx, tx)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("signing keys: %w", err)
	}
	if err := ks.Reload(ctx); err != nil {
		return nil, err
	}
	return ks, nil
}

// thumbprint is the RFC 7638 JWK thumbprint of an Ed25519 public key,
// used as its kid.
func thumbprint(pub ed25519.PublicKey) string {
	canon := `{"crv":"Ed25519","kty":"OKP","x":"` + base64.RawURLEncoding.EncodeToString(pub) + `"}`
	sum := sha256.Sum256([]byte(canon))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

func (ks *KeyStore) insertKey(ctx context.Context, d db.DBTX) (string, error) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return "", err
	}
	kid := thumbprint(pub)
	stored, enc := priv.Seed(), "none"
	if ks.aead != nil {
		nonce := make([]byte, ks.aead.NonceSize())
		if _, err := rand.Read(nonce); err != nil {
			return "", err
		}
		stored, enc = ks.aead.Seal(nonce, nonce, priv.Seed(), []byte(kid)), "a256gcm"
	}
	// Stored in plaintext when no secret is configured: then the database's
	// access control is the only protection of the key (see 0002_auth.sql).
	_, err = d.Exec(ctx, `INSERT INTO signing_key (kid, public_key, private_key, enc, created_at) VALUES ($1, $2, $3, $4, $5)`,
		kid, []byte(pub), stored, enc, ks.cfg.Now())
	return kid, err
}

// Rotate adds a new signing key, which becomes current at once; older keys
// stay published for the grace period. Running servers are notified.
func (ks *KeyStore) Rotate(ctx context.Context) (string, error) {
	var kid string
	err := db.WithTx(ctx, ks.pool, func(tx pgx.Tx) error {
		var err error
		if kid, err = ks.insertKey(ctx, tx); err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `SELECT pg_notify($1, $2)`, keysChannel, kid)
		return err
	})
	if err != nil {
		return "", err
	}
	return kid, ks.Reload(ctx)
}

// Reload reads the keys from the database.
func (ks *KeyStore) Reload(ctx context.Context) error {
	rows, err := ks.pool.Query(ctx, `SELECT kid, public_key, private_key, enc, created_at FROM signing_key ORDER BY created_at DESC, kid`)
	if err != nil {
		return fmt.Errorf("load signing keys: %w", err)
	}
	defer rows.Close()
	var keys []storedKey
	for rows.Next() {
		var k storedKey
		var pub, priv []byte
		var enc string
		if err := rows.Scan(&k.kid, &pub, &priv, &enc, &k.created); err != nil {
			return err
		}
		if len(pub) != ed25519.PublicKeySize {
			return fmt.Errorf("signing key %s: bad public key", k.kid)
		}
		k.pub = ed25519.PublicKey(pub)
		seed, err := ks.open(k.kid, enc, priv)
		if err != nil {
			return err
		}
		k.priv = ed25519.NewKeyFromSeed(seed)
		if !k.priv.Public().(ed25519.PublicKey).Equal(k.pub) {
			return fmt.Errorf("signing key %s: private and public key do not match", k.kid)
		}
		keys = append(keys, k)
	}
	if err := rows.Err(); err != nil {
		return err
	}
	if len(keys) == 0 {
		return errors.New("no signing key in the database")
	}
	for i := 1; i < len(keys); i++ {
		keys[i].superseded = keys[i-1].created
	}
	ks.mu.Lock()
	ks.keys, ks.loaded = keys, ks.cfg.Now()
	ks.mu.Unlock()
	return nil
}

func (ks *KeyStore) open(kid, enc string, stored []byte) ([]byte, error) {
	switch enc {
	case "none":
		if len(stored) != ed25519.SeedSize {
			return nil, fmt.Errorf("signing key %s: bad private key", kid)
		}
		if ks.aead != nil {
			ks.cfg.Log.Warn("signing key stored in plaintext although a key secret is set; rotate to replace it", "kid", kid)
		}
		return stored, nil
	case "a256gcm":
		if ks.aead == nil {
			return nil, fmt.Errorf("signing key %s is encrypted: set QINBA_KEY_SECRET", kid)
		}
		ns := ks.aead.NonceSize()
		if len(stored) < ns {
			return nil, fmt.Errorf("signing key %s: bad ciphertext", kid)
		}
		seed, err := ks.aead.Open(nil, stored[:ns], stored[ns:], []byte(kid))
		if err != nil || len(seed) != ed25519.SeedSize {
			return nil, fmt.Errorf("signing key %s: cannot decrypt (wrong QINBA_KEY_SECRET?)", kid)
		}
		return seed, nil
	}
	return nil, fmt.Errorf("signing key %s: unknown encryption %q", kid, enc)
}

// SigningKey returns the current key: the newest one.
func (ks *KeyStore) SigningKey() (kid string, key ed25519.PrivateKey) {
	ks.mu.RLock()
	defer ks.mu.RUnlock()
	k := ks.keys[0]
	return k.kid, slices.Clone(k.priv)
}

// published reports whether k is still valid for verification at now.
func (ks *KeyStore) published(k storedKey, now time.Time) bool {
	return k.superseded.IsZero() || now.Before(k.superseded.Add(ks.cfg.Grace))
}

// PublicKey returns the public key kid names while it is published (the
// current key, or a superseded one within the grace period). An unknown
// kid reloads the keys first, at most once every two seconds, in case
// another server rotated them.
func (ks *KeyStore) PublicKey(kid string) (ed25519.PublicKey, bool) {
	if pub, ok, known := ks.lookup(kid); known {
		return pub, ok
	}
	ks.missMu.Lock()
	defer ks.missMu.Unlock()
	if pub, ok, known := ks.lookup(kid); known {
		return pub, ok
	}
	now := time.Now()
	if now.Sub(ks.lastMiss) < 2*time.Second {
		return nil, false
	}
	ks.lastMiss = now
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if err := ks.Reload(ctx); err != nil {
		ks.cfg.Log.Warn("reload signing keys", "err", err)
		return nil, false
	}
	pub, ok, _ := ks.lookup(kid)
	return pub, ok
}

func (ks *KeyStore) lookup(kid string) (pub ed25519.PublicKey, ok, known bool) {
	ks.mu.RLock()
	defer ks.mu.RUnlock()
	now := ks.cfg.Now()
	for _, k := range ks.keys {
		if k.kid == kid {
			if !ks.published(k, now) {
				return nil, false, true
			}
			return slices.Clone(k.pub), true, true
		}
	}
	return nil, false, false
}

// JWK is one public key of the JWKS (RFC 8037 OKP form).
type JWK struct {
	Kty string `json:"kty"`
	Crv string `json:"crv"`
	X   string `json:"x"`
	Kid string `json:"kid"`
	Alg string `json:"alg"`
	Use string `json:"use"`
}

// JWKSet is the body of /.well-known/jwks.json.
type JWKSet struct {
	Keys []JWK `json:"keys"`
}

// JWKS returns the published public keys, current first.
func (ks *KeyStore) JWKS() JWKSet {
	ks.mu.RLock()
	defer ks.mu.RUnlock()
	now := ks.cfg.Now()
	set := JWKSet{Keys: []JWK{}}
	for _, k := range ks.keys {
		if ks.published(k, now) {
			set.Keys = append(set.Keys, JWK{Kty: "OKP", Crv: "Ed25519", X: base64.RawURLEncoding.EncodeToString(k.pub),
				Kid: k.kid, Alg: "EdDSA", Use: "sig"})
		}
	}
	return set
}

// List describes every stored key, newest first.
func (ks *KeyStore) List(ctx context.Context) ([]KeyInfo, error) {
	if err := ks.Reload(ctx); err != nil {
		return nil, err
	}
	encrypted := map[string]bool{}
	rows, err := ks.pool.Query(ctx, `SELECT kid, enc <> 'none' FROM signing_key`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	for rows.Next() {
		var kid string
		var enc bool
		if err := rows.Scan(&kid, &enc); err != nil {
			return nil, err
		}
		encrypted[kid] = enc
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	ks.mu.RLock()
	defer ks.mu.RUnlock()
	now := ks.cfg.Now()
	var out []KeyInfo
	for i, k := range ks.keys {
		out = append(out, KeyInfo{Kid: k.kid, Created: k.created, Superseded: k.superseded, Current: i == 0,
			Published: ks.published(k, now), Encrypted: encrypted[k.kid]})
	}
	return out, nil
}

// Run keeps the keys current until ctx ends: it listens for rotation
// notifications on a connection of its own and reloads periodically in
// case one was missed (or LISTEN is unavailable).
func (ks *KeyStore) Run(ctx context.Context) error {
	tick := time.NewTicker(ks.cfg.ReloadEvery)
	defer tick.Stop()
	notified := make(chan struct{}, 1)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		ks.listen(ctx, notified)
	}()
	defer wg.Wait()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		case <-notified:
		}
		rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		if err := ks.Reload(rctx); err != nil && ctx.Err() == nil {
			ks.cfg.Log.Warn("reload signing keys", "err", err)
		}
		cancel()
	}
}

func (ks *KeyStore) listen(ctx context.Context, notified chan<- struct{}) {
	for ctx.Err() == nil {
		err := ks.listenOnce(ctx, notified)
		if ctx.Err() != nil {
			return
		}
		ks.cfg.Log.Warn("listen for key rotations", "err", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(ks.cfg.ReloadEvery):
		}
	}
}

func (ks *KeyStore) listenOnce(ctx context.Context, notified chan<- struct{}) error {
	conn, err := pgx.ConnectConfig(ctx, ks.pool.Config().ConnConfig.Copy())
	if err != nil {
		return err
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_ = conn.Close(cctx)
	}()
	if _, err := conn.Exec(ctx, `LISTEN `+keysChannel); err != nil {
		return err
	}
	// Reload once now: a rotation may have happened before LISTEN.
	select {
	case notified <- struct{}{}:
	default:
	}
	for {
		if _, err := conn.WaitForNotification(ctx); err != nil {
			return err
		}
		select {
		case notified <- struct{}{}:
		default:
		}
	}
}
