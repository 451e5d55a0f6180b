package auth

import (
	"context"
	"errors"
	"regexp"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"

	"github.com/qinba/qinba/internal/apperr"
	"github.com/qinba/qinba/internal/db"
)

// User is an account as the user-management API shows it (never the hash).
type User struct {
	ID          int64     `json:"id"`
	Username    string    `json:"username"`
	Role        Role      `json:"role"`
	Facility    string    `json:"facility"`
	Tier        string    `json:"tier"`
	Region      string    `json:"region"`
	DisplayName string    `json:"display_name"`
	Disabled    bool      `json:"disabled"`
	CreatedAt   time.Time `json:"created_at"`
}

// Principal returns the principal u acts as.
func (u User) Principal() *Principal {
	return &Principal{UserID: u.ID, Username: u.Username, Role: u.Role, Facility: u.Facility, Tier: u.Tier, Region: u.Region}
}

// NewUser is what creating an account needs.
type NewUser struct {
	Username    string
	Password    string
	Role        Role
	Facility    string
	DisplayName string
	// PasswordHash, when set, is stored instead of hashing Password (an
	// argon2id PHC string, e.g. migrated from another system or shared by
	// test fixtures). Password is then ignored.
	PasswordHash string
	// Params are the hashing costs (zero: DefaultHashParams).
	Params HashParams
}

var usernameRe = regexp.MustCompile(`^[a-z0-9_.-]{3,64}$`)

// NormalizeUsername lower-cases and trims a username as typed.
func NormalizeUsername(s string) string { return strings.ToLower(strings.TrimSpace(s)) }

// RoleTiers lists, per role, the facility tiers a user of that role may
// belong to. A village doctor works at a village clinic; a doctor at a
// township, county or city hospital (their tier comes from the facility);
// an admin is the county (or city) health commission.
var RoleTiers = map[Role][]string{
	RoleVillageDoctor: {"village"},
	RoleDoctor:        {"township", "county", "city"},
	RoleBillingClerk:  {"village", "township", "county", "city"},
	RoleAdmin:         {"county", "city"},
	RoleAuditor:       {"village", "township", "county", "city"},
}

const userColumns = `u.id, u.username, u.role, u.facility_code, f.tier, f.region_code, u.display_name, u.disabled, u.created_at`

func scanUser(row pgx.Row) (User, error) {
	var u User
	err := row.Scan(&u.ID, &u.Username, &u.Role, &u.Facility, &u.Tier, &u.Region, &u.DisplayName, &u.Disabled, &u.CreatedAt)
	return u, err
}

// CreateUser validates nu (username form, role, the facility exists and
// its tier fits the role, password policy), hashes the password and stores
// the account. A taken username is a Conflict.
func CreateUser(ctx context.Context, d db.DBTX, nu NewUser) (User, error) {
	nu.Username = NormalizeUsername(nu.Username)
	nu.DisplayName = strings.TrimSpace(nu.DisplayName)
	f := apperr.Fields{}
	if !usernameRe.MatchString(nu.Username) {
		f.Add("username", "must be 3 to 64 of a-z, 0-9, '.', '_' or '-'")
	}
	if !nu.Role.Valid() {
		f.Add("role", "must be one of village_doctor, doctor, billing_clerk, admin, auditor")
	}
	if utf8.RuneCountInString(nu.DisplayName) > 100 || !utf8.ValidString(nu.DisplayName) {
		f.Add("display_name", "must be valid text of at most 100 characters")
	}
	if nu.PasswordHash != "" {
		if !ValidHash(nu.PasswordHash) {
			f.Add("password", "the stored hash is not an argon2id PHC string")
		}
	} else if err := CheckPassword(nu.Password, nu.Username); err != nil {
		ae, _ := apperr.As(err)
		f.Add("password", "%s", ae.Fields["password"])
	}
	var tier string
	if nu.Facility == "" {
		f.Add("facility", "is required")
	} else {
		err := d.QueryRow(ctx, `SELECT tier FROM facility WHERE code = $1`, nu.Facility).Scan(&tier)
		switch {
		case errors.Is(err, pgx.ErrNoRows):
			f.Add("facility", "no facility %q", nu.Facility)
		case err != nil:
			return User{}, err
		case nu.Role.Valid() && !slices.Contains(RoleTiers[nu.Role], tier):
			f.Add("facility", "a %s must belong to a %s facility, %s is a %s", nu.Role, strings.Join(RoleTiers[nu.Role], " or "), nu.Facility, tier)
		}
	}
	if err := f.Err(); err != nil {
		return User{}, err
	}
	hash := nu.PasswordHash
	if hash == "" {
		p := nu.Params
		if p == (HashParams{}) {
			p = DefaultHashParams
		}
		var err error
		if hash, err = HashPassword(ctx, nu.Password, p); err != nil {
			return User{}, err
		}
	}
	var id int64
	err := d.QueryRow(ctx, `INSERT INTO app_user (username, password_hash, role, facility_code, display_name)
		VALUES ($1, $2, $3, $4, $5) ON CONFLICT (username) DO NOTHING RETURNING id`,
		nu.Username, hash, string(nu.Role), nu.Facility, nu.DisplayName).Scan(&id)
	if errors.Is(err, pgx.ErrNoRows) {
		return User{}, &apperr.Error{Code: apperr.Conflict, Message: "username already taken",
			Fields: map[string]string{"username": "already taken"}}
	}
	if err != nil {
		return User{}, err
	}
	return GetUser(ctx, d, id)
}

