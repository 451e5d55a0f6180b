package main

// Bad input through the in-process server: for every POST route that takes
// a JSON body, oversized bodies, invalid UTF-8, wrong types, huge numbers,
// unknown fields and malformed JSON are a 4xx with the JSON error shape,
// never a 500, and write nothing (every table's row count is the same
// before and after, audit tables aside). SQL and HTML injection strings in
// every free-text field are either refused (4xx) or stored as plain text;
// the tables are still there, and the HTML statement escapes them.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"html"
	"log/slog"
	"net/http"
	"sort"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/qinba/qinba/auth"
)

// newLoggedTestServer is newTestServer with the server's log written to a
// buffer the test can read.
func newLoggedTestServer(t *testing.T) (*testServer, *syncBuffer) {
	t.Helper()
	logs := &syncBuffer{}
	return newTestServerLog(t, slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))), logs
}

// rowCounts counts the rows of every table but the append-only logs that a
// refused request may legitimately write (audit of denials, login
// attempts).
func rowCounts(t *testing.T, owner *pgxpool.Pool) map[string]int64 {
	t.Helper()
	ctx := context.Background()
	rows, err := owner.Query(ctx, `SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1`)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			t.Fatal(err)
		}
		if strings.Contains(n, "audit") || strings.Contains(n, "login") || strings.Contains(n, "goose") {
			continue
		}
		names = append(names, n)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	out := map[string]int64{}
	for _, n := range names {
		var c int64
		if err := owner.QueryRow(ctx, `SELECT count(*) FROM "`+n+`"`).Scan(&c); err != nil {
			t.Fatal(err)
		}
		out[n] = c
	}
	return out
}

// postRoute is one POST route with a valid body.
type postRoute struct {
	name, path string
	tok        token
	hdr        map[string]string
	body       map[string]any
	text       []string // its free-text fields
}

// badBodies are the malformed variants of a valid body.
func badBodies(base map[string]any) map[string][]byte {
	out := map[string][]byte{}
	enc := func(m map[string]any) []byte { b, _ := json.Marshal(m); return b }
	for k := range base {
		for name, raw := range map[string]string{
			"1e400": `1e400`, "20 digits": `99999999999999999999`, "array": `[1,2]`, "object": `{"a":{"b":[]}}`,
			"bool": `true`, "negative 20 digits": `-99999999999999999999`,
		} {
			m := map[string]any{}
			for k2, v := range base {
				m[k2] = v
			}
			m[k] = json.RawMessage(raw)
			out[k+"="+name] = enc(m)
		}
		if _, isString := base[k].(string); isString {
			b := enc(base)
			i := bytes.Index(b, []byte(`"`+k+`":"`))
			if i >= 0 {
				j := i + len(k) + 4
				out[k+" invalid UTF-8"] = append(append(append([]byte{}, b[:j]...), 0xff, 0xfe), b[j:]...)
			}
		}
	}
	full := enc(base)
	out["unknown field"] = enc(map[string]any{"zzz_unknown": 1})
	out["trailing data"] = append(append([]byte{}, full...), []byte(` {"x":1}`)...)
	out["truncated"] = full[:len(full)/2]
	out["not an object"] = []byte(`[` + string(full) + `]`)
	if _, ok := base["lines"]; ok { // money with too many decimals
		for name, l := range map[string]map[string]string{
			"amount 3 decimals":      {"item_code": "A1", "name": "x", "class": "A", "quantity": "1", "unit_price": "1.005", "amount": "1.005"},
			"price 5 decimals":       {"item_code": "A1", "name": "x", "class": "A", "quantity": "1", "unit_price": "1.00005"},
			"quantity 4 decimals":    {"item_code": "A1", "name": "x", "class": "A", "quantity": "1.0005", "unit_price": "1"},
			"price 1e400":            {"item_code": "A1", "name": "x", "class": "A", "quantity": "1", "unit_price": "1e400"},
			"price 20 digits":        {"item_code": "A1", "name": "x", "class": "A", "quantity": "1", "unit_price": "99999999999999999999"},
			"amount not the product": {"item_code": "A1", "name": "x", "class": "A", "quantity": "3", "unit_price": "0.335", "amount": "1.00"},
		} {
			m := map[string]any{}
			for k, v := range base {
				m[k] = v
			}
			m["lines"] = []map[string]string{l}
			out[name] = enc(m)
		}
	}
	if _, ok := base["version"]; !ok || len(base) > 1 { // settle's body is optional
		out["empty"] = []byte(``)
		out["null"] = []byte(`null`)
	}
	out["deep"] = []byte(strings.Repeat("[", 100000))
	out["oversized"] = append(append([]byte(`{"pad":"`), bytes.Repeat([]byte("x"), 13<<20)...), []byte(`"}`)...)
	return out
}

