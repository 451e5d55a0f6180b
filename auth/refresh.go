package auth

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/qinba/qinba/internal/apperr"
	"github.com/qinba/qinba/internal/db"
)

// Refresh-token lifetimes.
const (
	// DefaultRefreshIdleTTL: a refresh token not used for this long expires.
	DefaultRefreshIdleTTL = 12 * time.Hour
	// DefaultRefreshMaxTTL: a session (token family) ends this long after
	// the login, however often it is refreshed.
	DefaultRefreshMaxTTL = 7 * 24 * time.Hour
)

func errRefreshInvalid(reason string) error {
	return &apperr.Error{Code: apperr.Unauthenticated, Message: "invalid or expired refresh token", Err: errors.New(reason)}
}

// newRefreshToken returns a random opaque token (32 bytes, base64url) and
// the SHA-256 hash that is all the database keeps.
func newRefreshToken() (string, []byte) {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	tok := base64.RawURLEncoding.EncodeToString(b)
	return tok, hashRefresh(tok)
}

func hashRefresh(tok string) []byte {
	sum := sha256.Sum256([]byte(tok))
	return sum[:]
}

// startSession creates a token family for userID and its first token.
func (s *Service) startSession(ctx context.Context, d db.DBTX, userID int64) (string, error) {
	now := s.cfg.Now()
	var family int64
	if err := d.QueryRow(ctx, `INSERT INTO refresh_family (user_id, created_at, expires_at) VALUES ($1, $2, $3) RETURNING id`,
		userID, now, now.Add(s.cfg.RefreshMaxTTL)).Scan(&family); err != nil {
		return "", err
	}
	return s.addRefreshToken(ctx, d, family, now, now.Add(s.cfg.RefreshMaxTTL))
}

func (s *Service) addRefreshToken(ctx context.Context, d db.DBTX, family int64, now, familyExpires time.Time) (string, error) {
	tok, hash := newRefreshToken()
	exp := now.Add(s.cfg.RefreshIdleTTL)
	if exp.After(familyExpires) {
		exp = familyExpires
	}
	_, err := d.Exec(ctx, `INSERT INTO refresh_token (token_hash, family_id, created_at, expires_at) VALUES ($1, $2, $3, $4)`,
		hash, family, now, exp)
	return tok, err
}

// Refresh rotates a refresh token: the presented one is used up and a new
// one of the same family is returned with a new access token. Presenting a
// token that was already rotated means it was copied: the whole family is
// revoked (the thief's and the owner's sessions both end).
func (s *Service) Refresh(ctx context.Context, raw string) (TokenResponse, error) {
	if raw == "" || len(raw) > 100 {
		return TokenResponse{}, errRefreshInvalid("malformed")
	}
	now := s.cfg.Now()
	var resp TokenResponse
	// refused is set when the answer is 401 but the transaction must still
	// commit (the revocation of a family must stick).
	var refused error
	err := db.WithTx(ctx, s.pool, func(tx pgx.Tx) error {
		var (
			family                 int64
			userID                 int64
			used, revoked          *time.Time
			expires, familyExpires time.Time
		)
		err := tx.QueryRow(ctx, `SELECT t.family_id, f.user_id, t.used_at, f.revoked_at, t.expires_at, f.expires_at
			FROM refresh_token t JOIN refresh_family f ON f.id = t.family_id
			WHERE t.token_hash = $1 FOR UPDATE OF t, f`, hashRefresh(raw)).
			Scan(&family, &userID, &used, &revoked, &expires, &familyExpires)
		if errors.Is(err, pgx.ErrNoRows) {
			return errRefreshInvalid("unknown token")
		}
		if err != nil {
			return err
		}
		if revoked != nil {
			return errRefreshInvalid("family revoked")
		}
		u, err := GetUser(ctx, tx, userID)
		if apperr.Is(err, apperr.NotFound) {
			return errRefreshInvalid("user gone")
		}
		if err != nil {
			return err
		}
		if used != nil {
			if err := revokeFamily(ctx, tx, family, "reuse detected"); err != nil {
				return err
			}
			_ = Audit(WithPrincipal(ctx, u.Principal()), tx, Entry{Action: "refresh_reuse", RecordType: "session", RecordID: itoa(family),
				Detail: map[string]any{"reason": "a rotated refresh token was presented again; session revoked"}})
			s.cfg.Log.WarnContext(ctx, "refresh token reuse: session revoked", "user", u.Username, "family", family)
			refused = errRefreshInvalid("reused")
			return nil
		}
		if !now.Before(expires) || !now.Before(familyExpires) {
			return errRefreshInvalid("expired")
		}
		if u.Disabled {
			if err := revokeFamily(ctx, tx, family, "user disabled"); err != nil {
				return err
			}
			refused = errRefreshInvalid("user disabled")
			return nil
		}
		if _, err := tx.Exec(ctx, `UPDATE refresh_token SET used_at = $2 WHERE token_hash = $1`, hashRefresh(raw), now); err != nil {
			return err
		}
		tok, err := s.addRefreshToken(ctx, tx, family, now, familyExpires)
		if err != nil {
			return err
		}
		access, err := s.IssueAccessToken(u)
		if err != nil {
			return err
		}
		resp = s.tokenResponse(access, tok)
		return nil
	})
	if err != nil {
		return TokenResponse{}, err
	}
	if refused != nil {
		return TokenResponse{}, refused
	}
	return resp, nil
}

// revokeFamily ends a session.
func revokeFamily(ctx context.Context, d db.DBTX, family int64, reason string) error {
	_, err := d.Exec(ctx, `UPDATE refresh_family SET revoked_at = now(), revoke_reason = $2 WHERE id = $1 AND revoked_at IS NULL`,
		family, reason)
	return err
}

// revokeUserFamilies ends every session of a user.
func revokeUserFamilies(ctx context.Context, d db.DBTX, userID int64, reason string) error {
	_, err := d.Exec(ctx, `UPDATE refresh_family SET revoked_at = now(), revoke_reason = $2 WHERE user_id = $1 AND revoked_at IS NULL`,
		userID, reason)
	return err
}

// Logout ends the session raw belongs to, if it is p's. Unknown tokens
// and other users' tokens are ignored (the answer is the same), so logout
// is no oracle.
func (s *Service) Logout(ctx context.Context, p *Principal, raw string) error {
	if raw == "" || len(raw) > 100 {
		return nil
	}
	return db.WithTx(ctx, s.pool, func(tx pgx.Tx) error {
		var family, userID int64
		err := tx.QueryRow(ctx, `SELECT f.id, f.user_id FROM refresh_token t JOIN refresh_family f ON f.id = t.family_id WHERE t.token_hash = $1`,
			hashRefresh(raw)).Scan(&family, &userID)
		if errors.Is(err, pgx.ErrNoRows) {
			return nil
		}
		if err != nil {
			return err
		}
		if userID != p.UserID {
			s.cfg.Log.WarnContext(ctx, "logout with another user's refresh token", "user", p.Username)
			return nil
		}
		if err := revokeFamily(ctx, tx, family, "logout"); err != nil {
			return err
		}
		return Audit(ctx, tx, Entry{Action: "logout", RecordType: "session", RecordID: itoa(family)})
	})
}