// GetUser returns the user with id, or NotFound.
func GetUser(ctx context.Context, d db.DBTX, id int64) (User, error) {
	u, err := scanUser(d.QueryRow(ctx, `SELECT `+userColumns+` FROM app_user u JOIN facility f ON f.code = u.facility_code WHERE u.id = $1`, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return User{}, apperr.E(apperr.NotFound, "user not found")
	}
	return u, err
}

// GetUserByName returns the user called username, or NotFound.
func GetUserByName(ctx context.Context, d db.DBTX, username string) (User, error) {
	u, err := scanUser(d.QueryRow(ctx, `SELECT `+userColumns+` FROM app_user u JOIN facility f ON f.code = u.facility_code WHERE u.username = $1`,
		NormalizeUsername(username)))
	if errors.Is(err, pgx.ErrNoRows) {
		return User{}, apperr.E(apperr.NotFound, "user not found")
	}
	return u, err
}

// credentials returns the user and password hash for a login, or
// found=false.
func credentials(ctx context.Context, d db.DBTX, username string) (u User, hash string, found bool, err error) {
	err = d.QueryRow(ctx, `SELECT `+userColumns+`, u.password_hash FROM app_user u JOIN facility f ON f.code = u.facility_code WHERE u.username = $1`,
		username).Scan(&u.ID, &u.Username, &u.Role, &u.Facility, &u.Tier, &u.Region, &u.DisplayName, &u.Disabled, &u.CreatedAt, &hash)
	if errors.Is(err, pgx.ErrNoRows) {
		return User{}, "", false, nil
	}
	return u, hash, err == nil, err
}

// UserFilter narrows ListUsers. Empty fields do not filter.
type UserFilter struct {
	Region   string
	Facility string
	Role     Role
	Limit    int
	Offset   int
}

// ListUsers returns users matching f, ordered by username.
func ListUsers(ctx context.Context, d db.DBTX, f UserFilter) ([]User, error) {
	if f.Limit <= 0 {
		f.Limit = 1000
	}
	rows, err := d.Query(ctx, `SELECT `+userColumns+` FROM app_user u JOIN facility f ON f.code = u.facility_code
		WHERE ($1 = '' OR f.region_code = $1) AND ($2 = '' OR u.facility_code = $2) AND ($3 = '' OR u.role = $3)
		ORDER BY u.username LIMIT $4 OFFSET $5`, f.Region, f.Facility, string(f.Role), f.Limit, f.Offset)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []User{}
	for rows.Next() {
		u, err := scanUser(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, u)
	}
	return out, rows.Err()
}

// DisableUser disables the account and revokes all its sessions (refresh
// token families). Its access tokens stop working at once, because every
// request re-reads the user. Disabling a disabled user changes nothing.
func DisableUser(ctx context.Context, d db.DBTX, username string) (User, error) {
	var id int64
	err := d.QueryRow(ctx, `UPDATE app_user SET disabled = true, updated_at = now() WHERE username = $1 RETURNING id`,
		NormalizeUsername(username)).Scan(&id)
	if errors.Is(err, pgx.ErrNoRows) {
		return User{}, apperr.E(apperr.NotFound, "user not found")
	}
	if err != nil {
		return User{}, err
	}
	if err := revokeUserFamilies(ctx, d, id, "user disabled"); err != nil {
		return User{}, err
	}
	return GetUser(ctx, d, id)
}

// setPasswordHash replaces a user's hash (a rehash with stronger params).
func setPasswordHash(ctx context.Context, d db.DBTX, id int64, hash string) error {
	_, err := d.Exec(ctx, `UPDATE app_user SET password_hash = $2, updated_at = now() WHERE id = $1`, id, hash)
	return err
}

// loadPrincipal re-reads the user behind an access token. A missing or
// disabled user is refused.
func loadPrincipal(ctx context.Context, d db.DBTX, id int64) (*Principal, error) {
	u, err := GetUser(ctx, d, id)
	if apperr.Is(err, apperr.NotFound) || (err == nil && u.Disabled) {
		return nil, errTokenInvalid
	}
	if err != nil {
		return nil, err
	}
	return u.Principal(), nil
}
