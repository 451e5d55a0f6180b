package settlement

import (
	"encoding/json"
	"strconv"
	"time"

	"github.com/shopspring/decimal"

	"github.com/qinba/qinba/internal/apperr"
)

// Person is what settlement needs to know about the patient.
type Person struct {
	// Category is CategoryNone, CategoryRegisteredPoor, CategoryDibao or
	// CategoryTekun; any category but CategoryNone counts as poor.
	Category string
	// Insured says whether the person is enrolled in resident medical
	// insurance for the bill's year. An uninsured person gets nothing from
	// any fund.
	Insured bool
}

// Bill is one outpatient visit or inpatient stay to settle. The service may
// keep more fields; the engine reads only these.
type Bill struct {
	// ID identifies the bill; the engine copies it into the Result.
	ID string
	// Date is the day of the bill. The engine does not read it: the caller
	// passes the accumulators of the bill's calendar year and the policy in
	// force (see [Policy.Covers]).
	Date time.Time
	// Kind is KindOutpatient or KindInpatient.
	Kind string
	// Tier must be listed by the policy for Kind.
	Tier string
	// Emergency marks an emergency admission (inpatient only).
	Emergency bool
	// Referral is nil when the stay was not referred (inpatient only).
	Referral *Referral
	// Lines must not be empty.
	Lines []Line
}

// Referral describes how an inpatient was referred.
type Referral struct {
	// Direction is DirectionUp or DirectionDown.
	Direction string
	// PriorDeductiblePaid is, for an upward referral, the deductible borne
	// in the referring stay; it counts toward this stay's deductible.
	PriorDeductiblePaid decimal.Decimal
}

// Line is one line of a bill.
type Line struct {
	// Class is ClassA, ClassB or ClassC.
	Class string
	// Amount is in yuan, >= 0, with at most 2 decimals.
	Amount decimal.Decimal
}

// Accumulators are one person's running totals for one calendar year
// (SPEC.md "Annual accumulators"). The zero value is the start of a year.
type Accumulators struct {
	Admissions        int             // inpatient stays settled
	OutpatientPaid    decimal.Decimal // basic insurance paid on outpatient bills
	BasicPaid         decimal.Decimal // basic insurance paid on inpatient bills
	CriticalBase      decimal.Decimal // cumulative in-policy self-pay seen by critical illness insurance
	CriticalPaid      decimal.Decimal // critical illness insurance paid
	AssistancePaid    decimal.Decimal // medical assistance paid
	SupplementaryPaid decimal.Decimal // supplementary insurance paid
	BackstopPaid      decimal.Decimal // government backstop paid
	PatientInPolicy   decimal.Decimal // in-policy amount left to the patient
}

// Add returns a + d, field by field.
func (a Accumulators) Add(d Accumulators) Accumulators {
	return Accumulators{
		Admissions:        a.Admissions + d.Admissions,
		OutpatientPaid:    addNZ(a.OutpatientPaid, d.OutpatientPaid),
		BasicPaid:         addNZ(a.BasicPaid, d.BasicPaid),
		CriticalBase:      addNZ(a.CriticalBase, d.CriticalBase),
		CriticalPaid:      addNZ(a.CriticalPaid, d.CriticalPaid),
		AssistancePaid:    addNZ(a.AssistancePaid, d.AssistancePaid),
		SupplementaryPaid: addNZ(a.SupplementaryPaid, d.SupplementaryPaid),
		BackstopPaid:      addNZ(a.BackstopPaid, d.BackstopPaid),
		PatientInPolicy:   addNZ(a.PatientInPolicy, d.PatientInPolicy),
	}
}

// Sub returns a − d, field by field.
func (a Accumulators) Sub(d Accumulators) Accumulators { return a.Add(d.Neg()) }

// Neg returns −a, field by field.
func (a Accumulators) Neg() Accumulators {
	return Accumulators{
		Admissions:        -a.Admissions,
		OutpatientPaid:    a.OutpatientPaid.Neg(),
		BasicPaid:         a.BasicPaid.Neg(),
		CriticalBase:      a.CriticalBase.Neg(),
		CriticalPaid:      a.CriticalPaid.Neg(),
		AssistancePaid:    a.AssistancePaid.Neg(),
		SupplementaryPaid: a.SupplementaryPaid.Neg(),
		BackstopPaid:      a.BackstopPaid.Neg(),
		PatientInPolicy:   a.PatientInPolicy.Neg(),
	}
}

// Equal reports whether a and b hold the same values.
func (a Accumulators) Equal(b Accumulators) bool {
	return a.Admissions == b.Admissions &&
		a.OutpatientPaid.Equal(b.OutpatientPaid) &&
		a.BasicPaid.Equal(b.BasicPaid) &&
		a.CriticalBase.Equal(b.CriticalBase) &&
		a.CriticalPaid.Equal(b.CriticalPaid) &&
		a.AssistancePaid.Equal(b.AssistancePaid) &&
		a.SupplementaryPaid.Equal(b.SupplementaryPaid) &&
		a.BackstopPaid.Equal(b.BackstopPaid) &&
		a.PatientInPolicy.Equal(b.PatientInPolicy)
}

// fields lists the accumulators with their JSON names, in SPEC.md order.
func (a *Accumulators) fields() []struct {
	name string
	v    *decimal.Decimal
} {
	return []struct {
		name string
		v    *decimal.Decimal
	}{
		{"outpatient_paid", &a.OutpatientPaid},
		{"basic_paid", &a.BasicPaid},
		{"critical_base", &a.CriticalBase},
		{"critical_paid", &a.CriticalPaid},
		{"assistance_paid", &a.AssistancePaid},
		{"supplementary_paid", &a.SupplementaryPaid},
		{"backstop_paid", &a.BackstopPaid},
		{"patient_in_policy", &a.PatientInPolicy},
	}
}

// Validate reports a *ValidationError if a field is negative; accumulators
// are sums of non-negative amounts.
func (a Accumulators) Validate() error {
	if a.Admissions < 0 {
		return &ValidationError{Field: "accumulators.admissions", Message: "negative accumulator"}
	}
	if a.OutpatientPaid.Sign() >= 0 && a.BasicPaid.Sign() >= 0 && a.CriticalBase.Sign() >= 0 &&
		a.CriticalPaid.Sign() >= 0 && a.AssistancePaid.Sign() >= 0 && a.SupplementaryPaid.Sign() >= 0 &&
		a.BackstopPaid.Sign() >= 0 && a.PatientInPolicy.Sign() >= 0 {
		return nil
	}
	for _, f := range a.fields() {
		if f.v.Sign() < 0 {
			return &ValidationError{Field: "accumulators." + f.name, Message: "negative accumulator"}
		}
	}
	return nil
}

// MarshalJSON writes the accumulators with SPEC.md's names, amounts as
// strings. CriticalBase may carry more than two decimals only if a caller
// built it so; it is written exactly.
func (a Accumulators) MarshalJSON() ([]byte, error) {
	m := map[string]any{"admissions": a.Admissions}
	for _, f := range a.fields() {
		m[f.name] = Exact{*f.v}
	}
	return json.Marshal(m)
}

// UnmarshalJSON reads what MarshalJSON writes. Amounts must be JSON strings
// holding decimal numbers; missing fields are 0.
func (a *Accumulators) UnmarshalJSON(data []byte) error {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(data, &m); err != nil {
		return err
	}
	var out Accumulators
	if raw, ok := m["admissions"]; ok {
		if err := json.Unmarshal(raw, &out.Admissions); err != nil {
			return &ValidationError{Field: "admissions", Message: "must be an integer"}
		}
	}
	for _, f := range out.fields() {
		raw, ok := m[f.name]
		if !ok {
			continue
		}
		var s string
		if err := json.Unmarshal(raw, &s); err != nil || !isNumber(s) {
			return &ValidationError{Field: f.name, Message: "bad amount " + shorten(string(raw))}
		}
		d, err := decimal.NewFromString(s)
		if err != nil {
			return &ValidationError{Field: f.name, Message: "bad amount " + shorten(string(raw))}
		}
		*f.v = d
	}
	*a = out
	return nil
}

// Result is the split of one bill (or of a reversal) with its explanation.
// For every result Basic + Critical + Assistance + Supplementary + Backstop +
// Hospital + Patient = Total exactly.
type Result struct {
	// BillID, Kind and Tier are copied from the bill.
	BillID string
	Kind   string
	Tier   string
	// Insured is the person's insured flag at settlement.
	Insured bool
	// Reversal is true for the result of [Reverse]; its amounts are the
	// negation of the reversed result's.
	Reversal bool

	Total         decimal.Decimal // Σ line amounts
	Eligible      decimal.Decimal // 政策范围内费用
	Deductible    decimal.Decimal // 起付线 as reported: min(eligible, d); 0 for outpatient and uninsured
	Basic         decimal.Decimal // 基本医保
	Critical      decimal.Decimal // 大病保险
	Assistance    decimal.Decimal // 医疗救助
	Supplementary decimal.Decimal // 补充医疗保险
	Backstop      decimal.Decimal // 政府兜底
	Hospital      decimal.Decimal // out-of-policy cost borne by the hospital
	Patient       decimal.Decimal // paid by the patient at the desk

	// Delta is exactly what this result added to the year's accumulators;
	// [Reverse] subtracts it. It is zero for an uninsured person.
	Delta Accumulators

	// Trace explains the computation.
	Trace Trace
}

// resultJSON is the JSON form of Result.
type resultJSON struct {
	Bill          string       `json:"bill"`
	Kind          string       `json:"kind"`
	Tier          string       `json:"tier"`
	Insured       bool         `json:"insured"`
	Reversal      bool         `json:"reversal,omitempty"`
	Total         Money        `json:"total"`
	Eligible      Money        `json:"eligible"`
	Deductible    Money        `json:"deductible"`
	Basic         Money        `json:"basic"`
	Critical      Money        `json:"critical"`
	Assistance    Money        `json:"assistance"`
	Supplementary Money        `json:"supplementary"`
	Backstop      Money        `json:"backstop"`
	Hospital      Money        `json:"hospital"`
	Patient       Money        `json:"patient"`
	Delta         Accumulators `json:"delta"`
	Trace         Trace        `json:"trace"`
}

// MarshalJSON writes the result with amounts as two-decimal strings.
func (r Result) MarshalJSON() ([]byte, error) {
	return json.Marshal(resultJSON{
		Bill: r.BillID, Kind: r.Kind, Tier: r.Tier, Insured: r.Insured, Reversal: r.Reversal,
		Total: M(r.Total), Eligible: M(r.Eligible), Deductible: M(r.Deductible),
		Basic: M(r.Basic), Critical: M(r.Critical), Assistance: M(r.Assistance),
		Supplementary: M(r.Supplementary), Backstop: M(r.Backstop),
		Hospital: M(r.Hospital), Patient: M(r.Patient),
		Delta: r.Delta, Trace: r.Trace,
	})
}

// ValidationError reports invalid input: a bill, a person, accumulators or
// a policy file. Field is the path of the offending value ("lines[2].amount",
// "basic.tiers.county.rate"; "" for the document as a whole) and Message says
// what is wrong. It unwraps to an apperr Invalid error carrying the field, so
// the HTTP layer answers 400 with field detail.
type ValidationError struct {
	Field   string // JSON path of the offending value; "" for the whole document
	Message string // what is wrong, e.g. "rate above 1" or "bad amount '-5.00'"
}

// Error returns "field: message", or the message alone without a field.
func (e *ValidationError) Error() string {
	if e.Field == "" {
		return e.Message
	}
	return e.Field + ": " + e.Message
}

// Unwrap returns the equivalent *apperr.Error (code Invalid).
func (e *ValidationError) Unwrap() error {
	if e.Field == "" {
		return &apperr.Error{Code: apperr.Invalid, Message: e.Message}
	}
	return apperr.Field(e.Field, "%s", e.Message)
}

func invalid(field, msg string) *ValidationError {
	return &ValidationError{Field: field, Message: msg}
}

// Errors of [Reverse]. Both leave the accumulators unchanged.
var (
	// ErrReverseReversal: a reversal cannot itself be reversed.
	ErrReverseReversal = &apperr.Error{Code: apperr.Conflict, Message: "a reversal cannot be reversed"}
	// ErrAccumulatorMismatch: the accumulators given do not contain what the
	// bill added (wrong person or year, or the bill was already reversed).
	ErrAccumulatorMismatch = &apperr.Error{Code: apperr.Conflict, Message: "accumulators do not contain the bill being reversed"}
)

// quote writes a value for a message the way SPEC.md's vectors do: 'v'.
func quote(s string) string { return "'" + s + "'" }

// ValidatePerson checks the person's category.
func ValidatePerson(person Person) error {
	if !IsCategory(person.Category) {
		return invalid("person.category", "bad category "+quote(person.Category))
	}
	return nil
}

// ValidateBill checks a bill against the policy: kind, tier listed by the
// policy for that kind, referral (inpatient), at least one line, known
// classes and amounts >= 0 with at most 2 decimals. It returns the first
// problem as a *ValidationError.
func (p *Policy) ValidateBill(b *Bill) error {
	if b.Kind != KindOutpatient && b.Kind != KindInpatient {
		return invalid("kind", "bad kind "+quote(b.Kind))
	}
	if !p.hasTier(b.Kind, b.Tier) {
		return invalid("tier", "unknown "+b.Kind+" tier "+quote(b.Tier))
	}
	if b.Kind == KindInpatient && b.Referral != nil {
		switch b.Referral.Direction {
		case DirectionUp:
			if d := b.Referral.PriorDeductiblePaid; d.Sign() < 0 || !hasAtMost2Places(d) {
				return invalid("referral.prior_deductible_paid", "bad amount "+quote(d.String()))
			}
		case DirectionDown:
		default:
			return invalid("referral.direction", "bad referral direction "+quote(b.Referral.Direction))
		}
	}
	if len(b.Lines) == 0 {
		return invalid("lines", "bill has no lines")
	}
	for i := range b.Lines {
		l := &b.Lines[i]
		if classIndex(l.Class) < 0 {
			return invalid("lines["+strconv.Itoa(i)+"].class", "bad class "+quote(l.Class))
		}
		if l.Amount.Sign() < 0 || !hasAtMost2Places(l.Amount) {
			return invalid("lines["+strconv.Itoa(i)+"].amount", "bad amount "+quote(l.Amount.String()))
		}
	}
	return nil
}

// Settle splits bill b of person under policy p, given the accumulators of
// the person's calendar year of the bill as left by the bills settled before
// it. It returns the result and the new accumulators. On invalid input it
// returns a *ValidationError and acc unchanged. Settle follows SPEC.md step
// by step; see there for the rules.
func (p *Policy) Settle(person Person, acc Accumulators, b Bill) (Result, Accumulators, error) {
	if err := ValidatePerson(person); err != nil {
		return Result{}, acc, err
	}
	if err := p.ValidateBill(&b); err != nil {
		return Result{}, acc, err
	}
	if err := acc.Validate(); err != nil {
		return Result{}, acc, err
	}

	poor := isPoor(person.Category)
	ar := new(traceArena)
	r := Result{BillID: b.ID, Kind: b.Kind, Tier: b.Tier, Insured: person.Insured}
	tr := &r.Trace
	tr.Policy, tr.Kind, tr.Tier = p.id, b.Kind, b.Tier
	tr.Category, tr.Poor, tr.Insured = person.Category, poor, person.Insured
	tr.Notes = ar.notes[:0:len(ar.notes)]

	// Lines and the eligible amount. Σ amount × share is computed per class
	// (Σ_class share × Σ amounts), which is the same exact sum.
	sums, present := sumLines(b.Lines)
	var total, eligExact decimal.Decimal
	tr.Classes = ar.classes[:0:len(ar.classes)]
	for k := range 3 {
		if !present[k] {
			continue
		}
		var part decimal.Decimal
		switch {
		case p.classShareOne[k]:
			part = sums[k]
		case !p.classShare[k].IsZero():
			part = sums[k].Mul(p.classShare[k])
		}
		total = addNZ(total, sums[k])
		eligExact = addNZ(eligExact, part)
		tr.Classes = append(tr.Classes, ClassTrace{
			Class: itemClasses[k], Label: classLabel(k), Amount: M(sums[k]),
			EligibleShare: Exact{p.classShare[k]}, Eligible: Exact{part},
		})
	}
	eligible := round2(eligExact)
	oop := total.Sub(eligible)
	r.Total, r.Eligible = total, eligible
	tr.Total, tr.Eligible, tr.OutOfPolicy = M(total), M(eligible), M(oop)

	switch {
	case !person.Insured:
		r.Patient = total
		tr.Steps = ar.steps[:0:0]
		tr.Notes = append(tr.Notes, lblNoteUninsured)
		tr.PatientInPolicy, tr.PatientOutOfPolicy, tr.Patient = M(eligible), M(oop), M(total)
		return r, acc, nil
	case b.Kind == KindOutpatient:
		p.settleOutpatient(&r, ar, oop, acc, b)
	default:
		p.settleInpatient(&r, ar, oop, person.Category, poor, acc, b)
	}
	return r, acc.Add(r.Delta), nil
}

// traceArena holds the backing arrays of one Trace, so that building it
// costs one allocation instead of a dozen. Slices handed out are capped
// (three-index), so appending to one never overwrites another.
type traceArena struct {
	steps   [7]Step
	classes [3]ClassTrace
	notes   [4]Label
	caps    [8]CapTrace
	items   [16]Item
	rates   [4]Exact
	segs    [4]SegmentTrace
	nCaps   int
	nItems  int
	nRates  int
}

// capsOf returns cs stored in the arena.
func (a *traceArena) capsOf(cs ...CapTrace) []CapTrace {
	if a.nCaps+len(cs) > len(a.caps) {
		return append([]CapTrace(nil), cs...)
	}
	out := a.caps[a.nCaps : a.nCaps+len(cs) : a.nCaps+len(cs)]
	copy(out, cs)
	a.nCaps += len(cs)
	return out
}

// itemsCap returns an empty slice of Items with room for n.
func (a *traceArena) itemsCap(n int) []Item {
	if a.nItems+n > len(a.items) {
		return make([]Item, 0, n)
	}
	out := a.items[a.nItems : a.nItems : a.nItems+n]
	a.nItems += n
	return out
}

