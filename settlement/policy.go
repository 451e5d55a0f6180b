package settlement

import (
	"bytes"
	"embed"
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/shopspring/decimal"
)

// Person categories (SPEC.md "The person"). "Poor" means any category other
// than CategoryNone.
const (
	CategoryNone           = "none"            // not a poverty category
	CategoryRegisteredPoor = "registered_poor" // 建档立卡贫困人口
	CategoryDibao          = "dibao"           // 低保
	CategoryTekun          = "tekun"           // 特困供养
)

// Bill kinds.
const (
	KindOutpatient = "outpatient" // 门诊
	KindInpatient  = "inpatient"  // 住院
)

// Tiers of care. Outpatient bills use TierVillage or TierTownship; inpatient
// bills use TierTownship, TierCounty or TierCity. A policy lists the tiers it
// covers for each kind.
const (
	TierVillage  = "village"  // 村卫生室
	TierTownship = "township" // 乡镇卫生院
	TierCounty   = "county"   // 县级医院
	TierCity     = "city"     // 市级及以上医院
)

// Item classes of a bill line.
const (
	ClassA = "A" // 甲类: fully in policy
	ClassB = "B" // 乙类: the patient first pays a share
	ClassC = "C" // 丙类 / out of catalogue
)

// Referral directions.
const (
	DirectionUp   = "up"   // 上转: to a higher tier
	DirectionDown = "down" // 下转: to a lower tier
)

var (
	categories      = []string{CategoryNone, CategoryRegisteredPoor, CategoryDibao, CategoryTekun}
	outpatientTiers = []string{TierVillage, TierTownship}
	inpatientTiers  = []string{TierTownship, TierCounty, TierCity}
	itemClasses     = []string{ClassA, ClassB, ClassC}
)

// IsCategory reports whether c is one of the person categories of SPEC.md.
func IsCategory(c string) bool { return slices.Contains(categories, c) }

// isPoor reports whether a (valid) category counts as poor.
func isPoor(category string) bool { return category != CategoryNone }

// classIndex maps an item class to its index in Policy.classShare.
func classIndex(class string) int {
	switch class {
	case ClassA:
		return 0
	case ClassB:
		return 1
	case ClassC:
		return 2
	}
	return -1
}

// Policy holds the figures of one policy file (one year and region), parsed,
// validated and with the derived constants precomputed. A *Policy is
// immutable and safe for concurrent use; obtain one from [ParsePolicy],
// [LoadPolicyFile], [ReferencePolicy] or [EmbeddedPolicy].
type Policy struct {
	id, name, region   string
	validFrom, validTo time.Time
	source             []byte

	classShare    [3]decimal.Decimal // eligible_share of A, B, C
	classShareOne [3]bool            // eligible_share == 1

	outTiers     map[string]outTier
	outAnnualCap Limit

	inTiers           map[string]inTier
	repeatFactor      decimal.Decimal
	poorDedFactor     decimal.Decimal
	basicPoorBonus    decimal.Decimal
	unreferredPenalty map[string]decimal.Decimal
	basicAnnualCap    Limit

	critThreshold      decimal.Decimal
	critPoorThrFactor  decimal.Decimal
	critSegments       []segmentDef
	critPoorBonus      decimal.Decimal
	critAnnualCap      Limit
	critPoorAnnualCap  Limit
	critScale          [2]critScale // [0] non-poor, [1] poor
	assistance         map[string]assistRule
	suppRate           decimal.Decimal
	suppAnnualCap      Limit
	minReimbursedShare decimal.Decimal
	oneMinusMinShare   decimal.Decimal // 1 − min_reimbursed_share
	annualPatientCap   Limit
	oopMaxShare        decimal.Decimal
}

type outTier struct {
	rate        decimal.Decimal
	perVisitCap Limit
}

