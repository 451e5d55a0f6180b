package settlement

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

// runCases runs RunCases under the reference policy and returns the parsed
// output cases.
func runCases(t *testing.T, in string) []map[string]any {
	t.Helper()
	var out bytes.Buffer
	if err := RunCases(ReferencePolicy(), strings.NewReader(in), &out); err != nil {
		t.Fatalf("RunCases: %v", err)
	}
	var doc struct {
		Cases []map[string]any `json:"cases"`
	}
	if err := json.Unmarshal(out.Bytes(), &doc); err != nil {
		t.Fatalf("output does not parse: %v\n%s", err, out.Bytes())
	}
	return doc.Cases
}

const okBill = `{"id": "b1", "date": "2019-03-02", "kind": "inpatient", "tier": "county", "lines": [{"class": "A", "amount": "900"}]}`

func TestRunCasesDocumentErrors(t *testing.T) {
	t.Parallel()
	for _, in := range []string{``, `nope`, `[]`, `null`, `{}`, `{"cases": 5}`, `{"cases": null}`, `{"cases": {}}`,
		`{"cases": []} {"cases": []}`, `{"cases": [}`} {
		var out bytes.Buffer
		if err := RunCases(ReferencePolicy(), strings.NewReader(in), &out); err == nil {
			t.Errorf("RunCases(%q) = nil error, output %s", in, out.Bytes())
		}
	}
	if got := runCases(t, " {\"cases\": []}\n "); len(got) != 0 {
		t.Errorf("empty: %v", got)
	}
}

func TestRunCasesInvalidCases(t *testing.T) {
	t.Parallel()
	person := `{"category": "none", "insured": true}`
	bill := func(fields string) string {
		return `{"id": "b1", "date": "2019-03-02", "kind": "inpatient", "tier": "county", ` + fields + `}`
	}
	lines := `"lines": [{"class": "A", "amount": "900"}]`
	tests := []struct{ name, person, bills, want string }{
		{"category", `{"category": "rich", "insured": true}`, `[]`, "bad category 'rich'"},
		{"category not a string", `{"category": 5, "insured": true}`, `[]`, "bad category '5'"},
		{"missing category", `{"insured": true}`, `[]`, "missing category"},
		{"insured not a boolean", `{"category": "none", "insured": "yes"}`, `[]`, `bad insured '"yes"' (must be true or false)`},
		{"insured null", `{"category": "none", "insured": null}`, `[]`, `bad insured 'null' (must be true or false)`},
		{"missing insured", `{"category": "none"}`, `[]`, "missing insured"},
		{"missing person", ``, `[]`, "missing person"},
		{"person not an object", `[]`, `[]`, "bad person '[]'"},
		{"bills not an array", person, `{}`, "bad bills '{}'"},
		{"bill not an object", person, `[1]`, "bad bill '1'"},
		{"amount as a JSON number", person, `[` + bill(`"lines": [{"class": "A", "amount": 12}]`) + `]`, "bad amount '12' (amounts are JSON strings)"},
		{"negative amount", person, `[` + bill(`"lines": [{"class": "A", "amount": "-5.00"}]`) + `]`, "bad amount '-5.00'"},
		{"exponent amount", person, `[` + bill(`"lines": [{"class": "A", "amount": "1e3"}]`) + `]`, "bad amount '1e3'"},
		{"missing amount", person, `[` + bill(`"lines": [{"class": "A"}]`) + `]`, "missing amount"},
		{"class", person, `[` + bill(`"lines": [{"class": "D", "amount": "1"}]`) + `]`, "bad class 'D'"},
		{"lowercase class", person, `[` + bill(`"lines": [{"class": "a", "amount": "1"}]`) + `]`, "bad class 'a'"},
		{"no lines", person, `[` + bill(`"lines": []`) + `]`, "bill has no lines"},
		{"lines absent", person, `[` + bill(`"x": 1`) + `]`, "bill has no lines"},
		{"lines not an array", person, `[` + bill(`"lines": "A"`) + `]`, `bad lines '"A"'`},
		{"emergency not a boolean", person, `[` + bill(`"emergency": 1, `+lines) + `]`, "bad emergency '1' (must be true or false)"},
		{"referral direction", person, `[` + bill(`"referral": {"direction": "sideways"}, `+lines) + `]`, "bad referral direction 'sideways'"},
		{"referral without direction", person, `[` + bill(`"referral": {}, `+lines) + `]`, "missing referral direction"},
		{"referral not an object", person, `[` + bill(`"referral": "up", `+lines) + `]`, `bad referral '"up"'`},
		{"prior deductible", person, `[` + bill(`"referral": {"direction": "up", "prior_deductible_paid": "5.555"}, `+lines) + `]`, "bad amount '5.555'"},
		{"repeated id", person, `[` + okBill + `, ` + okBill + `]`, "repeated bill id 'b1'"},
		{"repeated id after reversal", person, `[` + okBill + `, {"reverse": "b1"}, ` + okBill + `]`, "repeated bill id 'b1'"},
		{"reversal id not a string", person, `[{"id": "5", "date": "2019-03-02", "kind": "inpatient", "tier": "county", ` + lines + `}, {"reverse": 5}]`, "reversal of unknown or reversed bill '5'"},
		{"repeated id comes before other problems", person, `[` + okBill + `, {"id": "b1", "date": "x"}]`, "repeated bill id 'b1'"},
		{"reversal of unknown bill", person, `[{"reverse": "b9"}]`, "reversal of unknown or reversed bill 'b9'"},
		{"reversal twice", person, `[` + okBill + `, {"reverse": "b1"}, {"reverse": "b1"}]`, "reversal of unknown or reversed bill 'b1'"},
		{"reversal before the bill", person, `[{"reverse": "b1"}, ` + okBill + `]`, "reversal of unknown or reversed bill 'b1'"},
		{"bad date", person, `[{"id": "b1", "date": "2019-13", "kind": "inpatient", "tier": "county", ` + lines + `}]`, "bad date '2019-13'"},
		{"impossible date", person, `[{"id": "b1", "date": "2019-02-29", "kind": "inpatient", "tier": "county", ` + lines + `}]`, "bad date '2019-02-29'"},
		{"missing date", person, `[{"id": "b1", "kind": "inpatient", "tier": "county", ` + lines + `}]`, "missing date"},
		{"kind", person, `[{"id": "b1", "date": "2019-03-02", "kind": "dental", "tier": "county", ` + lines + `}]`, "bad kind 'dental'"},
		{"tier", person, `[{"id": "b1", "date": "2019-03-02", "kind": "inpatient", "tier": "province", ` + lines + `}]`, "unknown inpatient tier 'province'"},
		{"tier of the other kind", person, `[{"id": "b1", "date": "2019-03-02", "kind": "outpatient", "tier": "county", ` + lines + `}]`, "unknown outpatient tier 'county'"},
		{"bill id missing", person, `[{"date": "2019-03-02", "kind": "inpatient", "tier": "county", ` + lines + `}]`, "bill without id"},
		{"bill id not a string", person, `[{"id": 1, "date": "2019-03-02", "kind": "inpatient", "tier": "county", ` + lines + `}]`, "bad bill id '1'"},
	}
	var in strings.Builder
	in.WriteString(`{"cases": [`)
	for i, tt := range tests {
		if i > 0 {
			in.WriteString(",")
		}
		p := ""
		if tt.person != "" {
			p = `"person": ` + tt.person + `, `
		}
		in.WriteString(`{"id": "` + tt.name + `", ` + p + `"bills": ` + tt.bills + `}`)
	}
	in.WriteString(`, {"id": "fine", "person": ` + person + `, "bills": [` + okBill + `]}]}`)
	got := runCases(t, in.String())
	if len(got) != len(tests)+1 {
		t.Fatalf("%d cases out, want %d", len(got), len(tests)+1)
	}
	for i, tt := range tests {
		c := got[i]
		if c["id"] != tt.name || c["error"] != tt.want {
			t.Errorf("%s: got %v, want error %q", tt.name, c, tt.want)
		}
		if _, ok := c["results"]; ok {
			t.Errorf("%s: an invalid case has results", tt.name)
		}
	}
	fine := got[len(tests)]
	if _, ok := fine["error"]; ok || len(fine["results"].([]any)) != 1 {
		t.Errorf("the valid case was not settled: %v", fine)
	}
}

