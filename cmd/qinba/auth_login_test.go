package main

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"github.com/qinba/qinba/auth"
)

func TestLoginLockoutAndNoEnumeration(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t)
	ctx := context.Background()
	name, pw := ts.user(t, auth.RoleBillingClerk, facCounty)
	gone, gonePW := ts.user(t, auth.RoleDoctor, facCounty)
	if _, err := auth.DisableUser(ctx, ts.Pool, gone); err != nil {
		t.Fatal(err)
	}
	login := func(u, p string) (int, map[string]any) {
		return ts.do(t, "POST", "/api/v1/auth/login", token{}, map[string]string{"username": u, "password": p})
	}

	// Unknown user, wrong password and disabled account: one answer.
	var msgs []string
	for _, c := range [][2]string{{"nobody.at.all", "whatever-password"}, {name, "wrong-password"}, {gone, gonePW}} {
		st, b := login(c[0], c[1])
		if st != http.StatusUnauthorized {
			t.Fatalf("login %s: %d %v", c[0], st, b)
		}
		e := b["error"].(map[string]any)
		msgs = append(msgs, e["code"].(string)+": "+e["message"].(string))
	}
	if msgs[0] != msgs[1] || msgs[1] != msgs[2] {
		t.Errorf("failed logins are distinguishable: %q", msgs)
	}

	// 5 failures in the window (one above) lock the account: even the
	// right password gets 429 with when to retry.
	for range 4 {
		if st, b := login(name, "wrong-password"); st != http.StatusUnauthorized {
			t.Fatalf("failure: %d %v", st, b)
		}
	}
	resp, raw := ts.raw(t, "POST", "/api/v1/auth/login", token{}, "application/json", map[string]string{"username": name, "password": pw})
	if resp.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("login after 5 failures: %d %s, want 429", resp.StatusCode, raw)
	}
	_, b := decodeBody(raw)
	e := b["error"].(map[string]any)
	if e["code"] != "rate_limited" || !strings.Contains(e["message"].(string), "try again in 15 minutes") {
		t.Errorf("lockout answer %v", e)
	}
	if ra := resp.Header.Get("Retry-After"); ra != "900" && ra != "899" {
		t.Errorf("Retry-After %q, want about 900", ra)
	}
	// An unknown username locks just the same (so a lock reveals nothing).
	for range 5 {
		login("nobody.else", "whatever-password")
	}
	if st, b := login("nobody.else", "whatever-password"); st != http.StatusTooManyRequests {
		t.Errorf("unknown user after 5 failures: %d %v, want 429", st, b)
	}
	// Other accounts are unaffected.
	other, opw := ts.user(t, auth.RoleDoctor, facTownship)
	ts.login(t, other, opw)

	// The audit log has the failures, the lockout and the success.
	var failed, locked, ok int
	err := ts.Pool.QueryRow(ctx, `SELECT count(*) FILTER (WHERE action = 'login_failed' AND username = $1),
		count(*) FILTER (WHERE action = 'lockout' AND username = $1), count(*) FILTER (WHERE action = 'login' AND username = $2)
		FROM audit_log`, name, other).Scan(&failed, &locked, &ok)
	if err != nil {
		t.Fatal(err)
	}
	if failed != 5 || locked != 1 || ok != 1 {
		t.Errorf("audit: %d login_failed, %d lockout, %d login; want 5, 1, 1", failed, locked, ok)
	}
	var ip string
	if err := ts.Pool.QueryRow(ctx, `SELECT ip FROM audit_log WHERE action = 'login' AND username = $1`, other).Scan(&ip); err != nil {
		t.Fatal(err)
	}
	if ip != "127.0.0.1" {
		t.Errorf("audit ip %q", ip)
	}

	// Bad bodies are 400 with the field.
	for _, bad := range []string{`{}`, `{"username":"a"}`, `{"username":"a","password":"b","extra":1}`, `{"username":1,"password":"b"}`} {
		st, b := ts.do(t, "POST", "/api/v1/auth/login", token{}, bad)
		if st != http.StatusBadRequest {
			t.Errorf("login %s: %d %v, want 400", bad, st, b)
		}
	}
}