// secFixture is the server with one of each thing the POST routes act on.
type secFixture struct {
	ts                              *testServer
	village, township, clerk, admin token
	person, bill, settlementID      int64
	referralID                      int64
	household                       string
}

func newSecFixture(t *testing.T) (*secFixture, *syncBuffer) {
	ts, logs := newLoggedTestServer(t)
	f := &secFixture{ts: ts}
	f.village = ts.as(t, auth.RoleVillageDoctor, facVillage)
	f.township = ts.as(t, auth.RoleDoctor, facTownship)
	f.clerk = ts.as(t, auth.RoleBillingClerk, facCounty)
	f.admin = ts.as(t, auth.RoleAdmin, facCounty)
	svc := stlSvc(t, ts)
	var ids []int64
	f.household, ids = stlHousehold(t, ts, facVillage, "dibao", "head")
	f.person = ids[0]
	in := stlInpatient(f.person, facCounty, "2019-06-01", "2019-06-06", stlLine("A", "4000"), stlLine("B", "800"))
	v, _, err := svc.CreateBill(context.Background(), nil, &in)
	if err != nil {
		t.Fatal(err)
	}
	f.bill = v.ID
	f.settlementID = stlSettled(t, ts, svc, facCounty)
	st, b := ts.do(t, "POST", "/api/v1/referrals", f.village, map[string]any{"person_id": f.person, "to_facility": facTownship,
		"urgency": "urgent", "diagnoses": []string{"I10"}, "summary": "高血压"})
	if st != http.StatusCreated {
		t.Fatalf("referral: %d %v", st, b)
	}
	f.referralID = int64(b["id"].(float64))
	return f, logs
}

func (f *secFixture) routes() []postRoute {
	key := map[string]string{"Idempotency-Key": "sec-key"}
	return []postRoute{
		{"login", "/api/v1/auth/login", token{}, nil, map[string]any{"username": "nobody", "password": "wrong-password"}, []string{"username", "password"}},
		{"refresh", "/api/v1/auth/refresh", token{}, nil, map[string]any{"refresh_token": "x"}, []string{"refresh_token"}},
		{"create user", "/api/v1/users", f.admin, nil, map[string]any{"username": "sec.user", "password": "a-long-password-1", "role": "doctor", "facility": facCounty, "display_name": "张三"}, []string{"username", "display_name"}},
		{"create referral", "/api/v1/referrals", f.village, key, map[string]any{"person_id": f.person, "to_facility": facTownship, "urgency": "urgent", "diagnoses": []string{"I10"}, "summary": "头晕"}, []string{"summary", "to_facility"}},
		{"accept referral", fmt.Sprintf("/api/v1/referrals/%d/accept", f.referralID), f.township, nil, map[string]any{"version": 1, "note": "收到"}, []string{"note"}},
		{"decline referral", fmt.Sprintf("/api/v1/referrals/%d/decline", f.referralID), f.township, nil, map[string]any{"version": 1, "reason": "床位已满"}, []string{"reason", "note"}},
		{"cancel referral", fmt.Sprintf("/api/v1/referrals/%d/cancel", f.referralID), f.village, nil, map[string]any{"version": 1, "reason": "患者拒绝"}, []string{"reason"}},
		{"create bill", "/api/v1/bills", f.clerk, nil, map[string]any{"person_id": f.person, "facility": facCounty, "kind": "outpatient", "visit_on": "2019-07-01", "external_no": "SEC-1",
			"lines": []map[string]string{{"item_code": "A1", "name": "诊查费", "class": "A", "quantity": "1", "unit_price": "10"}}}, []string{"external_no"}},
		{"estimate", "/api/v1/bills/estimate", f.clerk, nil, map[string]any{"person_id": f.person, "kind": "outpatient", "visit_on": "2019-07-01",
			"lines": []map[string]string{{"item_code": "A1", "name": "诊查费", "class": "A", "quantity": "1", "unit_price": "10"}}}, nil},
		{"settle", fmt.Sprintf("/api/v1/bills/%d/settle", f.bill), f.clerk, key, map[string]any{"version": 1}, nil},
		{"reverse", fmt.Sprintf("/api/v1/settlements/%d/reverse", f.settlementID), f.clerk, key, map[string]any{"reason": "录入错误"}, []string{"reason"}},
		{"clearing", "/api/v1/clearing", f.clerk, nil, map[string]any{"period": "2001-01", "facility": facCounty}, []string{"period", "facility"}},
		{"consult", "/api/v1/consults", f.village, key, map[string]any{"person_id": f.person, "to_facility": facTownship, "reason": "会诊"}, []string{"reason", "to_facility"}},
	}
}

