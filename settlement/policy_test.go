package settlement

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/qinba/qinba/internal/apperr"
)

func TestParsePolicyRejects(t *testing.T) {
	t.Parallel()
	segs := func(m map[string]any) []any { return obj(m, "critical")["segments"].([]any) }
	tests := []struct {
		name    string
		edit    func(m map[string]any)
		field   string
		message string
	}{
		{"missing cap", func(m map[string]any) { delete(obj(m, "basic"), "annual_cap") },
			"basic.annual_cap", "missing field (write null for no cap)"},
		{"missing threshold", func(m map[string]any) { delete(obj(m, "critical"), "threshold") },
			"critical.threshold", "missing field"},
		{"missing section", func(m map[string]any) { delete(m, "supplementary") },
			"supplementary", "missing field"},
		{"missing id", func(m map[string]any) { delete(m, "id") }, "id", "missing field"},
		{"empty id", func(m map[string]any) { m["id"] = " " }, "id", "empty id"},
		{"id not a string", func(m map[string]any) { m["id"] = 7 }, "id", "must be a string"},
		{"JSON number", func(m map[string]any) { obj(m, "basic", "tiers", "county")["rate"] = 0.75 },
			"basic.tiers.county.rate", `bad number 0.75: figures are written as JSON strings, e.g. "0.75"`},
		{"exponent", func(m map[string]any) { obj(m, "outpatient")["annual_cap"] = "1e3" },
			"outpatient.annual_cap", `bad number "1e3"`},
		{"leading dot", func(m map[string]any) { obj(m, "supplementary")["rate"] = ".5" },
			"supplementary.rate", `bad number ".5"`},
		{"null rate", func(m map[string]any) { obj(m, "supplementary")["rate"] = nil },
			"supplementary.rate", "must not be null"},
		{"negative rate", func(m map[string]any) { obj(m, "supplementary")["rate"] = "-0.1" },
			"supplementary.rate", "negative rate"},
		{"rate above 1", func(m map[string]any) { obj(m, "basic", "tiers", "county")["rate"] = "1.2" },
			"basic.tiers.county.rate", "rate above 1"},
		{"factor above 1", func(m map[string]any) { obj(m, "basic")["repeat_admission_deductible_factor"] = "1.5" },
			"basic.repeat_admission_deductible_factor", "factor above 1"},
		{"share above 1", func(m map[string]any) { obj(m, "item_classes", "B")["eligible_share"] = "1.1" },
			"item_classes.B.eligible_share", "share above 1"},
		{"penalty above 1", func(m map[string]any) { obj(m, "basic", "unreferred_rate_penalty")["city"] = "2" },
			"basic.unreferred_rate_penalty.city", "rate above 1"},
		{"negative amount", func(m map[string]any) { obj(m, "basic", "tiers", "city")["deductible"] = "-900" },
			"basic.tiers.city.deductible", "negative amount"},
		{"amount in tenths of fen", func(m map[string]any) { obj(m, "backstop")["annual_patient_cap"] = "5000.001" },
			"backstop.annual_patient_cap", "amount with more than 2 decimal places"},
		{"segments out of order", func(m map[string]any) { segs(m)[2].(map[string]any)["from"] = "20000" },
			"critical.segments[2].from", "segments out of order: from must be strictly increasing"},
		{"segments repeated from", func(m map[string]any) { segs(m)[1].(map[string]any)["from"] = "0" },
			"critical.segments[1].from", "segments out of order: from must be strictly increasing"},
		{"segments not from 0", func(m map[string]any) { segs(m)[0].(map[string]any)["from"] = "100" },
			"critical.segments[0].from", "first segment must start at 0"},
		{"segment rate with bonus above 1", func(m map[string]any) { segs(m)[2].(map[string]any)["rate"] = "0.98" },
			"critical.segments[2].rate", "rate plus critical.poor_rate_bonus above 1"},
		{"no segments", func(m map[string]any) { obj(m, "critical")["segments"] = []any{} },
			"critical.segments", "no segments"},
		{"segments not an array", func(m map[string]any) { obj(m, "critical")["segments"] = "0" },
			"critical.segments", "must be an array"},
		{"segment not an object", func(m map[string]any) { segs(m)[1] = "30000" },
			"critical.segments[1]", "must be an object"},
		{"unknown outpatient tier", func(m map[string]any) {
			obj(m, "outpatient", "tiers")["county"] = map[string]any{"rate": "0.5", "per_visit_cap": nil}
		},
			"outpatient.tiers.county", "unknown outpatient tier (allowed: village, township)"},
		{"unknown inpatient tier", func(m map[string]any) { obj(m, "basic", "tiers")["province"] = obj(m, "basic", "tiers", "city") },
			"basic.tiers.province", "unknown inpatient tier (allowed: township, county, city)"},
		{"penalty for unknown tier", func(m map[string]any) { obj(m, "basic", "unreferred_rate_penalty")["village"] = "0.1" },
			"basic.unreferred_rate_penalty.village", "unknown inpatient tier (allowed: township, county, city)"},
		{"no inpatient tier", func(m map[string]any) { obj(m, "basic")["tiers"] = map[string]any{} },
			"basic.tiers", "no inpatient tier listed"},
		{"unknown category", func(m map[string]any) { obj(m, "assistance")["rich"] = obj(m, "assistance", "dibao") },
			"assistance.rich", "unknown category (allowed: none, registered_poor, dibao, tekun)"},
		{"unknown class", func(m map[string]any) { obj(m, "item_classes")["D"] = map[string]any{"eligible_share": "0"} },
			"item_classes.D", "unknown item class (allowed: A, B, C)"},
		{"missing class", func(m map[string]any) { delete(obj(m, "item_classes"), "C") },
			"item_classes.C", "missing field"},
		{"bad valid_from", func(m map[string]any) { m["valid_from"] = "2019-02-30" },
			"valid_from", `bad date "2019-02-30" (want YYYY-MM-DD)`},
		{"short date", func(m map[string]any) { m["valid_to"] = "2019-1-31" },
			"valid_to", `bad date "2019-1-31" (want YYYY-MM-DD)`},
		{"valid_to before valid_from", func(m map[string]any) { m["valid_to"] = "2018-12-31" },
			"valid_to", "valid_to before valid_from"},
		{"tiers not an object", func(m map[string]any) { obj(m, "outpatient")["tiers"] = []any{} },
			"outpatient.tiers", "must be an object"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			m := referenceMap(t)
			tt.edit(m)
			_, err := ParsePolicy(mustJSON(t, m))
			var ve *ValidationError
			if !errors.As(err, &ve) {
				t.Fatalf("got %v, want a *ValidationError", err)
			}
			if ve.Field != tt.field || ve.Message != tt.message {
				t.Errorf("got %q / %q, want %q / %q", ve.Field, ve.Message, tt.field, tt.message)
			}
			if want := tt.field + ": " + tt.message; err.Error() != want {
				t.Errorf("Error() = %q, want %q", err.Error(), want)
			}
			if !apperr.Is(err, apperr.Invalid) {
				t.Errorf("apperr code = %v, want invalid", apperr.CodeOf(err))
			}
			if ae, ok := apperr.As(err); !ok || ae.Fields[tt.field] != tt.message {
				t.Errorf("apperr fields = %v", ae)
			}
		})
	}
}

