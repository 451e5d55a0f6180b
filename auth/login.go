package auth

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/jackc/pgx/v5"
	"golang.org/x/crypto/argon2"

	"github.com/qinba/qinba/internal/apperr"
	"github.com/qinba/qinba/internal/db"
)

// TokenResponse is the body of a successful login or refresh.
type TokenResponse struct {
	AccessToken  string `json:"access_token"`
	RefreshToken string `json:"refresh_token"`
	TokenType    string `json:"token_type"`
	ExpiresIn    int    `json:"expires_in"` // seconds until the access token expires
}

func (s *Service) tokenResponse(access, refresh string) TokenResponse {
	return TokenResponse{AccessToken: access, RefreshToken: refresh, TokenType: "Bearer", ExpiresIn: int(s.cfg.AccessTTL / time.Second)}
}

// errBadCredentials is the one answer for an unknown user, a wrong
// password and a disabled account, so the answer names no user.
func errBadCredentials() error {
	return apperr.E(apperr.Unauthenticated, "invalid username or password")
}

func rateLimited(wait time.Duration, format string, args ...any) *apperr.Error {
	secs := int(math.Ceil(wait.Seconds()))
	if secs < 1 {
		secs = 1
	}
	return &apperr.Error{Code: apperr.RateLimited, Message: fmt.Sprintf(format, args...),
		Details: map[string]any{"retry_after_seconds": secs}}
}

// dummy returns a hash with the service's parameters, verified when the
// user is unknown so that every login costs one argon2 run. It hashes
// nothing: random salt and key cost the same to check as a real hash.
func (s *Service) dummy() string {
	s.dummyOnce.Do(func() {
		p := s.cfg.HashParams
		salt, key := make([]byte, p.SaltLen), make([]byte, p.KeyLen)
		_, _ = rand.Read(salt)
		_, _ = rand.Read(key)
		b64 := base64.RawStdEncoding
		s.dummyHash = fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s", argon2.Version, p.Memory, p.Time, p.Threads,
			b64.EncodeToString(salt), b64.EncodeToString(key))
	})
	return s.dummyHash
}

// Login checks a username and password and starts a session. Attempts are
// throttled per client IP and per username; MaxFailures failures within
// FailureWindow lock the username for LockFor (429 with when to retry).
// Every failure gets the same answer, costs the same argon2 run and is
// audited; a success is audited too.
func (s *Service) Login(ctx context.Context, username, password string) (TokenResponse, error) {
	username = NormalizeUsername(username)
	meta := MetaFrom(ctx)
	if ok, wait := s.ipLimit.take(meta.IP); !ok {
		s.cfg.Log.WarnContext(ctx, "login throttled", "ip", meta.IP)
		return TokenResponse{}, rateLimited(wait, "too many login attempts from your address; try again in %s", humanWait(wait))
	}
	wellFormed := usernameRe.MatchString(username) && len(password) <= 4*MaxPasswordLen
	if wellFormed {
		if ok, wait := s.userLimit.take(username); !ok {
			return TokenResponse{}, rateLimited(wait, "too many login attempts for this account; try again in %s", humanWait(wait))
		}
		until, locked, err := s.lockedUntil(ctx, username)
		if err != nil {
			return TokenResponse{}, err
		}
		if locked {
			wait := until.Sub(s.cfg.Now())
			err := rateLimited(wait, "too many failed logins: this account is locked; try again in %s (after %s)",
				humanWait(wait), until.Format("15:04 MST"))
			err.Details["locked_until"] = until.UTC().Format(time.RFC3339)
			return TokenResponse{}, err
		}
	}
	var (
		u     User
		hash  string
		found bool
		err   error
	)
	if wellFormed {
		if u, hash, found, err = credentials(ctx, s.pool, username); err != nil {
			return TokenResponse{}, err
		}
	}
	if !found {
		hash = s.dummy()
	}
	ok, rehash, err := VerifyPassword(ctx, password, hash, s.cfg.HashParams)
	if err != nil && !errors.Is(err, errBadHash) {
		return TokenResponse{}, err
	}
	if !found || !ok || u.Disabled {
		reason := "bad_password"
		switch {
		case !found:
			reason = "unknown_user"
		case u.Disabled:
			reason = "disabled"
		}
		if err := s.recordFailure(ctx, username, wellFormed, reason); err != nil {
			return TokenResponse{}, err
		}
		return TokenResponse{}, errBadCredentials()
	}
	var resp TokenResponse
	err = db.WithTx(ctx, s.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `DELETE FROM login_failure WHERE username = $1`, username); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `DELETE FROM login_lockout WHERE username = $1`, username); err != nil {
			return err
		}
		refresh, err := s.startSession(ctx, tx, u.ID)
		if err != nil {
			return err
		}
		access, err := s.IssueAccessToken(u)
		if err != nil {
			return err
		}
		resp = s.tokenResponse(access, refresh)
		return Audit(WithPrincipal(ctx, u.Principal()), tx, Entry{Action: "login", RecordType: "user", RecordID: u.Username, Facility: u.Facility})
	})
	if err != nil {
		return TokenResponse{}, err
	}
	if rehash {
		if h, err := HashPassword(ctx, password, s.cfg.HashParams); err == nil {
			if err := setPasswordHash(ctx, s.pool, u.ID, h); err != nil {
				s.cfg.Log.WarnContext(ctx, "rehash password", "user", u.Username, "err", err)
			}
		}
	}
	return resp, nil
}