// rate returns a pointer to a copy of r stored in the arena.
func (a *traceArena) rate(r decimal.Decimal) *Exact {
	if a.nRates == len(a.rates) {
		return &Exact{r}
	}
	x := &a.rates[a.nRates]
	x.Decimal = r
	a.nRates++
	return x
}

// settleOutpatient applies SPEC.md "Outpatient bill".
func (p *Policy) settleOutpatient(r *Result, ar *traceArena, oop decimal.Decimal, acc Accumulators, b Bill) {
	t := p.outTiers[b.Tier]
	tr := &r.Trace
	tr.Notes = append(tr.Notes, lblNoteOutpatient)

	computed := round2(r.Eligible.Mul(t.rate))
	basic := computed
	pv := CapTrace{Code: "per_visit_cap", Label: lblCapPerVisit, Limit: t.perVisitCap, Remaining: t.perVisitCap}
	if t.perVisitCap.Set && t.perVisitCap.Value.Cmp(basic) < 0 {
		basic, pv.Bit = t.perVisitCap.Value, true
	}
	basic, ac := applyAnnualCap(basic, "annual_cap", lblCapAnnual, p.outAnnualCap, acc.OutpatientPaid)
	tr.Steps = ar.steps[:0:1]
	tr.Steps = append(tr.Steps, Step{
		Fund: FundBasic, Label: lblBasicOut, Applies: true,
		Base: M(r.Eligible), BaseLabel: lblBaseEligible, Rate: ar.rate(t.rate),
		Computed: M(computed), Caps: ar.capsOf(pv, ac),
		Capped: pv.Bit || ac.Bit, Amount: M(basic),
	})

	pIn := r.Eligible.Sub(basic)
	r.Basic = basic
	r.Patient = oop.Add(pIn)
	r.Delta.OutpatientPaid = basic
	tr.PatientInPolicy, tr.PatientOutOfPolicy, tr.Patient = M(pIn), M(oop), M(r.Patient)
}

// applyAnnualCap returns min(amount, pos(cap − used)) and the trace of the cap.
func applyAnnualCap(amount decimal.Decimal, code string, label Label, cap Limit, used decimal.Decimal) (decimal.Decimal, CapTrace) {
	ct := CapTrace{Code: code, Label: label, Limit: cap, Used: M(used)}
	rem, ok := cap.remaining(used)
	if !ok {
		return amount, ct
	}
	ct.Remaining = Limit{Set: true, Value: rem}
	if rem.Cmp(amount) < 0 {
		ct.Bit = true
		return rem, ct
	}
	return amount, ct
}

// derivation builds the Items of a step, tracking the running value.
type derivation struct {
	items []Item
	v     decimal.Decimal
}

func (d *derivation) add(code string, label Label, op string, value, result decimal.Decimal) {
	d.v = result
	d.items = append(d.items, Item{Code: code, Label: label, Op: op, Value: Exact{value}, Result: Exact{result}})
}

// settleInpatient applies SPEC.md "Inpatient bill", steps 1 to 9.
func (p *Policy) settleInpatient(r *Result, ar *traceArena, oop decimal.Decimal, category string, poor bool, acc Accumulators, b Bill) {
	t := p.inTiers[b.Tier]
	tr := &r.Trace
	tr.Steps = ar.steps[:0:7]
	eligible, total := r.Eligible, r.Total
	zero := decimal.Decimal{}
	if b.Emergency {
		tr.Notes = append(tr.Notes, lblNoteEmergency)
	}
	poorIdx := 0
	if poor {
		poorIdx = 1
	}

	// 1. Deductible.
	repeat := 0
	dd := derivation{items: ar.itemsCap(6)}
	dd.add("tier_deductible", lblBaseTierDeductible, "=", t.deductible, t.deductible)
	if acc.Admissions >= 1 {
		repeat = 1
		dd.add("repeat_admission_deductible_factor", lblRepeatAdmission, "×", p.repeatFactor, t.dedRepeat)
	}
	if poor {
		dd.add("poor_deductible_factor", lblPoorDeductible, "×", p.poorDedFactor, t.ded[repeat][1])
	}
	var d decimal.Decimal
	if ref := b.Referral; ref == nil {
		d = t.dedRounded[repeat][poorIdx]
	} else {
		switch ref.Direction {
		case DirectionDown:
			tr.Notes = append(tr.Notes, lblNoteReferralDown)
			dd.add("referral_down", lblReferralDown, "=", zero, zero)
		case DirectionUp:
			tr.Notes = append(tr.Notes, lblNoteReferralUp)
			dd.add("referral_up_prior_deductible_paid", lblReferralUp, "−", ref.PriorDeductiblePaid, dd.v.Sub(ref.PriorDeductiblePaid))
			if dd.v.Sign() < 0 {
				dd.add("max0", lblMax0, "max0", zero, zero)
			}
		}
		d = round2(dd.v)
	}
	if d.Cmp(dd.v) != 0 {
		dd.add("round2", lblRound2, "round2", d, d)
	}
	reported := minDec(eligible, d)
	dedBit := reported.Cmp(d) < 0
	r.Deductible = reported
	tr.Steps = append(tr.Steps, Step{
		Fund: FundDeductible, Label: lblDeductible, Applies: true,
		Base: M(t.deductible), BaseLabel: lblBaseTierDeductible, Derivation: dd.items,
		Computed: M(d),
		Caps: ar.capsOf(CapTrace{Code: "eligible", Label: lblCapEligible,
			Limit: Limit{Set: true, Value: eligible}, Remaining: Limit{Set: true, Value: eligible}, Bit: dedBit}),
		Capped: dedBit, Amount: M(reported),
	})

	// 2. Basic medical insurance.
	unref := 0
	rd := derivation{items: ar.itemsCap(4)}
	rd.add("tier_rate", lblTierRate, "=", t.rate, t.rate)
	if poor {
		rd.add("poor_rate_bonus", lblPoorRateBonus, "+", p.basicPoorBonus, t.ratePoor)
	}
	if b.Referral == nil && !b.Emergency {
		unref = 1
		if t.hasPenalty {
			rd.add("unreferred_rate_penalty", lblUnreferred, "−", t.penalty, t.rateRaw[poorIdx][1])
		}
	}
	rate := t.rateClamped[poorIdx][unref]
	if rate.Cmp(rd.v) != 0 {
		rd.add("clamp", lblClamp, "clamp", rate, rate)
	}
	basicBase := pos(eligible.Sub(d))
	basicComputed := round2(basicBase.Mul(rate))
	basic, bc := applyAnnualCap(basicComputed, "annual_cap", lblCapAnnual, p.basicAnnualCap, acc.BasicPaid)
	tr.Steps = append(tr.Steps, Step{
		Fund: FundBasic, Label: lblBasicIn, Applies: true,
		Base: M(basicBase), BaseLabel: lblBaseAfterDed, Rate: ar.rate(rate), Derivation: rd.items,
		Computed: M(basicComputed), Caps: ar.capsOf(bc), Capped: bc.Bit, Amount: M(basic),
	})

	// 3. Critical illness insurance, on the year's cumulative in-policy
	// self-pay: C(s1) − C(s0) is the sum over segments of rate × the part
	// of [s0, s1] inside the segment.
	scale := &p.critScale[poorIdx]
	critCap, critCapCode, critCapLabel := p.critAnnualCap, "annual_cap", lblCapAnnual
	if poor {
		critCap, critCapCode, critCapLabel = p.critPoorAnnualCap, "poor_annual_cap", lblCapPoorAnnual
	}
	selfPay := eligible.Sub(basic)
	s0 := acc.CriticalBase
	s1 := s0.Add(selfPay)
	cd := derivation{items: ar.itemsCap(5)}
	cd.add("threshold", lblThreshold, "=", p.critThreshold, p.critThreshold)
	if poor {
		cd.add("poor_threshold_factor", lblPoorThreshold, "×", p.critPoorThrFactor, scale.threshold)
		cd.add("poor_rate_bonus", lblSegRateBonus, "info", p.critPoorBonus, scale.threshold)
	}
	cd.add("cumulative_before", lblCumBefore, "info", s0, scale.threshold)
	cd.add("cumulative_after", lblCumAfter, "info", s1, scale.threshold)
	var critRaw decimal.Decimal
	segs := ar.segs[:0:len(ar.segs)]
	if selfPay.Sign() > 0 {
		for i := range scale.segs {
			sg := &scale.segs[i]
			if sg.start.Cmp(s1) >= 0 {
				break
			}
			lo := sg.start
			if s0.Cmp(lo) > 0 {
				lo = s0
			}
			hi := s1
			if sg.hasEnd && sg.end.Cmp(hi) < 0 {
				hi = sg.end
			}
			if hi.Cmp(lo) <= 0 {
				continue
			}
			length := hi.Sub(lo)
			amt := length.Mul(sg.rate)
			critRaw = addNZ(critRaw, amt)
			to := Limit{}
			if sg.hasEnd {
				to = Limit{Set: true, Value: sg.end}
			}
			segs = append(segs, SegmentTrace{From: M(sg.start), To: to, Rate: Exact{sg.rate}, Base: M(length), Amount: Exact{amt}})
		}
	}
	if len(segs) == 0 {
		segs = nil
	}
	critComputed := round2(critRaw)
	critical, cc := applyAnnualCap(critComputed, critCapCode, critCapLabel, critCap, acc.CriticalPaid)
	tr.Steps = append(tr.Steps, Step{
		Fund: FundCritical, Label: lblCritical, Applies: true,
		Base: M(selfPay), BaseLabel: lblBaseSelfPay, Derivation: cd.items, Segments: segs,
		Computed: M(critComputed), Caps: ar.capsOf(cc), Capped: cc.Bit, Amount: M(critical),
	})

	// 4. Medical assistance, for the categories the policy lists.
	rest := selfPay.Sub(critical)
	var assistance decimal.Decimal
	if rule, ok := p.assistance[category]; ok {
		comp := round2(rest.Mul(rule.rate))
		var ac CapTrace
		assistance, ac = applyAnnualCap(comp, "annual_cap", lblCapAnnual, rule.annualCap, acc.AssistancePaid)
		tr.Steps = append(tr.Steps, Step{
			Fund: FundAssistance, Label: lblAssistance, Applies: true,
			Base: M(rest), BaseLabel: lblBaseAfterCritical, Rate: ar.rate(rule.rate),
			Computed: M(comp), Caps: ar.capsOf(ac), Capped: ac.Bit, Amount: M(assistance),
		})
		rest = rest.Sub(assistance)
	} else {
		tr.Steps = append(tr.Steps, notApplied(FundAssistance, lblAssistance, lblNotAssisted))
	}

	// 5. Supplementary insurance, 6. government backstop, 7. out-of-policy
	// cost borne by the hospital: poor only.
	var supp, backstop, hospital decimal.Decimal
	if poor {
		comp := round2(rest.Mul(p.suppRate))
		var sc CapTrace
		supp, sc = applyAnnualCap(comp, "annual_cap", lblCapAnnual, p.suppAnnualCap, acc.SupplementaryPaid)
		tr.Steps = append(tr.Steps, Step{
			Fund: FundSupplementary, Label: lblSupplementary, Applies: true,
			Base: M(rest), BaseLabel: lblBaseAfterAssist, Rate: ar.rate(p.suppRate),
			Computed: M(comp), Caps: ar.capsOf(sc), Capped: sc.Bit, Amount: M(supp),
		})
		rest = rest.Sub(supp) // p of SPEC.md step 6

		perBillMax := round2(eligible.Mul(p.oneMinusMinShare))
		a := pos(rest.Sub(perBillMax))
		var bYear decimal.Decimal
		ap := CapTrace{Code: "annual_patient_cap", Label: lblCapAnnualPatient, Limit: p.annualPatientCap, Used: M(acc.PatientInPolicy)}
		if remCap, ok := p.annualPatientCap.remaining(acc.PatientInPolicy); ok {
			ap.Remaining = Limit{Set: true, Value: remCap}
			bYear = pos(rest.Sub(a).Sub(remCap))
			ap.Bit = bYear.Sign() > 0
		}
		backstop = addNZ(a, bYear)
		bd := derivation{items: ar.itemsCap(1)}
		bd.add("min_reimbursed_share", lblMinReimbursed, "info", p.minReimbursedShare, perBillMax)
		tr.Steps = append(tr.Steps, Step{
			Fund: FundBackstop, Label: lblBackstop, Applies: true,
			Base: M(rest), BaseLabel: lblBaseAfterSupp, Derivation: bd.items,
			Computed: M(backstop),
			Caps: ar.capsOf(
				CapTrace{Code: "per_bill_patient_max", Label: lblCapPerBill, Limit: Limit{Set: true, Value: perBillMax},
					Remaining: Limit{Set: true, Value: perBillMax}, Bit: a.Sign() > 0},
				ap),
			Capped: backstop.Sign() > 0, Amount: M(backstop),
		})

		patientOOPMax := round2(total.Mul(p.oopMaxShare))
		hospital = pos(oop.Sub(patientOOPMax))
		hd := derivation{items: ar.itemsCap(1)}
		hd.add("out_of_policy_patient_max_share", lblShare, "info", p.oopMaxShare, patientOOPMax)
		tr.Steps = append(tr.Steps, Step{
			Fund: FundHospital, Label: lblHospital, Applies: true,
			Base: M(oop), BaseLabel: lblBaseOutOfPolicy, Derivation: hd.items,
			Computed: M(hospital),
			Caps: ar.capsOf(CapTrace{Code: "patient_out_of_policy_max", Label: lblCapPatientOOP,
				Limit: Limit{Set: true, Value: patientOOPMax}, Remaining: Limit{Set: true, Value: patientOOPMax},
				Bit: hospital.Sign() > 0}),
			Capped: hospital.Sign() > 0, Amount: M(hospital),
		})
	} else {
		tr.Steps = append(tr.Steps,
			notApplied(FundSupplementary, lblSupplementary, lblNotPoor),
			notApplied(FundBackstop, lblBackstop, lblNotPoor),
			notApplied(FundHospital, lblHospital, lblNotPoor))
	}
	pIn := rest.Sub(backstop)

	// 8. Patient: total − every fund − hospital, which is the in-policy share
	// left to the patient plus the out-of-policy cost the hospital does not
	// bear.
	oopPatient := oop.Sub(hospital)
	r.Basic, r.Critical, r.Assistance = basic, critical, assistance
	r.Supplementary, r.Backstop, r.Hospital = supp, backstop, hospital
	r.Patient = pIn.Add(oopPatient)
	tr.PatientInPolicy, tr.PatientOutOfPolicy, tr.Patient = M(pIn), M(oopPatient), M(r.Patient)

	// 9. Accumulators.
	r.Delta = Accumulators{
		Admissions:        1,
		BasicPaid:         basic,
		CriticalBase:      selfPay,
		CriticalPaid:      critical,
		AssistancePaid:    assistance,
		SupplementaryPaid: supp,
		BackstopPaid:      backstop,
		PatientInPolicy:   pIn,
	}
}

var one = decimal.NewFromInt(1)

func notApplied(fund string, label Label, reason Label) Step {
	return Step{Fund: fund, Label: label, Applies: false, Reason: reason}
}

// Reverse reverses a settled bill (退费 / 冲正): it returns the same split
// with every amount negated and the accumulators minus exactly what the bill
// added (an inpatient bill also takes 1 off Admissions). Bills settled after
// it are not recomputed. acc must be the accumulators of the bill's year as
// they stand now. Reverse fails, changing nothing, with ErrReverseReversal
// when r is itself a reversal and with ErrAccumulatorMismatch when acc does
// not contain what r added (so an accumulator would go negative). Keeping
// track of which bills were already reversed is the caller's job.
func Reverse(r Result, acc Accumulators) (Result, Accumulators, error) {
	if r.Reversal {
		return Result{}, acc, ErrReverseReversal
	}
	next := acc.Sub(r.Delta)
	if next.Validate() != nil {
		return Result{}, acc, ErrAccumulatorMismatch
	}
	out := r
	out.Reversal = true
	out.Total, out.Eligible, out.Deductible = r.Total.Neg(), r.Eligible.Neg(), r.Deductible.Neg()
	out.Basic, out.Critical, out.Assistance = r.Basic.Neg(), r.Critical.Neg(), r.Assistance.Neg()
	out.Supplementary, out.Backstop = r.Supplementary.Neg(), r.Backstop.Neg()
	out.Hospital, out.Patient = r.Hospital.Neg(), r.Patient.Neg()
	out.Delta = r.Delta.Neg()
	out.Trace.Reversal = true
	out.Trace.Notes = append([]Label{lblNoteReversal}, r.Trace.Notes...)
	return out, next, nil
}

