package auth

import (
	"context"
	"encoding/json"
	"net/url"
	"regexp"
	"strconv"
	"time"

	"github.com/qinba/qinba/internal/apperr"
	"github.com/qinba/qinba/internal/db"
)

// AuditRecord is one audit log entry as GET /api/v1/audit shows it.
type AuditRecord struct {
	ID         int64           `json:"id"`
	At         time.Time       `json:"at"`
	UserID     *int64          `json:"user_id"`
	Username   string          `json:"username"`
	Role       string          `json:"role"`
	Action     string          `json:"action"`
	RecordType string          `json:"record_type"`
	RecordID   string          `json:"record_id"`
	Facility   string          `json:"facility"`
	IP         string          `json:"ip"`
	RequestID  string          `json:"request_id"`
	Detail     json.RawMessage `json:"detail,omitempty"`
}

// AuditFilter narrows QueryAudit. Empty fields do not filter. Results are
// newest first; Before pages (entries with a smaller id).
type AuditFilter struct {
	Username   string
	Action     string
	RecordType string
	RecordID   string
	From, To   time.Time // From inclusive, To exclusive
	Before     int64
	Limit      int
}

var (
	auditWordRe = regexp.MustCompile(`^[a-z][a-z0-9_]{0,39}$`)
	auditIDRe   = regexp.MustCompile(`^[\p{L}\p{N} _.:/-]{1,128}$`)
)

// ParseAuditFilter reads the query of GET /api/v1/audit: username, action,
// record_type, record_id, from, to (RFC 3339), before (an id), limit
// (1-1000, default 100). Every bad or unknown parameter is a 400 naming it.
func ParseAuditFilter(q url.Values) (AuditFilter, error) {
	f := AuditFilter{Limit: 100}
	bad := apperr.Fields{}
	for k, vs := range q {
		if len(vs) != 1 {
			bad.Add(k, "give it once")
			continue
		}
		v := vs[0]
		switch k {
		case "username":
			if f.Username = NormalizeUsername(v); !usernameRe.MatchString(f.Username) {
				bad.Add(k, "not a username")
			}
		case "action":
			if f.Action = v; !auditWordRe.MatchString(v) {
				bad.Add(k, "must be a lower-case word like login or deny")
			}
		case "record_type":
			if f.RecordType = v; !auditWordRe.MatchString(v) {
				bad.Add(k, "must be a lower-case word like person or user")
			}
		case "record_id":
			if f.RecordID = v; !auditIDRe.MatchString(v) {
				bad.Add(k, "must be 1 to 128 letters, digits or . _ : / -")
			}
		case "from", "to":
			t, err := time.Parse(time.RFC3339, v)
			if err != nil {
				bad.Add(k, "must be an RFC 3339 time like 2019-06-01T08:00:00+08:00")
			} else if k == "from" {
				f.From = t
			} else {
				f.To = t
			}
		case "before":
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil || n < 1 {
				bad.Add(k, "must be a positive entry id")
			}
			f.Before = n
		case "limit":
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 || n > 1000 {
				bad.Add(k, "must be an integer from 1 to 1000")
			}
			f.Limit = n
		default:
			bad.Add(k, "unknown filter")
		}
	}
	if !f.From.IsZero() && !f.To.IsZero() && !f.From.Before(f.To) {
		bad.Add("to", "must be after from")
	}
	return f, bad.Err()
}

// QueryAudit returns the entries matching f, newest first.
func QueryAudit(ctx context.Context, d db.DBTX, f AuditFilter) ([]AuditRecord, error) {
	if f.Limit <= 0 || f.Limit > 1000 {
		f.Limit = 100
	}
	var from, to *time.Time
	if !f.From.IsZero() {
		from = &f.From
	}
	if !f.To.IsZero() {
		to = &f.To
	}
	rows, err := d.Query(ctx, `SELECT id, at, user_id, username, role, action, record_type, record_id, facility_code, ip, request_id, detail
		FROM audit_log
		WHERE ($1 = '' OR username = $1) AND ($2 = '' OR action = $2) AND ($3 = '' OR record_type = $3) AND ($4 = '' OR record_id = $4)
		  AND ($5::timestamptz IS NULL OR at >= $5) AND ($6::timestamptz IS NULL OR at < $6) AND ($7 = 0 OR id < $7)
		ORDER BY id DESC LIMIT $8`,
		f.Username, f.Action, f.RecordType, f.RecordID, from, to, f.Before, f.Limit)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []AuditRecord{}
	for rows.Next() {
		var r AuditRecord
		var detail []byte
		if err := rows.Scan(&r.ID, &r.At, &r.UserID, &r.Username, &r.Role, &r.Action, &r.RecordType, &r.RecordID,
			&r.Facility, &r.IP, &r.RequestID, &detail); err != nil {
			return nil, err
		}
		if len(detail) > 0 {
			r.Detail = detail
		}
		out = append(out, r)
	}
	return out, rows.Err()
}