func TestParsePolicyRejectsDocuments(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct{ in, msg string }{
		{``, "policy is not valid JSON"},
		{`{`, `invalid JSON: unexpected end of JSON input`},
		{`[]`, "policy must be a JSON object"},
		{`"x"`, "policy must be a JSON object"},
		{`null`, "policy must be a JSON object"},
		{`{} x`, "invalid JSON: invalid character 'x' after top-level value"},
	} {
		_, err := ParsePolicy([]byte(tt.in))
		var ve *ValidationError
		if !errors.As(err, &ve) || ve.Message != tt.msg || ve.Field != "" {
			t.Errorf("ParsePolicy(%q) = %v, want %q", tt.in, err, tt.msg)
		}
	}
}

func TestParsePolicyAcceptsVariants(t *testing.T) {
	t.Parallel()
	p := policyWith(t, func(m map[string]any) {
		m["id"] = "variant"
		delete(m, "name")
		delete(m, "region")
		obj(m, "basic")["annual_cap"] = nil
		obj(m, "critical")["annual_cap"] = nil
		obj(m, "outpatient", "tiers", "village")["per_visit_cap"] = nil
		delete(obj(m, "basic", "tiers"), "township")
		delete(obj(m, "outpatient", "tiers"), "village")
		delete(obj(m, "basic"), "unreferred_rate_penalty")
		obj(m, "assistance")["none"] = map[string]any{"rate": "0.1", "annual_cap": nil}
		delete(obj(m, "assistance"), "tekun")
		obj(m, "critical")["segments"] = []any{
			map[string]any{"from": "0", "rate": "0.5"},
			map[string]any{"from": "0.01", "rate": "0.6"},
		}
	})
	if p.ID() != "variant" || p.Name() != "" || p.Region() != "" {
		t.Errorf("metadata: %q %q %q", p.ID(), p.Name(), p.Region())
	}
	if got := p.Tiers(KindInpatient); !slices.Equal(got, []string{TierCounty, TierCity}) {
		t.Errorf("inpatient tiers %v", got)
	}
	if got := p.Tiers(KindOutpatient); !slices.Equal(got, []string{TierTownship}) {
		t.Errorf("outpatient tiers %v", got)
	}
	if p.Tiers("dental") != nil {
		t.Error("tiers of an unknown kind")
	}
	if p.basicAnnualCap.Set || p.critAnnualCap.Set || p.critPoorAnnualCap.Set || p.outTiers[TierTownship].perVisitCap.Value.IsZero() {
		t.Errorf("null caps not parsed as no cap, or a set cap lost")
	}
	if len(p.unreferredPenalty) != 0 {
		t.Errorf("absent penalty map: %v", p.unreferredPenalty)
	}
}