type inTier struct {
	deductible decimal.Decimal
	rate       decimal.Decimal

	// Precomputed from the figures above and basic's factors, bonus and
	// penalty, so that settling does not redo them on every bill.
	dedRepeat   decimal.Decimal       // deductible × repeat_admission_deductible_factor
	ded         [2][2]decimal.Decimal // [repeat][poor]: deductible × the factors that apply
	dedRounded  [2][2]decimal.Decimal // round2 of ded
	ratePoor    decimal.Decimal       // rate + poor_rate_bonus
	penalty     decimal.Decimal       // unreferred_rate_penalty of the tier
	hasPenalty  bool                  // whether the tier is listed under unreferred_rate_penalty
	rateRaw     [2][2]decimal.Decimal // [poor][unreferred]: rate after bonus and penalty
	rateClamped [2][2]decimal.Decimal // rateRaw clamped to [0, 1]
}

type segmentDef struct {
	from, rate decimal.Decimal
}

type assistRule struct {
	rate      decimal.Decimal
	annualCap Limit
}

// critScale is the critical illness scale for one kind of person with
// absolute boundaries: T, and per segment [start, end) and rate.
type critScale struct {
	threshold decimal.Decimal
	segs      []critSeg
}

type critSeg struct {
	start  decimal.Decimal
	end    decimal.Decimal
	hasEnd bool
	rate   decimal.Decimal
}

// ID returns the policy's id, e.g. "baokang-2019".
func (p *Policy) ID() string { return p.id }

// Name returns the policy's human-readable name ("" when not given).
func (p *Policy) Name() string { return p.name }

// Region returns the policy's region code ("" when not given).
func (p *Policy) Region() string { return p.region }

// ValidFrom returns the first day the policy is in force (UTC midnight).
func (p *Policy) ValidFrom() time.Time { return p.validFrom }

// ValidTo returns the last day the policy is in force (UTC midnight).
func (p *Policy) ValidTo() time.Time { return p.validTo }

// Covers reports whether the calendar day of t (in t's location) lies within
// [ValidFrom, ValidTo]. The engine never calls it: settling applies the given
// policy whatever the bill's date; choosing the policy in force is the
// caller's job.
func (p *Policy) Covers(t time.Time) bool {
	day := time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, time.UTC)
	return !day.Before(p.validFrom) && !day.After(p.validTo)
}

// Source returns a copy of the JSON the policy was parsed from.
func (p *Policy) Source() []byte { return bytes.Clone(p.source) }

// Tiers returns the tiers the policy lists for kind (KindOutpatient or
// KindInpatient), in SPEC.md order; nil for an unknown kind.
func (p *Policy) Tiers(kind string) []string {
	var all []string
	var has func(string) bool
	switch kind {
	case KindOutpatient:
		all, has = outpatientTiers, func(t string) bool { _, ok := p.outTiers[t]; return ok }
	case KindInpatient:
		all, has = inpatientTiers, func(t string) bool { _, ok := p.inTiers[t]; return ok }
	default:
		return nil
	}
	var out []string
	for _, t := range all {
		if has(t) {
			out = append(out, t)
		}
	}
	return out
}

// hasTier reports whether the policy lists tier for kind.
func (p *Policy) hasTier(kind, tier string) bool {
	switch kind {
	case KindOutpatient:
		_, ok := p.outTiers[tier]
		return ok
	case KindInpatient:
		_, ok := p.inTiers[tier]
		return ok
	}
	return false
}

// LoadPolicyFile reads and parses the policy file at path. Validation
// problems are returned as a *ValidationError wrapped with the path.
func LoadPolicyFile(path string) (*Policy, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read policy: %w", err)
	}
	p, err := ParsePolicy(data)
	if err != nil {
		return nil, fmt.Errorf("policy %s: %w", path, err)
	}
	return p, nil
}

