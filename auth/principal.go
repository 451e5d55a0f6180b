package auth

import (
	"context"
	"slices"

	"github.com/labstack/echo/v4"

	"github.com/qinba/qinba/internal/apperr"
)

// Role is what a user may do. Each user has exactly one.
type Role string

// The roles of Qinba.
const (
	RoleVillageDoctor Role = "village_doctor" // a village clinic's doctor
	RoleDoctor        Role = "doctor"         // a township, county or city doctor
	RoleBillingClerk  Role = "billing_clerk"  // a billing office clerk
	RoleAdmin         Role = "admin"          // county health commission: its region
	RoleAuditor       Role = "auditor"        // reads the audit log
)

// Roles lists every role.
var Roles = []Role{RoleVillageDoctor, RoleDoctor, RoleBillingClerk, RoleAdmin, RoleAuditor}

// Valid reports whether r is a known role.
func (r Role) Valid() bool { return slices.Contains(Roles, r) }

// Principal is the authenticated user behind a request.
type Principal struct {
	UserID   int64  `json:"user_id"`
	Username string `json:"username"`
	Role     Role   `json:"role"`
	// Facility is the code of the user's facility; Tier and Region are that
	// facility's tier and region code.
	Facility string `json:"facility"`
	Tier     string `json:"tier"`
	Region   string `json:"region"`
}

// Has reports whether p has one of roles.
func (p *Principal) Has(roles ...Role) bool { return p != nil && slices.Contains(roles, p.Role) }

type principalKey struct{}

// WithPrincipal returns ctx carrying p.
func WithPrincipal(ctx context.Context, p *Principal) context.Context {
	return context.WithValue(ctx, principalKey{}, p)
}

// PrincipalFrom returns the principal in ctx, or nil.
func PrincipalFrom(ctx context.Context) *Principal {
	p, _ := ctx.Value(principalKey{}).(*Principal)
	return p
}

// Current returns the request's principal, or an Unauthenticated error.
func Current(c echo.Context) (*Principal, error) {
	if p := PrincipalFrom(c.Request().Context()); p != nil {
		return p, nil
	}
	return nil, apperr.E(apperr.Unauthenticated, "authentication required")
}

// RequestMeta is what the audit log records about where a request came from.
type RequestMeta struct {
	IP        string
	RequestID string
	UserAgent string
}

type metaKey struct{}

// WithMeta returns ctx carrying m.
func WithMeta(ctx context.Context, m RequestMeta) context.Context {
	return context.WithValue(ctx, metaKey{}, m)
}

// MetaFrom returns the request metadata in ctx (zero when absent, e.g. CLI).
func MetaFrom(ctx context.Context) RequestMeta {
	m, _ := ctx.Value(metaKey{}).(RequestMeta)
	return m
}
