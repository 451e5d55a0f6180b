package auth

import (
	"errors"
	"net/http"
	"slices"

	"github.com/jackc/pgx/v5"
	"github.com/labstack/echo/v4"

	"github.com/qinba/qinba/internal/apperr"
	"github.com/qinba/qinba/internal/db"
	"github.com/qinba/qinba/internal/httpx"
)

// AdminManagedRoles are the roles an admin may create and disable through
// the API. Auditors are not among them: whoever manages accounts must not
// be able to make themselves an auditor of their own actions (separation
// of duties); auditors are managed with `qinba user add/disable`.
var AdminManagedRoles = []Role{RoleVillageDoctor, RoleDoctor, RoleBillingClerk, RoleAdmin}

// UserList is the body of GET /api/v1/users.
type UserList struct {
	Users []User `json:"users"`
}

// listUsers lists the users of the admin's region (filters: facility,
// role, limit, offset).
func (s *Service) listUsers(c echo.Context) error {
	p, err := Current(c)
	if err != nil {
		return err
	}
	bad := apperr.Fields{}
	f := UserFilter{Region: p.Region, Facility: c.QueryParam("facility"), Role: Role(c.QueryParam("role"))}
	for k := range c.QueryParams() {
		switch k {
		case "facility", "role", "limit", "offset":
		default:
			bad.Add(k, "unknown filter")
		}
	}
	if f.Role != "" && !f.Role.Valid() {
		bad.Add("role", "unknown role")
	}
	if f.Limit, err = httpx.QueryInt(c, "limit", 500, 1, 1000); err != nil {
		return err
	}
	if f.Offset, err = httpx.QueryInt(c, "offset", 0, 0, 1<<30); err != nil {
		return err
	}
	if err := bad.Err(); err != nil {
		return err
	}
	if f.Region == "" {
		return apperr.E(apperr.Forbidden, "your account has no region")
	}
	users, err := ListUsers(c.Request().Context(), s.pool, f)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, UserList{Users: users})
}

// CreateUserRequest is the body of POST /api/v1/users.
type CreateUserRequest struct {
	Username    string `json:"username"`
	Password    string `json:"password"`
	Role        Role   `json:"role"`
	Facility    string `json:"facility"`
	DisplayName string `json:"display_name"`
}

// createUser creates a user at a facility of the admin's region.
func (s *Service) createUser(c echo.Context) error {
	p, err := Current(c)
	if err != nil {
		return err
	}
	var req CreateUserRequest
	if err := httpx.BindJSON(c, &req); err != nil {
		return err
	}
	ctx := c.Request().Context()
	if req.Role == RoleAuditor {
		_ = Audit(ctx, s.pool, Entry{Action: "deny", RecordType: "user", RecordID: NormalizeUsername(req.Username), Facility: req.Facility,
			Detail: map[string]any{"reason": "admins may not create auditors"}})
		return apperr.E(apperr.Forbidden, "auditors are created with `qinba user add`, not by an admin")
	}
	if req.Facility != "" {
		var exists bool
		if err := s.pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM facility WHERE code = $1)`, req.Facility).Scan(&exists); err != nil {
			return err
		}
		if exists {
			if err := s.scope.Check(ctx, p, DenyForbidden, "facility", req.Facility, req.Facility); err != nil {
				return err
			}
		}
	}
	var u User
	err = db.WithTx(ctx, s.pool, func(tx pgx.Tx) error {
		var err error
		u, err = CreateUser(ctx, tx, NewUser{Username: req.Username, Password: req.Password, Role: req.Role,
			Facility: req.Facility, DisplayName: req.DisplayName, Params: s.cfg.HashParams})
		if err != nil {
			return err
		}
		return Audit(ctx, tx, Entry{Action: "create", RecordType: "user", RecordID: u.Username, Facility: u.Facility,
			Detail: map[string]any{"role": string(u.Role)}})
	})
	if err != nil {
		return err
	}
	return c.JSON(http.StatusCreated, u)
}

// disableUser disables a user of the admin's region and ends their
// sessions. A user outside the region is "not found" (404): an admin
// learns nothing about other regions' accounts.
func (s *Service) disableUser(c echo.Context) error {
	p, err := Current(c)
	if err != nil {
		return err
	}
	ctx := c.Request().Context()
	name := NormalizeUsername(c.Param("username"))
	target, err := GetUserByName(ctx, s.pool, name)
	if apperr.Is(err, apperr.NotFound) {
		return apperr.E(apperr.NotFound, "user not found")
	}
	if err != nil {
		return err
	}
	if err := s.scope.Check(ctx, p, DenyNotFound, "user", target.Username, target.Facility); err != nil {
		return err
	}
	if target.ID == p.UserID {
		return apperr.E(apperr.Conflict, "you cannot disable your own account")
	}
	if !target.Role.Valid() || !slices.Contains(AdminManagedRoles, target.Role) {
		_ = Audit(ctx, s.pool, Entry{Action: "deny", RecordType: "user", RecordID: target.Username, Facility: target.Facility,
			Detail: map[string]any{"reason": "admins may not disable auditors"}})
		return apperr.E(apperr.Forbidden, "auditors are disabled with `qinba user disable`, not by an admin")
	}
	err = db.WithTx(ctx, s.pool, func(tx pgx.Tx) error {
		var err error
		if target, err = DisableUser(ctx, tx, target.Username); err != nil {
			return err
		}
		return Audit(ctx, tx, Entry{Action: "disable", RecordType: "user", RecordID: target.Username, Facility: target.Facility})
	})
	if errors.Is(err, pgx.ErrNoRows) {
		return apperr.E(apperr.NotFound, "user not found")
	}
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, target)
}