// errorShaped reports whether body is the one JSON error shape.
func errorShaped(body []byte) bool {
	var eb struct {
		Error struct{ Code, Message string } `json:"error"`
	}
	return json.Unmarshal(body, &eb) == nil && eb.Error.Code != "" && eb.Error.Message != ""
}

func TestBadInputIs4xxAndWritesNothing(t *testing.T) {
	t.Parallel()
	f, logs := newSecFixture(t)
	ts := f.ts
	before := rowCounts(t, ts.Owner)
	n := 0
	for _, r := range f.routes() {
		bodies := badBodies(r.body)
		names := make([]string, 0, len(bodies))
		for k := range bodies {
			names = append(names, k)
		}
		sort.Strings(names)
		for _, name := range names {
			req, _ := http.NewRequest("POST", ts.URL+r.path, bytes.NewReader(bodies[name]))
			req.Header.Set("Content-Type", "application/json")
			if r.tok.Access != "" {
				req.Header.Set("Authorization", "Bearer "+r.tok.Access)
			}
			for k, v := range r.hdr {
				req.Header.Set(k, v)
			}
			resp, err := ts.client.Do(req)
			if err != nil {
				t.Errorf("%s / %s: %v", r.name, name, err)
				continue
			}
			var buf bytes.Buffer
			_, _ = buf.ReadFrom(resp.Body)
			resp.Body.Close()
			n++
			if resp.StatusCode < 400 || resp.StatusCode >= 500 || !errorShaped(buf.Bytes()) {
				t.Errorf("%s / %s: %d %.300s", r.name, name, resp.StatusCode, buf.Bytes())
			}
		}
	}
	// CSV uploads with broken files.
	for _, up := range []struct{ name, path, csv string }{
		{"roster bad header", "/api/v1/households/import", "a,b\n1,2\n"},
		{"roster bad UTF-8", "/api/v1/households/import", "household_id,national_id,name,relation,village_code,category,insured\nH1,420626197501010015,\xff\xfe,head,V420626-001,dibao,true\n"},
		{"roster injection", "/api/v1/households/import", "household_id,national_id,name,relation,village_code,category,insured\n'; DROP TABLE person;--,420626197501010015,<script>alert(1)</script>,head,V420626-001,dibao,true\n"},
		{"bills bad header", "/api/v1/bills/import", "x\n"},
		{"bills 3-decimal amount", "/api/v1/bills/import", "external_no,facility_code,person_id,national_id,kind,admitted_on,discharged_on,visit_on,emergency,referral_id,item_code,item_name,class,quantity,unit_price,amount\n" +
			fmt.Sprintf("X1,%s,%d,,outpatient,,,2019-07-01,,,A1,x,A,1,1.005,1.005\n", facCounty, f.person)},
		{"facilities bad row", "/api/v1/facilities/import", "code,name,tier,parent_code,region_code\nX1,,village,T9,1\n"},
	} {
		tok := f.admin
		if strings.HasPrefix(up.path, "/api/v1/bills") {
			tok = f.clerk
		}
		resp, body := ts.raw(t, "POST", up.path, tok, "text/csv", up.csv)
		n++
		if resp.StatusCode < 400 || resp.StatusCode >= 500 || !errorShaped(body) {
			t.Errorf("%s: %d %.300s", up.name, resp.StatusCode, body)
		}
	}
	after := rowCounts(t, ts.Owner)
	for k, v := range before {
		if after[k] != v {
			t.Errorf("table %s: %d rows before, %d after the refused requests", k, v, after[k])
		}
	}
	if s := logs.String(); strings.Contains(s, "status=500") || strings.Contains(s, "panic") {
		t.Errorf("server errors in the log:\n%s", tail(s, 3000))
	}
	t.Logf("%d malformed requests refused with a 4xx and the error shape; nothing written", n)
}

