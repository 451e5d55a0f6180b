package main

// Fuzz targets for every JSON request body the API decodes (through
// httpx.DecodeJSON, the decoder of httpx.BindJSON) and for the facility
// CSV parser. (The roster parser, the referral create decoder, the
// settlement cases and policy parsers have their own fuzzers in their
// packages.) In a normal test run they replay their seeds (f.Add below and
// testdata/fuzz/<Name>); `go test -fuzz=FuzzDecodeBillInput ./cmd/qinba`
// explores.

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/qinba/qinba/auth"
	"github.com/qinba/qinba/consult"
	"github.com/qinba/qinba/facility"
	"github.com/qinba/qinba/internal/apperr"
	"github.com/qinba/qinba/internal/httpx"
	"github.com/qinba/qinba/referral"
	"github.com/qinba/qinba/settlement"
)

// hostileJSON are seeds every decoder gets: wrong types, huge numbers,
// 3-decimal amounts, injection strings, bad UTF-8, trailing data, depth.
var hostileJSON = []string{
	``, ` `, `null`, `[]`, `{}`, `"x"`, `1e400`, `{"a":1}`, `{} {}`, `{}x`,
	`{"person_id": 99999999999999999999}`, `{"person_id": 1e400}`, `{"person_id": -1}`, `{"person_id": "1"}`,
	`{"person_id": 1.5}`, `{"version": 1e400}`, `{"version": "1"}`,
	`{"summary": "'; DROP TABLE person;--"}`, `{"reason": "<script>alert(1)</script>"}`,
	"{\"summary\": \"\xff\xfe\"}", `{"summary": "\u0000"}`, `{"lines": [{"quantity": "1.0005", "unit_price": "1.005"}]}`,
	`{"lines": {"a": 1}}`, `{"diagnoses": "I10"}`, strings.Repeat("[", 10000), strings.Repeat(`{"a":`, 5000),
	`{"username": "admin", "password": {"$ne": null}}`, `{"__proto__": {"admin": true}}`,
}

// fuzzDecoder checks DecodeJSON's promises for one request type: no panic;
// a refusal is an *apperr.Error with code invalid (a 400); an accepted body
// re-encodes to JSON that decodes to the same value.
func fuzzDecoder[T any](f *testing.F, seeds ...string) {
	for _, s := range append(seeds, hostileJSON...) {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var v T
		err := httpx.DecodeJSON(data, &v)
		if err != nil {
			ae, ok := apperr.As(err)
			if !ok || ae.Code != apperr.Invalid || ae.Message == "" {
				t.Fatalf("refusal is not a 400 with a message: %#v", err)
			}
			if httpx.Status(ae.Code) != 400 {
				t.Fatalf("status %d", httpx.Status(ae.Code))
			}
			return
		}
		out, err := json.Marshal(&v)
		if err != nil {
			t.Fatalf("accepted value does not encode: %v", err)
		}
		var again T
		if err := httpx.DecodeJSON(out, &again); err != nil {
			t.Fatalf("re-decoding %s: %v", out, err)
		}
		out2, _ := json.Marshal(&again)
		if !bytes.Equal(out, out2) {
			t.Fatalf("not stable:\n%s\n%s", out, out2)
		}
	})
}

func FuzzDecodeLogin(f *testing.F) {
	fuzzDecoder[auth.LoginRequest](f, `{"username":"demo.billing","password":"demo-pass-2019"}`, `{"username":"a","password":""}`)
}

func FuzzDecodeRefresh(f *testing.F) {
	fuzzDecoder[auth.RefreshRequest](f, `{"refresh_token":"abc.def"}`)
}

func FuzzDecodeCreateUser(f *testing.F) {
	fuzzDecoder[auth.CreateUserRequest](f, `{"username":"x","role":"doctor","facility":"K420626-01","password":"long-enough-pass"}`)
}

func FuzzDecodeReferralCreate(f *testing.F) {
	fuzzDecoder[referral.CreateRequest](f,
		`{"person_id":1,"to_facility":"T420626-01","urgency":"urgent","diagnoses":["I63.9"],"summary":"左侧肢体无力"}`,
		`{"person_id":1,"to_facility":"T420626-01","urgency":"urgent","diagnoses":["I63.9"],"summary":"x","consult_id":7}`)
}