// ParsePolicy parses and validates a policy file in the format of
// baokang-2019.json. Every figure must be a JSON string holding a decimal
// number; caps may be null (no cap). The first problem found is returned as
// a *ValidationError whose Field is the JSON path of the offending value
// (e.g. "basic.tiers.county.rate") and whose Message says what is wrong
// ("rate above 1", "missing field", "segments out of order", ...).
//
// Rates, shares and factors must lie in [0, 1]; amounts (deductibles,
// thresholds, segment bounds, caps) must be >= 0 with at most 2 decimals.
// Tier, class and category names are checked against SPEC.md; a tier may be
// left out (bills at that tier are then refused), and so may a category
// under assistance (it gets no assistance) and basic.unreferred_rate_penalty
// as a whole (no penalty). Caps are required but may be null (no cap). Other
// keys are ignored. Because critical illness insurance must never pay more
// than its base, a segment rate plus critical.poor_rate_bonus above 1 is
// refused.
func ParsePolicy(data []byte) (*Policy, error) {
	root, err := decodeObject("", data)
	if err != nil {
		return nil, err
	}
	p := &Policy{source: bytes.Clone(data)}
	if err := p.parse(root); err != nil {
		return nil, err
	}
	return p, nil
}

func (p *Policy) parse(root jobj) error {
	var err error
	if p.id, err = root.str("id", true); err != nil {
		return err
	}
	if strings.TrimSpace(p.id) == "" {
		return invalid(root.at("id"), "empty id")
	}
	if p.name, err = root.str("name", false); err != nil {
		return err
	}
	if p.region, err = root.str("region", false); err != nil {
		return err
	}
	if p.validFrom, err = root.date("valid_from"); err != nil {
		return err
	}
	if p.validTo, err = root.date("valid_to"); err != nil {
		return err
	}
	if p.validTo.Before(p.validFrom) {
		return invalid(root.at("valid_to"), "valid_to before valid_from")
	}
	for _, step := range []func(jobj) error{
		p.parseClasses, p.parseOutpatient, p.parseBasic, p.parseCritical,
		p.parseAssistance, p.parseSupplementary, p.parseBackstop,
	} {
		if err := step(root); err != nil {
			return err
		}
	}
	if p.oopMaxShare, err = root.num("out_of_policy_patient_max_share", numShare); err != nil {
		return err
	}
	return nil
}

func (p *Policy) parseClasses(root jobj) error {
	o, err := root.obj("item_classes")
	if err != nil {
		return err
	}
	if err := o.onlyKeys(itemClasses, "unknown item class (allowed: A, B, C)"); err != nil {
		return err
	}
	for i, c := range itemClasses {
		co, err := o.obj(c)
		if err != nil {
			return err
		}
		if p.classShare[i], err = co.num("eligible_share", numShare); err != nil {
			return err
		}
		p.classShareOne[i] = p.classShare[i].Equal(one)
	}
	return nil
}

func (p *Policy) parseOutpatient(root jobj) error {
	o, err := root.obj("outpatient")
	if err != nil {
		return err
	}
	tiers, err := o.obj("tiers")
	if err != nil {
		return err
	}
	if err := tiers.onlyKeys(outpatientTiers, "unknown outpatient tier (allowed: village, township)"); err != nil {
		return err
	}
	p.outTiers = make(map[string]outTier)
	for _, name := range outpatientTiers {
		if !tiers.has(name) {
			continue
		}
		to, err := tiers.obj(name)
		if err != nil {
			return err
		}
		var t outTier
		if t.rate, err = to.num("rate", numRate); err != nil {
			return err
		}
		if t.perVisitCap, err = to.limit("per_visit_cap"); err != nil {
			return err
		}
		p.outTiers[name] = t
	}
	if p.outAnnualCap, err = o.limit("annual_cap"); err != nil {
		return err
	}
	return nil
}

func (p *Policy) parseBasic(root jobj) error {
	o, err := root.obj("basic")
	if err != nil {
		return err
	}
	tiers, err := o.obj("tiers")
	if err != nil {
		return err
	}
	if err := tiers.onlyKeys(inpatientTiers, "unknown inpatient tier (allowed: township, county, city)"); err != nil {
		return err
	}
	p.inTiers = make(map[string]inTier)
	for _, name := range inpatientTiers {
		if !tiers.has(name) {
			continue
		}
		to, err := tiers.obj(name)
		if err != nil {
			return err
		}
		var t inTier
		if t.deductible, err = to.num("deductible", numAmount); err != nil {
			return err
		}
		if t.rate, err = to.num("rate", numRate); err != nil {
			return err
		}
		p.inTiers[name] = t
	}
	if len(p.inTiers) == 0 {
		return invalid(tiers.path, "no inpatient tier listed")
	}
	if p.repeatFactor, err = o.num("repeat_admission_deductible_factor", numFactor); err != nil {
		return err
	}
	if p.poorDedFactor, err = o.num("poor_deductible_factor", numFactor); err != nil {
		return err
	}
	if p.basicPoorBonus, err = o.num("poor_rate_bonus", numRate); err != nil {
		return err
	}
	p.unreferredPenalty = make(map[string]decimal.Decimal)
	if o.has("unreferred_rate_penalty") { // optional: an absent tier has no penalty
		pen, err := o.obj("unreferred_rate_penalty")
		if err != nil {
			return err
		}
		if err := pen.onlyKeys(inpatientTiers, "unknown inpatient tier (allowed: township, county, city)"); err != nil {
			return err
		}
		for _, name := range inpatientTiers {
			if !pen.has(name) {
				continue
			}
			if p.unreferredPenalty[name], err = pen.num(name, numRate); err != nil {
				return err
			}
		}
	}
	if p.basicAnnualCap, err = o.limit("annual_cap"); err != nil {
		return err
	}
	for name, t := range p.inTiers {
		t.dedRepeat = norm2(t.deductible.Mul(p.repeatFactor))
		t.ded[0][0] = t.deductible
		t.ded[1][0] = t.dedRepeat
		t.ded[0][1] = norm2(t.deductible.Mul(p.poorDedFactor))
		t.ded[1][1] = norm2(t.dedRepeat.Mul(p.poorDedFactor))
		t.ratePoor = t.rate.Add(p.basicPoorBonus)
		t.penalty, t.hasPenalty = p.unreferredPenalty[name]
		for poor := range 2 {
			for repeat := range 2 {
				t.dedRounded[repeat][poor] = round2(t.ded[repeat][poor])
			}
			for unref := range 2 {
				r := t.rate
				if poor == 1 {
					r = t.ratePoor
				}
				if unref == 1 && t.hasPenalty {
					r = r.Sub(t.penalty)
				}
				t.rateRaw[poor][unref] = r
				t.rateClamped[poor][unref] = clamp01(r)
			}
		}
		p.inTiers[name] = t
	}
	return nil
}

// clamp01 limits r to [0, 1].
func clamp01(r decimal.Decimal) decimal.Decimal {
	if r.Sign() < 0 {
		return decimal.Decimal{}
	}
	if r.Cmp(one) > 0 {
		return one
	}
	return r
}

// norm2 gives d the exponent −2 when that loses nothing. Amounts that share
// an exponent add, subtract and compare without rescaling, which saves
// allocations on every bill.
func norm2(d decimal.Decimal) decimal.Decimal {
	if d.Exponent() == -2 || !hasAtMost2Places(d) {
		return d
	}
	return d.Round(2)
}

func (p *Policy) parseCritical(root jobj) error {
	o, err := root.obj("critical")
	if err != nil {
		return err
	}
	if p.critThreshold, err = o.num("threshold", numAmount); err != nil {
		return err
	}
	if p.critPoorThrFactor, err = o.num("poor_threshold_factor", numFactor); err != nil {
		return err
	}
	if p.critPoorBonus, err = o.num("poor_rate_bonus", numRate); err != nil {
		return err
	}
	segs, err := o.arr("segments")
	if err != nil {
		return err
	}
	if len(segs) == 0 {
		return invalid(o.at("segments"), "no segments")
	}
	one := decimal.NewFromInt(1)
	for i, raw := range segs {
		path := fmt.Sprintf("%s[%d]", o.at("segments"), i)
		so, err := decodeObject(path, raw)
		if err != nil {
			return err
		}
		var s segmentDef
		if s.from, err = so.num("from", numAmount); err != nil {
			return err
		}
		if s.rate, err = so.num("rate", numRate); err != nil {
			return err
		}
		if i == 0 && !s.from.IsZero() {
			return invalid(so.at("from"), "first segment must start at 0")
		}
		if i > 0 && s.from.Cmp(p.critSegments[i-1].from) <= 0 {
			return invalid(so.at("from"), "segments out of order: from must be strictly increasing")
		}
		if s.rate.Add(p.critPoorBonus).Cmp(one) > 0 {
			return invalid(so.at("rate"), "rate plus critical.poor_rate_bonus above 1")
		}
		p.critSegments = append(p.critSegments, s)
	}
	if p.critAnnualCap, err = o.limit("annual_cap"); err != nil {
		return err
	}
	if p.critPoorAnnualCap, err = o.limit("poor_annual_cap"); err != nil {
		return err
	}
	for poor := range 2 {
		t, bonus := p.critThreshold, decimal.Decimal{}
		if poor == 1 {
			t, bonus = norm2(t.Mul(p.critPoorThrFactor)), p.critPoorBonus
		}
		cs := critScale{threshold: t, segs: make([]critSeg, len(p.critSegments))}
		for i, s := range p.critSegments {
			cs.segs[i] = critSeg{start: norm2(t.Add(s.from)), rate: s.rate.Add(bonus)}
			if i+1 < len(p.critSegments) {
				cs.segs[i].end, cs.segs[i].hasEnd = norm2(t.Add(p.critSegments[i+1].from)), true
			}
		}
		p.critScale[poor] = cs
	}
	return nil
}

func (p *Policy) parseAssistance(root jobj) error {
	o, err := root.obj("assistance")
	if err != nil {
		return err
	}
	if err := o.onlyKeys(categories, "unknown category (allowed: none, registered_poor, dibao, tekun)"); err != nil {
		return err
	}
	p.assistance = make(map[string]assistRule)
	for _, c := range categories {
		if !o.has(c) {
			continue
		}
		co, err := o.obj(c)
		if err != nil {
			return err
		}
		var r assistRule
		if r.rate, err = co.num("rate", numRate); err != nil {
			return err
		}
		if r.annualCap, err = co.limit("annual_cap"); err != nil {
			return err
		}
		p.assistance[c] = r
	}
	return nil
}

func (p *Policy) parseSupplementary(root jobj) error {
	o, err := root.obj("supplementary")
	if err != nil {
		return err
	}
	if p.suppRate, err = o.num("rate", numRate); err != nil {
		return err
	}
	if p.suppAnnualCap, err = o.limit("annual_cap"); err != nil {
		return err
	}
	return nil
}

func (p *Policy) parseBackstop(root jobj) error {
	o, err := root.obj("backstop")
	if err != nil {
		return err
	}
	if p.minReimbursedShare, err = o.num("min_reimbursed_share", numShare); err != nil {
		return err
	}
	p.oneMinusMinShare = decimal.NewFromInt(1).Sub(p.minReimbursedShare)
	if p.annualPatientCap, err = o.limit("annual_patient_cap"); err != nil {
		return err
	}
	return nil
}

// numKind says what a policy figure is and so which values are allowed.
type numKind int

