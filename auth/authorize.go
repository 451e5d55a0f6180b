package auth

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/labstack/echo/v4"

	"github.com/qinba/qinba/internal/apperr"
	"github.com/qinba/qinba/internal/db"
)

// Allow is the route-level rule: the request must be authenticated and its
// principal must have one of roles. A denial is logged and audited, and
// answers 403. It panics at wiring time when no (or an unknown) role is
// given, so a route cannot silently allow nobody or everybody.
func Allow(d db.DBTX, log *slog.Logger, roles ...Role) echo.MiddlewareFunc {
	if len(roles) == 0 {
		panic("auth.Allow: no roles given")
	}
	for _, r := range roles {
		if !r.Valid() {
			panic(fmt.Sprintf("auth.Allow: unknown role %q", r))
		}
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			p, err := Current(c)
			if err != nil {
				return err
			}
			if !p.Has(roles...) {
				ctx := c.Request().Context()
				route := c.Request().Method + " " + c.Path()
				log.WarnContext(ctx, "denied", "user", p.Username, "role", p.Role, "route", route, "reason", "role")
				if err := Audit(ctx, d, Entry{Action: "deny", RecordType: "route", RecordID: route,
					Detail: map[string]any{"reason": "role not allowed"}}); err != nil {
					log.ErrorContext(ctx, "audit denial", "err", err)
				}
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
//
//   - everyone but an auditor: records of their own facility;
//   - a record naming several facilities (a referral: sender and
//     receiver): pass them all, and any one grants;
//   - an admin: also every facility of their region (the facility's
//     region_code);
//   - an auditor reads the audit log, never records; nobody else sees
//     anything.
//
// DB should be the pool, not a transaction the caller rolls back on the
// error Check returns (the denial's audit entry would vanish with it).
type Scope struct {
	DB  db.DBTX
	Log *slog.Logger
}

// CanSee reports whether p may see records of at least one of facilities.
func (s *Scope) CanSee(ctx context.Context, p *Principal, facilities ...string) (bool, error) {
	if p == nil || p.Role == RoleAuditor || !p.Role.Valid() {
		return false, nil
	}
	var named []string
	for _, f := range facilities {
		if f == "" {
			continue
		}
		if f == p.Facility {
			return true, nil
		}
		named = append(named, f)
	}
	if p.Role != RoleAdmin || p.Region == "" || len(named) == 0 {
		return false, nil
	}
	var ok bool
	err := s.DB.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM facility WHERE code = ANY($1) AND region_code = $2)`,
		named, p.Region).Scan(&ok)
	return ok, err
}

// Check returns nil when p may see records of one of facilities; otherwise
// it logs and audits the denial and returns 403, or 404 when notFound is
// set (for records whose existence must not leak). recordType and recordID
// name the record for the audit log, e.g. "person", "42".
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
	facility := ""
	if len(facilities) > 0 {
		facility = facilities[0]
	}
	if err := Audit(ctx, s.DB, Entry{Action: "deny", RecordType: recordType, RecordID: recordID, Facility: facility,
		Detail: map[string]any{"reason": "facility scope"}}); err != nil && s.Log != nil {
		s.Log.ErrorContext(ctx, "audit denial", "err", err)
	}
	if notFound {
		return apperr.E(apperr.NotFound, "%s not found", recordType)
	}
	return apperr.E(apperr.Forbidden, "this %s belongs to another facility", recordType)
}

// NoFacility is a facility code that matches no facility (codes are
// letters, digits and dashes). ScopeFilter returns it for a principal
// that may see nothing.
const NoFacility = "!"

// ScopeFilter tells a list query which records p may see: those of one
// facility, or (admins) those of every facility of a region. Exactly one
// of the two is non-empty, never both empty: a principal that may see no
// records (nil, an auditor, an admin without region) gets NoFacility.
// A query reads them as
//
//	WHERE ($1 = '' OR facility_code = $1) AND ($2 = '' OR facility_code IN
//	      (SELECT code FROM facility WHERE region_code = $2))
func ScopeFilter(p *Principal) (facility, region string) {
	switch {
	case p == nil || p.Role == RoleAuditor || !p.Role.Valid():
		return NoFacility, ""
	case p.Role == RoleAdmin && p.Region != "":
		return "", p.Region
	case p.Role == RoleAdmin || p.Facility == "":
		return NoFacility, ""
	}
	return p.Facility, ""
}