func TestAuditAPI(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t)
	ctx := context.Background()
	auditor := ts.as(t, auth.RoleAuditor, facCounty)
	doc, pw := ts.user(t, auth.RoleDoctor, facTownship)
	ts.login(t, doc, pw)
	ts.do(t, "POST", "/api/v1/auth/login", token{}, map[string]string{"username": doc, "password": "wrong-password"})

	// auth.Audit from another package: a record read, with an identity
	// number that must be masked.
	p := &auth.Principal{UserID: 1, Username: doc, Role: auth.RoleDoctor, Facility: facTownship}
	actx := auth.WithMeta(auth.WithPrincipal(ctx, p), auth.RequestMeta{IP: "10.0.0.7", RequestID: "req-1"})
	if err := auth.Audit(actx, ts.Pool, auth.Entry{Action: "read", RecordType: "person", RecordID: "42", Facility: facTownship,
		Detail: map[string]any{"note": "id 420626199001011234 looked up"}}); err != nil {
		t.Fatal(err)
	}

	st, b := ts.do(t, "GET", "/api/v1/audit?username="+doc, auditor, nil)
	if st != http.StatusOK {
		t.Fatalf("audit: %d %v", st, b)
	}
	actions := map[string]bool{}
	for _, e := range b["entries"].([]any) {
		actions[e.(map[string]any)["action"].(string)] = true
	}
	for _, a := range []string{"login", "login_failed", "read"} {
		if !actions[a] {
			t.Errorf("no %s entry for %s: %v", a, doc, b)
		}
	}
	st, b = ts.do(t, "GET", "/api/v1/audit?record_type=person&record_id=42&action=read", auditor, nil)
	entries := b["entries"].([]any)
	if st != http.StatusOK || len(entries) != 1 {
		t.Fatalf("filtered audit: %d %v", st, b)
	}
	e := entries[0].(map[string]any)
	if e["ip"] != "10.0.0.7" || e["request_id"] != "req-1" || e["facility"] != facTownship {
		t.Errorf("entry %v", e)
	}
	if d := jsonString(e["detail"]); strings.Contains(d, "199001011234") || !strings.Contains(d, "420626********1234") {
		t.Errorf("identity number not masked: %s", d)
	}

	// Paging: limit and before.
	_, b = ts.do(t, "GET", "/api/v1/audit?limit=2", auditor, nil)
	page := b["entries"].([]any)
	next, ok := b["next_before"].(float64)
	if len(page) != 2 || !ok {
		t.Fatalf("page 1: %v", b)
	}
	_, b = ts.do(t, "GET", "/api/v1/audit?limit=2&before="+jsonString(int64(next)), auditor, nil)
	for _, e := range b["entries"].([]any) {
		if id := e.(map[string]any)["id"].(float64); id >= next {
			t.Errorf("page 2 has id %v, not below %v", id, next)
		}
	}
	_, b = ts.do(t, "GET", "/api/v1/audit?from=2000-01-01T00:00:00Z&to=2000-01-02T00:00:00Z", auditor, nil)
	if len(b["entries"].([]any)) != 0 {
		t.Errorf("time window: %v", b)
	}

	// Bad filters: 400 naming the field.
	for q, field := range map[string]string{
		"limit=0": "limit", "limit=abc": "limit", "limit=1001": "limit", "before=-1": "before", "before=x": "before",
		"from=yesterday": "from", "to=2019-13-01": "to", "from=2020-01-02T00:00:00Z&to=2020-01-01T00:00:00Z": "to",
		"action=DROP%20TABLE": "action", "record_type=a%27b": "record_type", "username=A%20B": "username",
		"colour=red": "colour", "limit=1&limit=2": "limit",
	} {
		st, b := ts.do(t, "GET", "/api/v1/audit?"+q, auditor, nil)
		fields, _ := b["error"].(map[string]any)["fields"].(map[string]any)
		if st != http.StatusBadRequest || fields[field] == nil {
			t.Errorf("?%s: %d %v, want 400 naming %s", q, st, b, field)
		}
	}

	// The audit log is append-only for the server's role and for the owner.
	if _, err := ts.Pool.Exec(ctx, `UPDATE audit_log SET action = 'x'`); err == nil {
		t.Error("the application role updated the audit log")
	}
	if _, err := ts.Pool.Exec(ctx, `DELETE FROM audit_log`); err == nil {
		t.Error("the application role deleted from the audit log")
	}
	for _, q := range []string{`UPDATE audit_log SET action = 'x'`, `DELETE FROM audit_log`, `TRUNCATE audit_log`} {
		if _, err := ts.Owner.Exec(ctx, q); err == nil || !strings.Contains(err.Error(), "append-only") {
			t.Errorf("owner %s: %v, want the append-only refusal", q, err)
		}
	}
}