const (
	numRate   numKind = iota // a rate in [0, 1]
	numShare                 // a share in [0, 1]
	numFactor                // a multiplying factor in [0, 1]
	numAmount                // an amount in yuan, >= 0, at most 2 decimals
)

func (k numKind) word() string {
	switch k {
	case numRate:
		return "rate"
	case numShare:
		return "share"
	case numFactor:
		return "factor"
	}
	return "amount"
}

// jobj is a JSON object being validated, with its path for messages.
type jobj struct {
	path string
	m    map[string]json.RawMessage
}

func decodeObject(path string, raw []byte) (jobj, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || raw[0] != '{' {
		if path == "" {
			if !json.Valid(raw) {
				return jobj{}, invalid("", "policy is not valid JSON")
			}
			return jobj{}, invalid("", "policy must be a JSON object")
		}
		return jobj{}, invalid(path, "must be an object")
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil {
		return jobj{}, invalid(path, "invalid JSON: "+err.Error())
	}
	return jobj{path: path, m: m}, nil
}

// at returns the path of key within o.
func (o jobj) at(key string) string {
	if o.path == "" {
		return key
	}
	return o.path + "." + key
}

// has reports whether key is present (even if null).
func (o jobj) has(key string) bool { _, ok := o.m[key]; return ok }

// get returns the raw value of a present, non-null key.
func (o jobj) get(key string) (json.RawMessage, error) {
	raw, ok := o.m[key]
	if !ok {
		return nil, invalid(o.at(key), "missing field")
	}
	if isNull(raw) {
		return nil, invalid(o.at(key), "must not be null")
	}
	return raw, nil
}

func isNull(raw json.RawMessage) bool { return string(bytes.TrimSpace(raw)) == "null" }

func (o jobj) obj(key string) (jobj, error) {
	raw, err := o.get(key)
	if err != nil {
		return jobj{}, err
	}
	return decodeObject(o.at(key), raw)
}

func (o jobj) arr(key string) ([]json.RawMessage, error) {
	raw, err := o.get(key)
	if err != nil {
		return nil, err
	}
	var a []json.RawMessage
	if err := json.Unmarshal(raw, &a); err != nil {
		return nil, invalid(o.at(key), "must be an array")
	}
	return a, nil
}

// str returns a string field; an absent optional field is "".
func (o jobj) str(key string, required bool) (string, error) {
	raw, ok := o.m[key]
	if !ok && !required {
		return "", nil
	}
	raw, err := o.get(key)
	if err != nil {
		return "", err
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return "", invalid(o.at(key), "must be a string")
	}
	return s, nil
}

func (o jobj) date(key string) (time.Time, error) {
	s, err := o.str(key, true)
	if err != nil {
		return time.Time{}, err
	}
	t, ok := parseDate(s)
	if !ok {
		return time.Time{}, invalid(o.at(key), fmt.Sprintf("bad date %q (want YYYY-MM-DD)", s))
	}
	return t, nil
}

// num returns a required figure of kind k.
func (o jobj) num(key string, k numKind) (decimal.Decimal, error) {
	raw, err := o.get(key)
	if err != nil {
		return decimal.Decimal{}, err
	}
	return parseFigure(o.at(key), raw, k)
}

// limit returns a required cap: an amount, or null for no cap.
func (o jobj) limit(key string) (Limit, error) {
	raw, ok := o.m[key]
	if !ok {
		return Limit{}, invalid(o.at(key), "missing field (write null for no cap)")
	}
	if isNull(raw) {
		return Limit{}, nil
	}
	d, err := parseFigure(o.at(key), raw, numAmount)
	if err != nil {
		return Limit{}, err
	}
	return Limit{Set: true, Value: d}, nil
}

// onlyKeys rejects keys of o outside allowed, naming the first in sorted order.
func (o jobj) onlyKeys(allowed []string, msg string) error {
	var bad []string
	for k := range o.m {
		if !slices.Contains(allowed, k) {
			bad = append(bad, k)
		}
	}
	if len(bad) == 0 {
		return nil
	}
	sort.Strings(bad)
	return invalid(o.at(bad[0]), msg)
}

func parseFigure(path string, raw json.RawMessage, k numKind) (decimal.Decimal, error) {
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return decimal.Decimal{}, invalid(path, fmt.Sprintf("bad number %s: figures are written as JSON strings, e.g. \"0.75\"", shorten(string(bytes.TrimSpace(raw)))))
	}
	if !isNumber(s) {
		return decimal.Decimal{}, invalid(path, fmt.Sprintf("bad number %q", shorten(s)))
	}
	d, err := decimal.NewFromString(s)
	if err != nil {
		return decimal.Decimal{}, invalid(path, fmt.Sprintf("bad number %q", shorten(s)))
	}
	w := k.word()
	if d.Sign() < 0 {
		return decimal.Decimal{}, invalid(path, "negative "+w)
	}
	if k == numAmount {
		if !hasAtMost2Places(d) {
			return decimal.Decimal{}, invalid(path, "amount with more than 2 decimal places")
		}
		d = norm2(d)
	} else if d.Cmp(decimal.NewFromInt(1)) > 0 {
		return decimal.Decimal{}, invalid(path, w+" above 1")
	}
	return d, nil
}

