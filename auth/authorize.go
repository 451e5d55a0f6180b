package auth

import (
	"context"
	"log/slog"

	"github.com/labstack/echo/v4"

	"github.com/qinba/qinba/internal/apperr"
	"github.com/qinba/qinba/internal/db"
)

// Allow is the route-level rule: the request must be authenticated and its
// principal must have one of roles. A denial is logged and audited.
func Allow(d db.DBTX, log *slog.Logger, roles ...Role) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			p, err := Current(c)
			if err != nil {
				return err
			}
			if !p.Has(roles...) {
				ctx := c.Request().Context()
				log.WarnContext(ctx, "denied", "user", p.Username, "role", p.Role, "route", c.Path(), "reason", "role")
				_ = Audit(ctx, d, Entry{Action: "deny", RecordType: "route", RecordID: c.Request().Method + " " + c.Path(),
					Detail: map[string]any{"reason": "role not allowed", "role": p.Role}})
				return apperr.E(apperr.Forbidden, "your role may not do this")
			}
			return next(c)
		}
	}
}

// How a denied facility check answers.
const (
	// DenyForbidden answers 403: the record's existence is not secret.
	DenyForbidden = false
	// DenyNotFound answers 404: existence itself would leak (a patient).
	DenyNotFound = true
)

// Scope decides which facilities' records a principal may see:
// their own facility's; an admin also every facility of their region.
// (A referral names two facilities: pass both, and either grants.)
type Scope struct {
	DB  db.DBTX
	Log *slog.Logger
}

// CanSee reports whether p may see records of at least one of facilities.
func (s *Scope) CanSee(ctx context.Context, p *Principal, facilities ...string) (bool, error) {
	if p == nil {
		return false, nil
	}
	for _, f := range facilities {
		if f != "" && f == p.Facility {
			return true, nil
		}
	}
	if p.Role != RoleAdmin || p.Region == "" {
		return false, nil
	}
	var ok bool
	err := s.DB.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM facility WHERE code = ANY($1) AND region_code = $2)`,
		facilities, p.Region).Scan(&ok)
	return ok, err
}

// Check returns nil when p may see records of one of facilities; otherwise
// it logs and audits the denial and returns 403, or 404 when notFound is set
// (for records whose existence must not leak). what names the record for
// the audit log, e.g. "person:42".
func (s *Scope) Check(ctx context.Context, p *Principal, notFound bool, recordType, recordID string, facilities ...string) error {
	ok, err := s.CanSee(ctx, p, facilities...)
	if err != nil {
		return err
	}
	if ok {
		return nil
	}
	user := ""
	if p != nil {
		user = p.Username
	}
	if s.Log != nil {
		s.Log.WarnContext(ctx, "denied", "user", user, "record_type", recordType, "record_id", recordID, "reason", "facility scope")
	}
	_ = Audit(ctx, s.DB, Entry{Action: "deny", RecordType: recordType, RecordID: recordID,
		Detail: map[string]any{"reason": "facility scope"}})
	if notFound {
		return apperr.E(apperr.NotFound, "%s not found", recordType)
	}
	return apperr.E(apperr.Forbidden, "this %s belongs to another facility", recordType)
}

// ScopeFilter tells a list query which records p may see: those of one
// facility, or (admins) those of every facility of a region.
func ScopeFilter(p *Principal) (facility, region string) {
	if p.Role == RoleAdmin {
		return "", p.Region
	}
	return p.Facility, ""
}