func FuzzDecodeReferralAction(f *testing.F) {
	fuzzDecoder[referral.ActionRequest](f, `{"version":1}`, `{"version":2,"reason":"床位已满","note":"x"}`,
		`{"version":3,"scheduled_for":"2026-07-01T09:00:00+08:00"}`, `{"version":3,"scheduled_for":"tomorrow"}`,
		`{"version":4,"counter_referral":{"findings":"脑梗死","treatment":"溶栓","advice":"随访","return_down":true}}`)
}

func FuzzDecodeBillInput(f *testing.F) {
	fuzzDecoder[settlement.BillInput](f,
		`{"person_id":1,"facility":"K420626-01","kind":"inpatient","admitted_on":"2019-06-01","discharged_on":"2019-06-06","external_no":"B1",`+
			`"lines":[{"item_code":"A1","name":"床位费","class":"A","quantity":"5","unit_price":"60.5"}]}`,
		`{"person_id":1,"kind":"outpatient","visit_on":"2019-06-01","lines":[{"item_code":"X","name":"x","class":"C","quantity":"1.005","unit_price":"1.005","amount":"1.01"}]}`)
}

func FuzzDecodeSettleRequest(f *testing.F) {
	fuzzDecoder[settlement.SettleRequest](f, `{"version":1}`, `{"version":-1}`)
}

func FuzzDecodeReverseRequest(f *testing.F) {
	fuzzDecoder[settlement.ReverseRequest](f, `{"reason":"录入错误"}`, `{"reason":""}`)
}

func FuzzDecodeClearingRequest(f *testing.F) {
	fuzzDecoder[settlement.ClearingRequest](f, `{"period":"2019-06"}`, `{"period":"2019-06","facility":"K420626-01"}`)
}

func FuzzDecodeConsultCreate(f *testing.F) {
	fuzzDecoder[consult.CreateRequest](f, `{"person_id":1,"to_facility":"K420626-01","reason":"会诊"}`,
		`{"person_id":1,"to_user_id":3,"reason":"x","scheduled_at":"2026-07-01T09:00:00Z"}`)
}

func FuzzDecodeConsultNotes(f *testing.F) {
	fuzzDecoder[consult.NotesRequest](f, `{"notes":"x","advice":"y"}`)
}

func FuzzDecodeConsultReferral(f *testing.F) {
	fuzzDecoder[consult.ReferralRequest](f, `{"urgency":"urgent","diagnoses":["I10"]}`)
}

func FuzzDecodeConsultConsent(f *testing.F) {
	fuzzDecoder[consult.ConsentRequest](f, `{}`)
}

// FuzzFacilityCSV: the facility parser never panics; a file it refuses is
// refused with an invalid error; every row error names a line of the file.
func FuzzFacilityCSV(f *testing.F) {
	f.Add(facility.DemoCSV)
	for _, s := range []string{
		"", "code,name,tier,parent_code,region_code\n", "a,b\n",
		"code,name,tier,parent_code,region_code\nX1,,village,T9,1\n",
		"\ufeffcode,name,tier,parent_code,region_code\r\nC1,\"City\nTwo\",city,,420600\r\n",
		"code,name,tier,parent_code,region_code\nC1,<script>alert(1)</script>,city,,420600\nC1,'; DROP TABLE person;--,city,,420600\n",
		"code,name,tier,parent_code,region_code\nC1,\xff\xfe,city,,420600\n",
		facilityCSVPanics,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		rows, rowErrs, err := facility.ParseCSV(bytes.NewReader(data))
		if err != nil {
			if ae, ok := apperr.As(err); !ok || ae.Code != apperr.Invalid {
				t.Fatalf("refusal is not invalid: %#v", err)
			}
			return
		}
		lines := bytes.Count(data, []byte("\n")) + 1
		for _, re := range rowErrs {
			if re.Line < 1 || re.Line > lines {
				t.Fatalf("row error at line %d of a %d-line file: %+v", re.Line, lines, re)
			}
		}
		_ = rows
	})
}

// facilityCSVPanics is the input FuzzFacilityCSV found: a quote left open
// after the header made facility.ParseCSV call FieldPos after a failed Read,
// which panics (a 500 over HTTP). Kept as a regression test.
const facilityCSVPanics = "code,name,tier,parent_code,region_code\n\"unterminated\n"

func TestFacilityCSVUnterminatedQuote(t *testing.T) {
	t.Parallel()
	_, rowErrs, err := facility.ParseCSV(strings.NewReader(facilityCSVPanics))
	if err == nil && len(rowErrs) == 0 {
		t.Fatal("an unterminated quote was accepted")
	}
}
