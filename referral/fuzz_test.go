package referral_test

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"

	"github.com/qinba/qinba/internal/apperr"
	"github.com/qinba/qinba/referral"
)

func TestICD10(t *testing.T) {
	t.Parallel()
	for code, ok := range map[string]bool{
		"I63.9": true, "J18": true, "S72.001A": true, "U07.1": true, "A00.0": true,
		"I6": false, "I639": false, "63.9": false, "I63.": false, "I63.12345": false, "i63.9": false, "II3.9": false, "I63-9": false, "": false,
	} {
		if referral.ValidICD10(code) != ok {
			t.Errorf("ValidICD10(%q) = %v", code, !ok)
		}
	}
	// The decoder upper-cases and trims.
	req, err := referral.DecodeCreate([]byte(`{"person_id":1,"to_facility":"T1","urgency":"urgent","diagnoses":[" i63.9 "],"summary":" x "}`))
	if err != nil || req.Diagnoses[0] != "I63.9" || req.Summary != "x" {
		t.Fatalf("%+v %v", req, err)
	}
}

// FuzzDecodeCreate: whatever the bytes, the create decoder never panics,
// fails only with a 400 naming what is wrong, and what it accepts is valid
// and stable (decoding its own output gives the same request).
func FuzzDecodeCreate(f *testing.F) {
	seeds := []string{
		`{"person_id":1,"to_facility":"T420626-01","urgency":"urgent","diagnoses":["I63.9","J18"],"summary":"左侧肢体无力"}`,
		`{"person_id":1,"to_facility":"T420626-01","urgency":"emergency","diagnoses":["s72.001a"],"summary":"x","consult_id":7}`,
		`{"person_id":-1,"to_facility":"","urgency":"soon","diagnoses":[],"summary":""}`,
		`{"person_id":1e3,"to_facility":"T","urgency":"routine","diagnoses":["I63.9","I63.9"],"summary":"\u0000"}`,
		`{"person_id":"1"}`, `[]`, `null`, `{}`, `{"diagnoses":null}`, `{"x":1}`, `{"person_id":1} {}`,
		`{"person_id":9223372036854775808}`, "\xff", `{"summary":"` + strings.Repeat("长", 4001) + `"}`,
	}
	for _, s := range seeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		req, err := referral.DecodeCreate(body)
		if err != nil {
			e, ok := apperr.As(err)
			if !ok || e.Code != apperr.Invalid {
				t.Fatalf("error %v is not a 400", err)
			}
			if e.Message == "" {
				t.Fatal("error without a message")
			}
			return
		}
		if req.PersonID <= 0 || !req.Urgency.Valid() || req.ToFacility == "" || len(req.ToFacility) > 32 {
			t.Fatalf("accepted %+v", req)
		}
		if len(req.Diagnoses) == 0 || len(req.Diagnoses) > referral.MaxDiagnoses {
			t.Fatalf("accepted %d diagnoses", len(req.Diagnoses))
		}
		seen := map[string]bool{}
		for _, d := range req.Diagnoses {
			if !referral.ValidICD10(d) || seen[d] {
				t.Fatalf("accepted diagnosis %q", d)
			}
			seen[d] = true
		}
		if req.Summary == "" || !utf8.ValidString(req.Summary) || utf8.RuneCountInString(req.Summary) > referral.MaxSummary ||
			strings.TrimSpace(req.Summary) != req.Summary {
			t.Fatalf("accepted summary %q", req.Summary)
		}
		for _, r := range req.Summary {
			if unicode.IsControl(r) && r != '\n' && r != '\r' && r != '\t' {
				t.Fatalf("accepted control character %U", r)
			}
		}
		if req.ConsultID != nil && *req.ConsultID <= 0 {
			t.Fatalf("accepted consult_id %d", *req.ConsultID)
		}
		again, err := json.Marshal(req)
		if err != nil {
			t.Fatal(err)
		}
		req2, err := referral.DecodeCreate(again)
		if err != nil || !reflect.DeepEqual(req, req2) {
			t.Fatalf("not stable: %+v -> %s -> %+v, %v", req, again, req2, err)
		}
	})
}