// shorten keeps messages readable when the offending text is huge.
func shorten(s string) string {
	const max = 40
	if len(s) <= max {
		return s
	}
	return s[:max] + "…"
}

// parseDate parses a civil date written YYYY-MM-DD.
func parseDate(s string) (time.Time, bool) {
	if len(s) != 10 || s[4] != '-' || s[7] != '-' {
		return time.Time{}, false
	}
	for i, c := range []byte(s) {
		if i != 4 && i != 7 && !isDigit(c) {
			return time.Time{}, false
		}
	}
	t, err := time.Parse(time.DateOnly, s)
	if err != nil {
		return time.Time{}, false
	}
	return t, true
}

//go:embed policies/*.json
var policyFS embed.FS

// ReferencePolicyID is the id of the reference policy shipped with the
// binary.
const ReferencePolicyID = "baokang-2019"

var embeddedPolicies = sync.OnceValues(func() (map[string]*Policy, error) {
	entries, err := policyFS.ReadDir("policies")
	if err != nil {
		return nil, err
	}
	out := make(map[string]*Policy, len(entries))
	for _, e := range entries {
		data, err := policyFS.ReadFile("policies/" + e.Name())
		if err != nil {
			return nil, err
		}
		p, err := ParsePolicy(data)
		if err != nil {
			return nil, fmt.Errorf("embedded policy %s: %w", e.Name(), err)
		}
		if _, dup := out[p.id]; dup {
			return nil, fmt.Errorf("embedded policy %s: duplicate id %q", e.Name(), p.id)
		}
		out[p.id] = p
	}
	return out, nil
})

// EmbeddedPolicies returns the policies shipped in the binary, sorted by id.
// It panics if an embedded file is invalid, which the package's tests rule
// out.
func EmbeddedPolicies() []*Policy {
	m, err := embeddedPolicies()
	if err != nil {
		panic(err)
	}
	out := make([]*Policy, 0, len(m))
	for _, p := range m {
		out = append(out, p)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].id < out[j].id })
	return out
}

// EmbeddedPolicy returns the embedded policy with the given id, and whether
// there is one.
func EmbeddedPolicy(id string) (*Policy, bool) {
	m, err := embeddedPolicies()
	if err != nil {
		panic(err)
	}
	p, ok := m[id]
	return p, ok
}

// ReferencePolicy returns the embedded reference policy, baokang-2019.
func ReferencePolicy() *Policy {
	p, ok := EmbeddedPolicy(ReferencePolicyID)
	if !ok {
		panic("settlement: reference policy " + ReferencePolicyID + " is not embedded")
	}
	return p
}
