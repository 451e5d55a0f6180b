package auth

import (
	"context"
	"errors"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

// Config configures the Service. Zero fields take the defaults.
type Config struct {
	// Issuer is the iss of access tokens (required).
	Issuer         string
	AccessTTL      time.Duration // default DefaultAccessTTL
	RefreshIdleTTL time.Duration // default DefaultRefreshIdleTTL
	RefreshMaxTTL  time.Duration // default DefaultRefreshMaxTTL
	// HashParams are the argon2id costs of new hashes (default
	// DefaultHashParams).
	HashParams HashParams
	// Limits protect the login (default DefaultLoginLimits).
	Limits LoginLimits
	Log    *slog.Logger
	Now    func() time.Time
}

// LoginLimits throttle logins and lock accounts after repeated failures.
type LoginLimits struct {
	// Token buckets in memory: attempts per client IP and per username.
	IPBurst   int
	IPEvery   time.Duration
	UserBurst int
	UserEvery time.Duration
	// MaxFailures failed logins of one username within FailureWindow lock
	// it for LockFor (counted in the database, so every server agrees;
	// unknown usernames lock just the same, so locking reveals nothing).
	MaxFailures   int
	FailureWindow time.Duration
	LockFor       time.Duration
}

// DefaultLoginLimits: 30 attempts per IP then one a second; 10 per
// username then one every 6 s; 5 failures in 15 minutes lock for 15
// minutes.
var DefaultLoginLimits = LoginLimits{
	IPBurst: 30, IPEvery: time.Second,
	UserBurst: 10, UserEvery: 6 * time.Second,
	MaxFailures: 5, FailureWindow: 15 * time.Minute, LockFor: 15 * time.Minute,
}

// Service is the auth capability: login, tokens, the middleware, the
// user-management and audit routes. Build it with NewService.
type Service struct {
	pool  *pgxpool.Pool
	keys  *KeyStore
	cfg   Config
	scope *Scope

	ipLimit, userLimit *limiter

	dummyOnce sync.Once
	dummyHash string
}

// NewService returns the auth service on pool, signing with keys.
func NewService(pool *pgxpool.Pool, keys *KeyStore, cfg Config) (*Service, error) {
	if cfg.Issuer == "" {
		return nil, errors.New("auth: an issuer is required")
	}
	if cfg.AccessTTL <= 0 {
		cfg.AccessTTL = DefaultAccessTTL
	}
	if cfg.RefreshIdleTTL <= 0 {
		cfg.RefreshIdleTTL = DefaultRefreshIdleTTL
	}
	if cfg.RefreshMaxTTL <= 0 {
		cfg.RefreshMaxTTL = DefaultRefreshMaxTTL
	}
	if cfg.HashParams == (HashParams{}) {
		cfg.HashParams = DefaultHashParams
	}
	if cfg.Limits == (LoginLimits{}) {
		cfg.Limits = DefaultLoginLimits
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	s := &Service{pool: pool, keys: keys, cfg: cfg, scope: &Scope{DB: pool, Log: cfg.Log}}
	s.ipLimit = newLimiter(cfg.Limits.IPBurst, cfg.Limits.IPEvery, cfg.Now)
	s.userLimit = newLimiter(cfg.Limits.UserBurst, cfg.Limits.UserEvery, cfg.Now)
	return s, nil
}

// Keys returns the key store (its SigningKey and PublicKey methods are
// what package consult's KeySource needs).
func (s *Service) Keys() *KeyStore { return s.keys }

// Scope returns the facility-scope checker on the service's pool.
func (s *Service) Scope() *Scope { return s.scope }

// Run does the background work until ctx ends: keeps the signing keys
// current and deletes expired sessions and old login failures hourly.
func (s *Service) Run(ctx context.Context) error {
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = s.keys.Run(ctx)
	}()
	defer func() { <-done }()
	tick := time.NewTicker(time.Hour)
	defer tick.Stop()
	for {
		cctx, cancel := context.WithTimeout(ctx, time.Minute)
		if err := s.Cleanup(cctx); err != nil && ctx.Err() == nil {
			s.cfg.Log.Warn("auth cleanup", "err", err)
		}
		cancel()
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}

// Cleanup deletes sessions that ended more than a day ago and login
// failures older than a day, and forgets idle rate-limit buckets. (The
// audit log keeps the history; these tables are working state.)
func (s *Service) Cleanup(ctx context.Context) error {
	cutoff := s.cfg.Now().Add(-24 * time.Hour)
	if _, err := s.pool.Exec(ctx, `DELETE FROM refresh_family WHERE expires_at < $1 OR revoked_at < $1`, cutoff); err != nil {
		return err
	}
	if _, err := s.pool.Exec(ctx, `DELETE FROM refresh_token WHERE expires_at < $1`, cutoff); err != nil {
		return err
	}
	if _, err := s.pool.Exec(ctx, `DELETE FROM login_failure WHERE at < $1`, cutoff); err != nil {
		return err
	}
	if _, err := s.pool.Exec(ctx, `DELETE FROM login_lockout WHERE locked_until < $1`, cutoff); err != nil {
		return err
	}
	s.ipLimit.prune()
	s.userLimit.prune()
	return nil
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }
