package settlement

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/shopspring/decimal"

	"github.com/qinba/qinba/facility"
)

// Bill statuses.
const (
	StatusOpen     = "open"     // recorded, never settled
	StatusSettled  = "settled"  // a settlement is in force
	StatusReversed = "reversed" // its settlement was reversed; it may be corrected and settled again
)

// MaxLines is the most lines one bill may have.
const MaxLines = 500

// BillInput is a bill as a billing clerk enters it (POST /api/v1/bills,
// POST /api/v1/bills/estimate), and one bill of an import. Money, quantities
// and prices are strings, never JSON numbers.
type BillInput struct {
	// PersonID is the patient (household.Person).
	PersonID int64 `json:"person_id"`
	// Facility is the billing facility's code; empty means the clerk's own.
	Facility string `json:"facility,omitempty"`
	// Kind is "inpatient" or "outpatient".
	Kind string `json:"kind"`
	// AdmittedOn and DischargedOn are the stay's dates (inpatient); the
	// discharge date is the bill's date.
	AdmittedOn   string `json:"admitted_on,omitempty"`
	DischargedOn string `json:"discharged_on,omitempty"`
	// VisitOn is the visit's date (outpatient) and the bill's date.
	VisitOn string `json:"visit_on,omitempty"`
	// Emergency marks an emergency admission (inpatient only).
	Emergency bool `json:"emergency,omitempty"`
	// ReferralID is the referral the patient came through (inpatient only;
	// 0: none). It must be a referral of this person to this facility that
	// was accepted (accepted, scheduled, arrived or completed).
	ReferralID int64 `json:"referral_id,omitempty"`
	// ExternalNo is the facility's own bill number, unique per facility; a
	// bill sent again with the same number is recognised (unchanged, or a
	// correction while it is not settled).
	ExternalNo string      `json:"external_no,omitempty"`
	Lines      []LineInput `json:"lines"`
}

// LineInput is one item of a bill.
type LineInput struct {
	ItemCode string `json:"item_code"`
	Name     string `json:"name"`
	// Class is A (甲类), B (乙类) or C (丙类 / out of catalogue).
	Class string `json:"class"`
	// Quantity: digits with at most 3 decimals, > 0.
	Quantity string `json:"quantity"`
	// UnitPrice: yuan, digits with at most 4 decimals.
	UnitPrice string `json:"unit_price"`
	// Amount: yuan with at most 2 decimals; it must equal
	// round2(quantity × unit_price). Empty: computed.
	Amount string `json:"amount,omitempty"`
}

// draft is a BillInput whose fields passed their own checks, normalised.
type draft struct {
	PersonID   int64
	Facility   string
	Kind       string
	Admitted   time.Time // zero when absent
	Discharged time.Time
	Visit      time.Time
	Date       time.Time
	Emergency  bool
	ReferralID int64
	ExternalNo string
	Lines      []draftLine
	Total      decimal.Decimal

	// Filled by the checks against the database.
	Tier        string
	Region      string
	RefDir      string
	RefFrom     string
	NationalID  string // import: the identity number given instead of a person id
	contentHash [32]byte
	stageSeq    int // import: its row in bill_stage
}

type draftLine struct {
	Code, Name, Class string
	Qty, Price, Amt   decimal.Decimal
}

// problem is one finding of a check: the field (API path, e.g.
// "lines[2].amount") and what is wrong.
type problem struct {
	Field, Msg string
}

var (
	externalNoRe = regexp.MustCompile(`^[A-Za-z0-9_./-]{1,64}$`)
	maxQuantity  = decimal.NewFromInt(1_000_000)
	maxPrice     = decimal.NewFromInt(100_000_000)
	maxAmount    = decimal.NewFromInt(1_000_000_000)
)

// china is the zone "today" is read in.
var china = time.FixedZone("CST", 8*60*60)

// today returns the calendar day of now in China, as UTC midnight.
func today(now time.Time) time.Time {
	y, m, d := now.In(china).Date()
	return time.Date(y, m, d, 0, 0, 0, 0, time.UTC)
}

// parseDay reads a YYYY-MM-DD date between 2000 and today.
func parseDay(s string, now time.Time) (time.Time, string) {
	t, ok := parseDate(strings.TrimSpace(s))
	if !ok {
		return time.Time{}, fmt.Sprintf("bad date %q: write YYYY-MM-DD", s)
	}
	if t.Year() < 2000 {
		return time.Time{}, "date before 2000"
	}
	if t.After(today(now)) {
		return time.Time{}, "date in the future"
	}
	return t, ""
}

// parseDecimal reads digits with at most places decimals (no sign, no
// exponent).
func parseDecimal(s string, places int) (decimal.Decimal, bool) {
	i, n := 0, len(s)
	for i < n && isDigit(s[i]) {
		i++
	}
	if i == 0 || i > 15 {
		return decimal.Decimal{}, false
	}
	if i < n {
		if s[i] != '.' || n-i-1 < 1 || n-i-1 > places {
			return decimal.Decimal{}, false
		}
		for j := i + 1; j < n; j++ {
			if !isDigit(s[j]) {
				return decimal.Decimal{}, false
			}
		}
	}
	d, err := decimal.NewFromString(s)
	return d, err == nil
}

// cleanText checks a free-text field: trimmed, 1 to max characters, no
// control characters.
func cleanText(s string, max int) (string, string) {
	s = strings.TrimSpace(s)
	switch {
	case s == "":
		return "", "required"
	case !utf8.ValidString(s):
		return "", "not valid UTF-8"
	case utf8.RuneCountInString(s) > max:
		return "", fmt.Sprintf("at most %d characters", max)
	case strings.IndexFunc(s, unicode.IsControl) >= 0:
		return "", "control characters are not allowed"
	}
	return s, ""
}

// checkHeader checks the bill-level fields of in (everything but the lines).
func checkHeader(in *BillInput, now time.Time, d *draft, add func(field, msg string)) {
	if in.PersonID <= 0 && d.NationalID == "" {
		add("person_id", "required")
	}
	d.PersonID = in.PersonID
	d.Facility = strings.TrimSpace(in.Facility)
	d.Kind = strings.TrimSpace(in.Kind)
	d.Emergency = in.Emergency
	d.ReferralID = in.ReferralID
	if in.ReferralID < 0 {
		add("referral_id", "must be a referral id")
	}
	if x := strings.TrimSpace(in.ExternalNo); x != "" {
		if !externalNoRe.MatchString(x) {
			add("external_no", "1 to 64 letters, digits and . _ / -")
		}
		d.ExternalNo = x
	}
	day := func(field, s string) time.Time {
		if strings.TrimSpace(s) == "" {
			add(field, "required for "+d.Kind+" bills")
			return time.Time{}
		}
		t, msg := parseDay(s, now)
		if msg != "" {
			add(field, msg)
		}
		return t
	}
	absent := func(field, s string) {
		if strings.TrimSpace(s) != "" {
			add(field, "not used for "+d.Kind+" bills")
		}
	}
	switch d.Kind {
	case KindInpatient:
		d.Admitted = day("admitted_on", in.AdmittedOn)
		d.Discharged = day("discharged_on", in.DischargedOn)
		absent("visit_on", in.VisitOn)
		if !d.Admitted.IsZero() && !d.Discharged.IsZero() && d.Discharged.Before(d.Admitted) {
			add("discharged_on", "before the admission date")
		}
		d.Date = d.Discharged
	case KindOutpatient:
		d.Visit = day("visit_on", in.VisitOn)
		absent("admitted_on", in.AdmittedOn)
		absent("discharged_on", in.DischargedOn)
		if in.Emergency {
			add("emergency", "applies to inpatient stays only")
		}
		if in.ReferralID != 0 {
			add("referral_id", "a referral applies to inpatient stays only")
		}
		d.Date = d.Visit
	default:
		add("kind", fmt.Sprintf("bad kind %q: inpatient or outpatient", in.Kind))
	}
}

// checkLine checks one line; prefix names it ("lines[2]." or "").
func checkLine(l *LineInput, prefix string, add func(field, msg string)) (draftLine, bool) {
	ok := true
	bad := func(field, msg string) { add(prefix+field, msg); ok = false }
	var out draftLine
	var msg string
	if out.Code, msg = cleanText(l.ItemCode, 64); msg != "" {
		bad("item_code", msg)
	}
	if out.Name, msg = cleanText(l.Name, 100); msg != "" {
		bad("name", msg)
	}
	out.Class = strings.TrimSpace(l.Class)
	if classIndex(out.Class) < 0 {
		bad("class", fmt.Sprintf("bad class %q: A, B or C", l.Class))
	}
	q, qok := parseDecimal(strings.TrimSpace(l.Quantity), 3)
	switch {
	case !qok:
		bad("quantity", fmt.Sprintf("bad quantity %q: digits with at most 3 decimals", l.Quantity))
	case q.Sign() <= 0:
		bad("quantity", "must be more than 0")
	case q.Cmp(maxQuantity) >= 0:
		bad("quantity", "too large")
	}
	p, pok := parseDecimal(strings.TrimSpace(l.UnitPrice), 4)
	switch {
	case !pok:
		bad("unit_price", fmt.Sprintf("bad unit price %q: yuan, digits with at most 4 decimals", l.UnitPrice))
	case p.Cmp(maxPrice) >= 0:
		bad("unit_price", "too large")
	}
	out.Qty, out.Price = q, p
	if qok && pok {
		out.Amt = round2(q.Mul(p))
		if out.Amt.Cmp(maxAmount) >= 0 {
			bad("amount", "too large")
		}
	}
	if a := strings.TrimSpace(l.Amount); a != "" {
		given, aok := ParseAmount(a)
		switch {
		case !aok:
			bad("amount", fmt.Sprintf("bad amount %q: yuan with at most 2 decimals", l.Amount))
		case qok && pok && !given.Equal(out.Amt):
			bad("amount", fmt.Sprintf("%s is not quantity × unit price = %s", FormatMoney(given), FormatMoney(out.Amt)))
		}
	}
	return out, ok
}

// checkInput checks a bill given as JSON and returns it normalised, or the
// problems found (field paths as in the JSON).
func checkInput(in *BillInput, now time.Time) (*draft, []problem) {
	var probs []problem
	add := func(field, msg string) { probs = append(probs, problem{field, msg}) }
	d := &draft{}
	checkHeader(in, now, d, add)
	switch {
	case len(in.Lines) == 0:
		add("lines", "a bill needs at least one line")
	case len(in.Lines) > MaxLines:
		add("lines", fmt.Sprintf("at most %d lines", MaxLines))
	}
	for i := range in.Lines {
		if i >= MaxLines {
			break
		}
		l, ok := checkLine(&in.Lines[i], "lines["+strconv.Itoa(i)+"].", add)
		if ok {
			d.Lines = append(d.Lines, l)
			d.Total = d.Total.Add(l.Amt)
		}
	}
	if len(probs) > 0 {
		return nil, probs
	}
	return d, nil
}

// allowedTiers are the tiers SPEC.md lists for each kind; the policy in
// force may list fewer.
func tierAllowed(p *Policy, kind, tier string) bool {
	if p != nil {
		return p.hasTier(kind, tier)
	}
	list := outpatientTiers
	if kind == KindInpatient {
		list = inpatientTiers
	}
	for _, t := range list {
		if t == tier {
			return true
		}
	}
	return false
}

// tierProblem says why a facility of tier may not bill kind.
func tierProblem(fac facility.Facility, kind string) string {
	if kind == KindInpatient {
		return fmt.Sprintf("%s is a %s facility: the policy has no inpatient stays there", fac.Code, fac.Tier)
	}
	return fmt.Sprintf("%s is a %s facility: the policy has no outpatient visits there", fac.Code, fac.Tier)
}