func (s *Service) lockedUntil(ctx context.Context, username string) (time.Time, bool, error) {
	var until time.Time
	err := s.pool.QueryRow(ctx, `SELECT locked_until FROM login_lockout WHERE username = $1 AND locked_until > $2`,
		username, s.cfg.Now()).Scan(&until)
	if errors.Is(err, pgx.ErrNoRows) {
		return time.Time{}, false, nil
	}
	return until, err == nil, err
}

// recordFailure audits a failed login and, for a well-formed username,
// counts it towards the lockout. Failures before the end of the last
// lock do not count again.
func (s *Service) recordFailure(ctx context.Context, username string, wellFormed bool, reason string) error {
	meta := MetaFrom(ctx)
	now := s.cfg.Now()
	s.cfg.Log.InfoContext(ctx, "login failed", "ip", meta.IP, "reason", reason)
	return db.WithTx(ctx, s.pool, func(tx pgx.Tx) error {
		e := Entry{Action: "login_failed", RecordType: "user", Detail: map[string]any{"reason": reason}}
		if !wellFormed {
			// Not a possible username (perhaps a password typed in the
			// wrong box): keep it out of the log.
			e.Detail["reason"] = "malformed_username"
			return Audit(ctx, tx, e)
		}
		e.RecordID, e.Username = username, username
		if err := Audit(ctx, tx, e); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `INSERT INTO login_failure (username, ip, at) VALUES ($1, $2, $3)`, username, meta.IP, now); err != nil {
			return err
		}
		var n int
		err := tx.QueryRow(ctx, `SELECT count(*) FROM login_failure WHERE username = $1 AND at > $2
			AND at > coalesce((SELECT locked_until FROM login_lockout WHERE username = $1), '-infinity')`,
			username, now.Add(-s.cfg.Limits.FailureWindow)).Scan(&n)
		if err != nil {
			return err
		}
		if n < s.cfg.Limits.MaxFailures {
			return nil
		}
		until := now.Add(s.cfg.Limits.LockFor)
		if _, err := tx.Exec(ctx, `INSERT INTO login_lockout (username, locked_until) VALUES ($1, $2)
			ON CONFLICT (username) DO UPDATE SET locked_until = excluded.locked_until`, username, until); err != nil {
			return err
		}
		s.cfg.Log.WarnContext(ctx, "account locked after failed logins", "user", username, "until", until)
		return Audit(ctx, tx, Entry{Action: "lockout", RecordType: "user", RecordID: username, Username: username,
			Detail: map[string]any{"failures": n, "locked_until": until.UTC().Format(time.RFC3339)}})
	})
}

func humanWait(d time.Duration) string {
	switch secs := int(math.Ceil(d.Seconds())); {
	case secs <= 1:
		return "1 second"
	case secs < 120:
		return fmt.Sprintf("%d seconds", secs)
	default:
		return fmt.Sprintf("%d minutes", int(math.Ceil(float64(secs)/60)))
	}
}