// sumLines returns the sum of the amounts of each item class (A, B, C) and
// which classes occur. Amounts are summed in int64 fen while they are small
// enough (the usual case, and much cheaper than big-number additions), else
// exactly with decimals; both give the same value.
func sumLines(lines []Line) (sums [3]decimal.Decimal, present [3]bool) {
	var fen [3]int64
	fast := true
	for i := range lines {
		k := classIndex(lines[i].Class)
		present[k] = true
		if fast {
			f, ok := toFen(lines[i].Amount)
			if ok && fen[k] <= maxFenSum-f {
				fen[k] += f
				continue
			}
			fast = false
		}
	}
	if fast {
		for k := range 3 {
			if present[k] {
				sums[k] = decimal.New(fen[k], -2)
			}
		}
		return sums, present
	}
	for i := range lines {
		k := classIndex(lines[i].Class)
		sums[k] = sums[k].Add(lines[i].Amount)
	}
	return sums, present
}

// maxFenSum bounds the int64 fen sums of sumLines (the three class sums
// together stay far below the int64 range).
const maxFenSum = 1 << 60

// toFen returns d in fen when d >= 0 has at most 2 decimals and fewer than
// 16 digits.
func toFen(d decimal.Decimal) (int64, bool) {
	exp := d.Exponent()
	if exp < -2 || exp > 0 || d.Sign() < 0 || d.NumDigits() > 15 {
		return 0, false
	}
	c := d.CoefficientInt64()
	for ; exp > -2; exp-- {
		c *= 10
	}
	return c, true
}

// addNZ adds without allocating when one side is zero.
func addNZ(a, b decimal.Decimal) decimal.Decimal {
	if b.IsZero() {
		return a
	}
	if a.IsZero() {
		return b
	}
	return a.Add(b)
}
