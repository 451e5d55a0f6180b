package auth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"time"

	"github.com/qinba/qinba/internal/db"
)

// Entry is one audit log record. Actor, IP and request id come from the
// context (the request's principal and metadata).
type Entry struct {
	// Action is what happened: login, login_failed, lockout, logout,
	// refresh_reuse, deny, read, create, update, disable, import, settle,
	// reverse, ... (required).
	Action string
	// RecordType and RecordID name the record touched, e.g. "person", "42".
	RecordType string
	RecordID   string
	// Facility is the facility whose record it is, when known.
	Facility string
	// Username overrides the actor for events without a principal (a failed
	// login names the username tried).
	Username string
	// Detail is extra context; it must never hold a full identity number
	// (Audit masks anything that looks like one, as a last line of defence).
	Detail map[string]any
}

// Audit appends e to the audit log. The table is append-only: a trigger
// refuses UPDATE, DELETE and TRUNCATE, and PUBLIC has no such grant.
// Call it with the transaction that does the read or write, so the entry
// commits (or rolls back) with it.
func Audit(ctx context.Context, d db.DBTX, e Entry) error {
	row, err := e.Row(ctx)
	if err != nil {
		return err
	}
	_, err = d.Exec(ctx, `INSERT INTO audit_log (`+AuditColumns+`) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)`, row...)
	return err
}

// AuditColumns are the audit_log columns Entry.Row gives values for, in order.
const AuditColumns = "at, user_id, username, role, action, record_type, record_id, facility_code, ip, request_id, detail"

// Row returns the values of e's audit_log row (AuditColumns), for a
// statement that writes it along with the change it records (one statement
// less on a hot path; Audit is the usual way).
func (e Entry) Row(ctx context.Context) ([]any, error) {
	if e.Action == "" {
		return nil, errors.New("audit: an entry needs an action")
	}
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
		var err error
		if detail, err = json.Marshal(maskValue(e.Detail)); err != nil {
			return nil, fmt.Errorf("audit detail: %w", err)
		}
	}
	return []any{time.Now(), userID, username, role, e.Action, e.RecordType, MaskIDNumbers(e.RecordID), e.Facility, m.IP, m.RequestID, detail}, nil
}

// idNumberRe finds 18-character resident identity numbers (17 digits and
// a digit or X) standing on their own.
var idNumberRe = regexp.MustCompile(`(^|[^0-9])([0-9]{6})([0-9]{8})([0-9]{3}[0-9Xx])($|[^0-9])`)

// MaskIDNumbers replaces the middle of every identity number in s:
// 420626199001011234 becomes 420626********1234.
func MaskIDNumbers(s string) string {
	if len(s) < 18 {
		return s
	}
	// Two passes: adjacent numbers share a delimiter the first pass consumed.
	for range 2 {
		s = idNumberRe.ReplaceAllString(s, "${1}${2}********${4}${5}")
	}
	return s
}

func maskValue(v any) any {
	switch x := v.(type) {
	case string:
		return MaskIDNumbers(x)
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, v := range x {
			out[k] = maskValue(v)
		}
		return out
	case []any:
		out := make([]any, len(x))
		for i, v := range x {
			out[i] = maskValue(v)
		}
		return out
	case []string:
		out := make([]string, len(x))
		for i, v := range x {
			out[i] = MaskIDNumbers(v)
		}
		return out
	}
	return v
}