// injections are stored as text or refused, never executed.
var injections = []string{`'; DROP TABLE person;--`, `<script>alert(1)</script>`, `" onmouseover="alert(1)`, `1' OR '1'='1`}

func TestInjectionStringsAreInertAndEscaped(t *testing.T) {
	t.Parallel()
	f, logs := newSecFixture(t)
	ts := f.ts
	accepted := 0
	for _, r := range f.routes() {
		for _, field := range r.text {
			for i, inj := range injections {
				m := map[string]any{}
				for k, v := range r.body {
					m[k] = v
				}
				m[field] = inj
				hdr := map[string]string{}
				for k, v := range r.hdr {
					hdr[k] = fmt.Sprintf("%s-%s-%d", v, field, i)
				}
				js, _ := json.Marshal(m)
				req, _ := http.NewRequest("POST", ts.URL+r.path, bytes.NewReader(js))
				req.Header.Set("Content-Type", "application/json")
				if r.tok.Access != "" {
					req.Header.Set("Authorization", "Bearer "+r.tok.Access)
				}
				for k, v := range hdr {
					req.Header.Set(k, v)
				}
				resp, err := ts.client.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				var buf bytes.Buffer
				_, _ = buf.ReadFrom(resp.Body)
				resp.Body.Close()
				switch {
				case resp.StatusCode >= 500:
					t.Errorf("%s.%s = %q: %d %s", r.name, field, inj, resp.StatusCode, buf.Bytes())
				case resp.StatusCode >= 400 && !errorShaped(buf.Bytes()):
					t.Errorf("%s.%s = %q: %d without the error shape: %s", r.name, field, inj, resp.StatusCode, buf.Bytes())
				case resp.StatusCode < 300:
					accepted++
					if strings.Contains(resp.Header.Get("Content-Type"), "html") {
						t.Errorf("%s answered HTML", r.name)
					}
				}
			}
		}
	}
	var n int
	if err := ts.Owner.QueryRow(context.Background(), `SELECT count(*) FROM person`).Scan(&n); err != nil || n == 0 {
		t.Fatalf("person table after the injections: %d %v", n, err)
	}
	// A referral summary is stored byte for byte.
	var stored int
	if err := ts.Owner.QueryRow(context.Background(), `SELECT count(*) FROM referral WHERE summary = ANY($1)`, injections).Scan(&stored); err != nil {
		t.Fatal(err)
	}
	if stored == 0 {
		t.Errorf("no referral summary stored verbatim")
	}

	// The household statement (HTML) escapes names.
	ctx := context.Background()
	if _, err := ts.Owner.Exec(ctx, `UPDATE person SET name = $1 WHERE id = $2`, `<script>alert(1)</script>`, f.person); err != nil {
		t.Fatal(err)
	}
	resp, body := ts.raw(t, "GET", "/api/v1/households/"+f.household+"/statement?year=2019&format=html", f.admin, "", nil)
	if resp.StatusCode != 200 || !strings.Contains(resp.Header.Get("Content-Type"), "text/html") {
		t.Fatalf("statement: %d %s", resp.StatusCode, body)
	}
	if bytes.Contains(body, []byte("<script>alert(1)")) || !bytes.Contains(body, []byte(html.EscapeString("<script>alert(1)</script>"))) {
		t.Errorf("statement does not escape the name:\n%s", body)
	}
	if csp := resp.Header.Get("Content-Security-Policy"); csp == "" || strings.Contains(csp, "unsafe-inline") && strings.Contains(csp, "script-src 'unsafe-inline'") {
		t.Errorf("statement CSP %q", csp)
	}
	if s := logs.String(); strings.Contains(s, "status=500") {
		t.Errorf("server errors in the log:\n%s", tail(s, 3000))
	}
	t.Logf("%d injection requests accepted as plain text, the rest refused with a 4xx", accepted)
}