func TestReferencePolicy(t *testing.T) {
	t.Parallel()
	p := ReferencePolicy()
	if p.ID() != ReferencePolicyID {
		t.Fatalf("id %q", p.ID())
	}
	if q, ok := EmbeddedPolicy(ReferencePolicyID); !ok || q != p {
		t.Error("EmbeddedPolicy does not return the reference policy")
	}
	if _, ok := EmbeddedPolicy("nowhere-1999"); ok {
		t.Error("found a policy that is not embedded")
	}
	all := EmbeddedPolicies()
	if len(all) == 0 || !slices.ContainsFunc(all, func(q *Policy) bool { return q == p }) {
		t.Errorf("EmbeddedPolicies = %v", all)
	}
	day := func(s string) time.Time { d, _ := time.Parse(time.DateOnly, s); return d }
	for s, want := range map[string]bool{"2018-12-31": false, "2019-01-01": true, "2019-12-31": true, "2020-01-01": false} {
		if got := p.Covers(day(s)); got != want {
			t.Errorf("Covers(%s) = %v", s, got)
		}
	}
	if !p.Covers(time.Date(2019, 12, 31, 23, 59, 0, 0, time.FixedZone("CST", 8*3600))) {
		t.Error("Covers uses the calendar day of its argument")
	}
	if !strings.Contains(p.Name(), "Baokang") || p.Region() != "420626" {
		t.Errorf("name %q region %q", p.Name(), p.Region())
	}
}

func TestLoadPolicyFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	good := filepath.Join(dir, "good.json")
	if err := os.WriteFile(good, ReferencePolicy().Source(), 0o600); err != nil {
		t.Fatal(err)
	}
	if p, err := LoadPolicyFile(good); err != nil || p.ID() != ReferencePolicyID {
		t.Fatalf("LoadPolicyFile: %v", err)
	}
	bad := filepath.Join(dir, "bad.json")
	if err := os.WriteFile(bad, []byte(`{"id": "x"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := LoadPolicyFile(bad)
	var ve *ValidationError
	if !errors.As(err, &ve) || ve.Field != "valid_from" || !strings.Contains(err.Error(), bad) {
		t.Errorf("LoadPolicyFile(bad) = %v", err)
	}
	if _, err := LoadPolicyFile(filepath.Join(dir, "missing.json")); err == nil || !errors.Is(err, os.ErrNotExist) {
		t.Errorf("LoadPolicyFile(missing) = %v", err)
	}
}