func TestRunCasesSettles(t *testing.T) {
	t.Parallel()
	in := `{"cases": [
	 {"id": 7, "person": {"category": "none", "insured": true}, "bills": []},
	 "not a case",
	 {"person": {"category": "dibao", "insured": true}, "bills": [
	   {"id": "y1", "date": "2019-12-30", "kind": "inpatient", "tier": "county", "emergency": null, "referral": null,
	    "lines": [{"class": "A", "amount": "9000.00"}], "note": "ignored"},
	   {"id": "y2", "date": "2020-01-02", "kind": "inpatient", "tier": "county",
	    "lines": [{"class": "A", "amount": "9000.00"}]},
	   {"id": "o1", "date": "2020-01-03", "kind": "outpatient", "tier": "village", "referral": {"direction": "nowhere"}, "emergency": "?",
	    "lines": [{"class": "B", "amount": "0"}]},
	   {"reverse": "y1"},
	   {"id": "y3", "date": "2019-12-31", "kind": "inpatient", "tier": "county",
	    "lines": [{"class": "A", "amount": "9000.00"}]}]}]}`
	got := runCases(t, in)
	if len(got) != 3 {
		t.Fatalf("%d cases", len(got))
	}
	if got[0]["id"] != float64(7) || len(got[0]["results"].([]any)) != 0 {
		t.Errorf("case with no bills: %v", got[0])
	}
	if got[1]["id"] != nil || got[1]["error"] != "case is not an object" {
		t.Errorf("non-object case: %v", got[1])
	}
	res := got[2]["results"].([]any)
	if got[2]["id"] != nil || len(res) != 5 {
		t.Fatalf("case 3: %v", got[2])
	}
	r := func(i int) map[string]any { return res[i].(map[string]any) }
	// y1 and y2 are first admissions of their years (deductible 500 × 0.5);
	// y3 follows y1's reversal in 2019, so it is a first admission again
	// only if the reversal took off the admission: it did, so 250 again.
	for _, i := range []int{0, 1, 4} {
		if r(i)["deductible"] != "250.00" || r(i)["basic"] != "6125.00" || r(i)["patient"] != "431.25" {
			t.Errorf("result %d: %v", i, r(i))
		}
	}
	if r(2)["total"] != "0.00" || r(2)["patient"] != "0.00" || r(2)["bill"] != "o1" {
		t.Errorf("zero outpatient bill: %v", r(2))
	}
	if r(3)["reversal"] != true || r(3)["bill"] != "y1" || r(3)["total"] != "-9000.00" || r(3)["critical"] != "0.00" {
		t.Errorf("reversal: %v", r(3))
	}
	if _, ok := r(0)["reversal"]; ok {
		t.Error("a settlement carries a reversal key")
	}
	for i := range res {
		for k, v := range r(i) {
			if s, ok := v.(string); ok && k != "bill" {
				if s == "-0.00" || !strings.Contains(s, ".") || len(s)-strings.Index(s, ".") != 3 {
					t.Errorf("result %d %s = %q", i, k, s)
				}
			}
		}
	}
}