// hash computes the content hash of a checked bill: everything the clerk
// entered, normalised, so that sending the same bill again is recognised.
func (d *draft) hash() [32]byte {
	h := sha256.New()
	var buf [8]byte
	put := func(s string) {
		binary.BigEndian.PutUint32(buf[:4], uint32(len(s)))
		h.Write(buf[:4])
		h.Write([]byte(s))
	}
	date := func(t time.Time) string {
		if t.IsZero() {
			return ""
		}
		return t.Format(time.DateOnly)
	}
	put(strconv.FormatInt(d.PersonID, 10))
	put(d.Facility)
	put(d.Kind)
	put(date(d.Admitted))
	put(date(d.Discharged))
	put(date(d.Visit))
	put(strconv.FormatBool(d.Emergency))
	put(strconv.FormatInt(d.ReferralID, 10))
	put(d.ExternalNo)
	for _, l := range d.Lines {
		put(l.Code)
		put(l.Name)
		put(l.Class)
		put(l.Qty.String())
		put(l.Price.String())
		put(l.Amt.StringFixed(2))
	}
	var out [32]byte
	copy(out[:], h.Sum(nil))
	return out
}

// engineLines returns the bill's lines as the engine reads them.
func (d *draft) engineLines() []Line {
	out := make([]Line, len(d.Lines))
	for i, l := range d.Lines {
		out[i] = Line{Class: l.Class, Amount: l.Amt}
	}
	return out
}

// BillView is a bill as the API shows it.
type BillView struct {
	ID       int64  `json:"id"`
	PersonID int64  `json:"person_id"`
	Facility string `json:"facility"`
	Tier     string `json:"tier"`
	// Region is the patient's insurance pool (their home village's
	// region), whose policy settles the bill.
	Region       string          `json:"region_code"`
	Kind         string          `json:"kind"`
	AdmittedOn   string          `json:"admitted_on,omitempty"`
	DischargedOn string          `json:"discharged_on,omitempty"`
	VisitOn      string          `json:"visit_on,omitempty"`
	Date         string          `json:"date"`
	Emergency    bool            `json:"emergency"`
	ReferralID   int64           `json:"referral_id,omitempty"`
	Referral     *ReferralInput  `json:"referral,omitempty"`
	ExternalNo   string          `json:"external_no,omitempty"`
	Status       string          `json:"status"`
	SettlementID int64           `json:"settlement_id,omitempty"`
	Version      int             `json:"version"`
	Total        Money           `json:"total"`
	Lines        []LineView      `json:"lines,omitempty"`
	Settlement   *SettlementView `json:"settlement,omitempty"`
	// Settlements lists every settlement and reversal of the bill, oldest
	// first (GET /bills/{id} only).
	Settlements []SettlementSummary `json:"settlements,omitempty"`
	CreatedAt   time.Time           `json:"created_at"`
	UpdatedAt   time.Time           `json:"updated_at"`
}

// ReferralInput is how the referral of a bill enters the computation: its
// direction and, for an upward referral, the deductible borne in the
// referring stay (from that stay's settlement, never typed).
type ReferralInput struct {
	ID           int64  `json:"id"`
	Direction    string `json:"direction"`
	FromFacility string `json:"from_facility"`
}

// LineView is one line of a bill.
type LineView struct {
	LineNo    int    `json:"line_no"`
	ItemCode  string `json:"item_code"`
	Name      string `json:"name"`
	Class     string `json:"class"`
	Quantity  string `json:"quantity"`
	UnitPrice string `json:"unit_price"`
	Amount    Money  `json:"amount"`
}

// SettlementSummary is one settlement or reversal in a bill's history.
type SettlementSummary struct {
	ID         int64  `json:"id"`
	Kind       string `json:"kind"`
	PostedOn   string `json:"posted_on"`
	Reverses   int64  `json:"reverses,omitempty"`
	ReversedBy int64  `json:"reversed_by,omitempty"`
	Total      Money  `json:"total"`
	Patient    Money  `json:"patient"`
}

func dayString(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.Format(time.DateOnly)
}
