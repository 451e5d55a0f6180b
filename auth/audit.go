package auth

import (
	"context"
	"encoding/json"
	"time"

	"github.com/qinba/qinba/internal/db"
)

// Entry is one audit log record. Actor, IP and request id come from the
// context (the request's principal and metadata).
type Entry struct {
	// Action is what happened: login, login_failed, logout, refresh, deny,
	// read, create, update, import, settle, reverse, ...
	Action string
	// RecordType and RecordID name the record touched, e.g. "person", "42".
	RecordType string
	RecordID   string
	// Facility is the facility whose record it is, when known.
	Facility string
	// Username overrides the actor for events without a principal (a failed
	// login names the username tried).
	Username string
	// Detail is extra context; it must never hold a full identity number.
	Detail map[string]any
}

// Audit appends e to the audit log. The table is append-only: a trigger
// refuses UPDATE and DELETE, and the application role has no such grant.
func Audit(ctx context.Context, d db.DBTX, e Entry) error {
	p := PrincipalFrom(ctx)
	m := MetaFrom(ctx)
	var userID *int64
	username := e.Username
	role := ""
	if p != nil {
		userID = &p.UserID
		if username == "" {
			username = p.Username
		}
		role = string(p.Role)
	}
	var detail []byte
	if len(e.Detail) > 0 {
		detail, _ = json.Marshal(e.Detail)
	}
	_, err := d.Exec(ctx, `INSERT INTO audit_log (at, user_id, username, role, action, record_type, record_id, facility_code, ip, request_id, detail)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)`,
		time.Now(), userID, username, role, e.Action, e.RecordType, e.RecordID, e.Facility, m.IP, m.RequestID, detail)
	return err
}