func TestUsersAPIRules(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t)
	adminName, _ := ts.user(t, auth.RoleAdmin, facCounty)
	admin := ts.mint(t, adminName)
	create := func(body map[string]string) (int, map[string]any) {
		return ts.do(t, "POST", "/api/v1/users", admin, body)
	}
	st, b := create(map[string]string{"username": "Wang.Fang", "password": "a-long-password", "role": "doctor", "facility": facTownship2, "display_name": "王芳"})
	if st != http.StatusCreated || b["username"] != "wang.fang" || b["tier"] != "township" || b["password_hash"] != nil {
		t.Fatalf("create: %d %v", st, b)
	}
	ts.login(t, "wang.fang", "a-long-password")
	for _, tc := range []struct {
		name   string
		body   map[string]string
		status int
		field  string
	}{
		{"taken", map[string]string{"username": "wang.fang", "password": "a-long-password", "role": "doctor", "facility": facTownship}, 409, "username"},
		{"short password", map[string]string{"username": "u.one", "password": "short", "role": "doctor", "facility": facTownship}, 400, "password"},
		{"password is username", map[string]string{"username": "u.twelve34", "password": "u.twelve34", "role": "doctor", "facility": facTownship}, 400, "password"},
		{"doctor at a village", map[string]string{"username": "u.two", "password": "a-long-password", "role": "doctor", "facility": facVillage}, 400, "facility"},
		{"admin at a township", map[string]string{"username": "u.three", "password": "a-long-password", "role": "admin", "facility": facTownship}, 400, "facility"},
		{"unknown facility", map[string]string{"username": "u.four", "password": "a-long-password", "role": "doctor", "facility": "NOPE-9"}, 400, "facility"},
		{"unknown role", map[string]string{"username": "u.five", "password": "a-long-password", "role": "root", "facility": facTownship}, 400, "role"},
		{"auditor", map[string]string{"username": "u.six", "password": "a-long-password", "role": "auditor", "facility": facCounty}, 403, ""},
		{"other region", map[string]string{"username": "u.seven", "password": "a-long-password", "role": "doctor", "facility": facOtherTown}, 403, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st, b := create(tc.body)
			if st != tc.status {
				t.Fatalf("%d %v, want %d", st, b, tc.status)
			}
			if tc.field != "" {
				if f, _ := b["error"].(map[string]any)["fields"].(map[string]any); f[tc.field] == nil {
					t.Errorf("no message for %s: %v", tc.field, b)
				}
			}
		})
	}
	// Disable: self is refused; an auditor of the region is not the admin's
	// to disable; a disabled user's token stops at once.
	if st, _ := ts.do(t, "POST", "/api/v1/users/"+adminName+"/disable", admin, nil); st != http.StatusConflict {
		t.Errorf("disable self: %d, want 409", st)
	}
	aud, _ := ts.user(t, auth.RoleAuditor, facCounty)
	if st, _ := ts.do(t, "POST", "/api/v1/users/"+aud+"/disable", admin, nil); st != http.StatusForbidden {
		t.Errorf("disable an auditor: %d, want 403", st)
	}
	if st, _ := ts.do(t, "POST", "/api/v1/users/no.such.user/disable", admin, nil); st != http.StatusNotFound {
		t.Errorf("disable unknown: %d, want 404", st)
	}
	victim := ts.mint(t, "wang.fang")
	if st, b := ts.do(t, "POST", "/api/v1/users/wang.fang/disable", admin, nil); st != http.StatusOK || b["disabled"] != true {
		t.Fatalf("disable: %d %v", st, b)
	}
	if st, _ := ts.do(t, "GET", "/api/v1/auth/me", victim, nil); st != http.StatusUnauthorized {
		t.Errorf("token of a user disabled by an admin: %d, want 401", st)
	}
	// List filters are validated.
	for _, q := range []string{"?role=root", "?colour=red", "?limit=0"} {
		if st, _ := ts.do(t, "GET", "/api/v1/users"+q, admin, nil); st != http.StatusBadRequest {
			t.Errorf("users%s: %d, want 400", q, st)
		}
	}
	if st, b := ts.do(t, "GET", "/api/v1/users?role=admin", admin, nil); st != http.StatusOK || len(usernames(b)) != 1 {
		t.Errorf("users?role=admin: %d %v", st, b)
	}
}
