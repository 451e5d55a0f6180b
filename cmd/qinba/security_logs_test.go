package main

// Identity numbers never reach the log: roster import, person reads and
// failing requests carrying identity numbers in URLs, query strings and
// bodies, with the server's log captured; no 18-digit identity number
// pattern may appear in it. Also: no password or token in the log.

import (
	"bytes"
	"net/url"
	"regexp"
	"strings"
	"testing"

	"github.com/qinba/qinba/auth"
	"github.com/qinba/qinba/household"
)

var identityNumber = regexp.MustCompile(`[1-9]\d{16}[\dXx]`)

func TestLogsMaskIdentityNumbersAndSecrets(t *testing.T) {
	t.Parallel()
	ts, logs := newLoggedTestServer(t)
	admin := ts.as(t, auth.RoleAdmin, facCounty)
	vdoc := ts.as(t, auth.RoleVillageDoctor, facVillage)
	var roster bytes.Buffer
	if err := household.GenerateRoster(&roster, 7, 5, []string{facVillage}); err != nil {
		t.Fatal(err)
	}
	ids := identityNumber.FindAllString(roster.String(), -1)
	if len(ids) == 0 {
		t.Fatal("generated roster has no identity numbers")
	}
	if resp, body := ts.raw(t, "POST", "/api/v1/households/import", admin, "text/csv", roster.Bytes()); resp.StatusCode != 200 {
		t.Fatalf("roster import: %d %s", resp.StatusCode, body)
	}
	// A roster with a bad line naming an identity number.
	bad := strings.Replace(roster.String(), ",head,", ",boss,", 1)
	ts.raw(t, "POST", "/api/v1/households/import", admin, "text/csv", bad)
	id := ids[0]
	for _, who := range []token{admin, vdoc, {}} {
		ts.do(t, "GET", "/api/v1/persons?q="+url.QueryEscape(id), who, nil)
		ts.do(t, "GET", "/api/v1/persons/"+id, who, nil)
		ts.do(t, "GET", "/api/v1/persons?national_id="+id, who, nil)
		ts.do(t, "GET", "/api/v1/nothing/"+id, who, nil)
		ts.do(t, "POST", "/api/v1/referrals", who, map[string]any{"person_id": id, "national_id": id, "summary": id})
		ts.do(t, "POST", "/api/v1/bills", who, map[string]any{"person_id": 1, "national_id": id})
		ts.do(t, "POST", "/api/v1/bills/import", who, "external_no,facility_code,person_id,national_id\nX,"+facCounty+",,"+id+"\n")
	}
	ts.do(t, "POST", "/api/v1/auth/login", token{}, map[string]string{"username": id, "password": "secret-password-" + id})
	name, pw := ts.user(t, auth.RoleDoctor, facCounty)
	tok := ts.login(t, name, pw)
	ts.do(t, "GET", "/api/v1/auth/me", tok, nil)
	ts.do(t, "GET", "/api/v1/auth/me", bearer("forged."+id+".token"), nil)

	s := logs.String()
	if strings.Count(s, "\n") < 20 {
		t.Fatalf("the log is nearly empty:\n%s", s)
	}
	if m := identityNumber.FindAllString(s, 5); len(m) > 0 {
		for _, line := range strings.Split(s, "\n") {
			if identityNumber.MatchString(line) {
				t.Errorf("identity number in the log: %s", line)
			}
		}
	}
	for _, secret := range []string{pw, tok.Access, tok.Refresh, "secret-password-"} {
		if secret != "" && strings.Contains(s, secret) {
			t.Errorf("a secret (%.12s…) is in the log", secret)
		}
	}
}
