package settlement

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/shopspring/decimal"
)

// RunCases is `qinba settle-cases`: it reads the conformance input document
// of SPEC.md ({"cases": [...]}) from in, settles every case under policy p
// (whatever the bills' dates) and writes the output document to out.
// Amounts are written as strings with exactly two decimals. A case whose
// input is invalid gets {"id": ..., "error": "..."} and no results; the other
// cases are still settled.
//
// RunCases returns an error only when the input document itself does not
// parse (not JSON, not an object, no "cases" array) or when writing to out
// fails; an invalid case is not an error.
func RunCases(p *Policy, in io.Reader, out io.Writer) error {
	doc, err := decodeCasesDocument(in)
	if err != nil {
		return err
	}
	res := casesOut{Cases: make([]caseOut, 0, len(doc))}
	for _, raw := range doc {
		res.Cases = append(res.Cases, p.runCase(raw))
	}
	enc := json.NewEncoder(out)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(res); err != nil {
		return fmt.Errorf("write output: %w", err)
	}
	return nil
}

// decodeCasesDocument reads {"cases": [...]} and returns the raw cases.
func decodeCasesDocument(in io.Reader) ([]json.RawMessage, error) {
	dec := json.NewDecoder(in)
	var top json.RawMessage
	if err := dec.Decode(&top); err != nil {
		return nil, fmt.Errorf("input is not a JSON document: %w", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, errors.New("input: unexpected data after the JSON document")
	}
	top = bytes.TrimSpace(top)
	if len(top) == 0 || top[0] != '{' {
		return nil, errors.New(`input must be a JSON object {"cases": [...]}`)
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(top, &m); err != nil {
		return nil, fmt.Errorf("input: %w", err)
	}
	raw, ok := m["cases"]
	if !ok {
		return nil, errors.New(`input has no "cases" array`)
	}
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || raw[0] != '[' {
		return nil, errors.New(`input: "cases" must be an array`)
	}
	var cases []json.RawMessage
	if err := json.Unmarshal(raw, &cases); err != nil {
		return nil, fmt.Errorf("input: cases: %w", err)
	}
	return cases, nil
}

// casesOut is the output document.
type casesOut struct {
	Cases []caseOut `json:"cases"`
}

// caseOut is one case of the output: results (possibly empty) or an error.
type caseOut struct {
	ID      json.RawMessage `json:"id"`
	Results *[]resultOut    `json:"results,omitempty"`
	Error   string          `json:"error,omitempty"`
}

// resultOut is one result line of the output document.
type resultOut struct {
	Bill          string `json:"bill"`
	Reversal      bool   `json:"reversal,omitempty"`
	Total         Money  `json:"total"`
	Eligible      Money  `json:"eligible"`
	Deductible    Money  `json:"deductible"`
	Basic         Money  `json:"basic"`
	Critical      Money  `json:"critical"`
	Assistance    Money  `json:"assistance"`
	Supplementary Money  `json:"supplementary"`
	Backstop      Money  `json:"backstop"`
	Hospital      Money  `json:"hospital"`
	Patient       Money  `json:"patient"`
}

func newResultOut(r *Result) resultOut {
	return resultOut{
		Bill: r.BillID, Reversal: r.Reversal,
		Total: M(r.Total), Eligible: M(r.Eligible), Deductible: M(r.Deductible),
		Basic: M(r.Basic), Critical: M(r.Critical), Assistance: M(r.Assistance),
		Supplementary: M(r.Supplementary), Backstop: M(r.Backstop),
		Hospital: M(r.Hospital), Patient: M(r.Patient),
	}
}

// caseError is the message of an invalid case.
type caseError string

// Error returns the message written into the case's "error".
func (e caseError) Error() string { return string(e) }

// settledBill is what a case keeps about a settled bill for its reversal.
type settledBill struct {
	result   Result
	year     int
	reversed bool
}

// runCase settles one case; any invalid input makes the whole case an error.
func (p *Policy) runCase(raw json.RawMessage) caseOut {
	out := caseOut{}
	c, err := decodeObject("", raw)
	if err != nil {
		out.ID = json.RawMessage("null")
		out.Error = "case is not an object"
		return out
	}
	if id, ok := c.m["id"]; ok {
		out.ID = id
	} else {
		out.ID = json.RawMessage("null")
	}
	results, err := p.settleCase(c)
	if err != nil {
		out.Error = err.Error()
		return out
	}
	out.Results = &results
	return out
}

func (p *Policy) settleCase(c jobj) ([]resultOut, error) {
	person, err := decodePerson(c.m["person"])
	if err != nil {
		return nil, err
	}
	rawBills, ok := c.m["bills"]
	if !ok || isNull(rawBills) {
		return nil, caseError("missing bills")
	}
	var bills []json.RawMessage
	if t := bytes.TrimSpace(rawBills); len(t) == 0 || t[0] != '[' || json.Unmarshal(t, &bills) != nil {
		return nil, caseError("bad bills " + quote(shorten(string(bytes.TrimSpace(rawBills)))))
	}

	results := make([]resultOut, 0, len(bills))
	settled := make(map[string]*settledBill, len(bills))
	years := make(map[int]Accumulators)
	for _, rb := range bills {
		bo, err := decodeObject("", rb)
		if err != nil {
			return nil, caseError("bad bill " + quote(shorten(string(bytes.TrimSpace(rb)))))
		}
		if rev, ok := bo.m["reverse"]; ok {
			id, isStr := jsonString(rev)
			if !isStr {
				return nil, caseError("reversal of unknown or reversed bill " + rawText(rev))
			}
			sb := settled[id]
			if sb == nil || sb.reversed {
				return nil, caseError("reversal of unknown or reversed bill " + quote(shorten(id)))
			}
			rr, acc, err := Reverse(sb.result, years[sb.year])
			if err != nil {
				return nil, caseError(fmt.Sprintf("reversal of bill %s: %v", quote(id), err))
			}
			sb.reversed = true
			years[sb.year] = acc
			results = append(results, newResultOut(&rr))
			continue
		}
		b, err := p.decodeBill(bo, func(id string) bool { _, dup := settled[id]; return dup })
		if err != nil {
			return nil, err
		}
		year := b.Date.Year()
		r, acc, err := p.Settle(person, years[year], b)
		if err != nil {
			var ve *ValidationError
			if errors.As(err, &ve) {
				return nil, caseError(ve.Message)
			}
			return nil, err
		}
		years[year] = acc
		settled[b.ID] = &settledBill{result: r, year: year}
		results = append(results, newResultOut(&r))
	}
	return results, nil
}

// rawText renders a JSON value for a message.
func rawText(raw json.RawMessage) string {
	return quote(shorten(string(bytes.TrimSpace(raw))))
}

// jsonString returns the string held by raw, or ok=false when raw is not a
// JSON string.
func jsonString(raw json.RawMessage) (string, bool) {
	t := bytes.TrimSpace(raw)
	if len(t) == 0 || t[0] != '"' {
		return "", false
	}
	var s string
	if json.Unmarshal(t, &s) != nil {
		return "", false
	}
	return s, true
}

// optBool reads an optional boolean: absent or null is false.
func optBool(raw json.RawMessage, present bool) (bool, bool) {
	if !present || isNull(raw) {
		return false, true
	}
	switch string(bytes.TrimSpace(raw)) {
	case "true":
		return true, true
	case "false":
		return false, true
	}
	return false, false
}

func decodePerson(raw json.RawMessage) (Person, error) {
	if raw == nil || isNull(raw) {
		return Person{}, caseError("missing person")
	}
	po, err := decodeObject("", raw)
	if err != nil {
		return Person{}, caseError("bad person " + rawText(raw))
	}
	var person Person
	cat, ok := po.m["category"]
	if !ok {
		return Person{}, caseError("missing category")
	}
	s, isStr := jsonString(cat)
	if !isStr {
		return Person{}, caseError("bad category " + rawText(cat))
	}
	if !IsCategory(s) {
		return Person{}, caseError("bad category " + quote(shorten(s)))
	}
	person.Category = s
	ins, ok := po.m["insured"]
	if !ok {
		return Person{}, caseError("missing insured")
	}
	switch string(bytes.TrimSpace(ins)) {
	case "true":
		person.Insured = true
	case "false":
	default:
		return Person{}, caseError("bad insured " + rawText(ins) + " (must be true or false)")
	}
	return person, nil
}

// decodeBill turns a bill of the conformance input into a Bill, checking
// every field in the order id (and whether seen says it is repeated), date,
// kind, tier, emergency, referral, lines.
func (p *Policy) decodeBill(bo jobj, seen func(id string) bool) (Bill, error) {
	var b Bill
	rawID, ok := bo.m["id"]
	if !ok {
		return b, caseError("bill without id")
	}
	id, isStr := jsonString(rawID)
	if !isStr || id == "" {
		return b, caseError("bad bill id " + rawText(rawID))
	}
	if seen(id) {
		return b, caseError("repeated bill id " + quote(id))
	}
	b.ID = id

	rawDate, ok := bo.m["date"]
	if !ok {
		return b, caseError("missing date")
	}
	ds, isStr := jsonString(rawDate)
	if !isStr {
		return b, caseError("bad date " + rawText(rawDate))
	}
	date, ok := parseDate(ds)
	if !ok {
		return b, caseError("bad date " + quote(shorten(ds)))
	}
	b.Date = date

	rawKind, ok := bo.m["kind"]
	if !ok {
		return b, caseError("missing kind")
	}
	kind, isStr := jsonString(rawKind)
	if !isStr {
		return b, caseError("bad kind " + rawText(rawKind))
	}
	if kind != KindOutpatient && kind != KindInpatient {
		return b, caseError("bad kind " + quote(shorten(kind)))
	}
	b.Kind = kind

	rawTier, ok := bo.m["tier"]
	if !ok {
		return b, caseError("missing tier")
	}
	tier, isStr := jsonString(rawTier)
	if !isStr {
		return b, caseError("unknown " + kind + " tier " + rawText(rawTier))
	}
	if !p.hasTier(kind, tier) {
		return b, caseError("unknown " + kind + " tier " + quote(shorten(tier)))
	}
	b.Tier = tier

	// emergency and referral belong to inpatient bills; on an outpatient
	// bill they are "other fields" and ignored.
	if kind == KindInpatient {
		rawEm, present := bo.m["emergency"]
		em, ok := optBool(rawEm, present)
		if !ok {
			return b, caseError("bad emergency " + rawText(rawEm) + " (must be true or false)")
		}
		b.Emergency = em
		if rawRef, present := bo.m["referral"]; present && !isNull(rawRef) {
			ref, err := decodeReferral(rawRef)
			if err != nil {
				return b, err
			}
			b.Referral = ref
		}
	}

	rawLines, ok := bo.m["lines"]
	if !ok || isNull(rawLines) {
		return b, caseError("bill has no lines")
	}
	var lines []json.RawMessage
	if t := bytes.TrimSpace(rawLines); len(t) == 0 || t[0] != '[' || json.Unmarshal(t, &lines) != nil {
		return b, caseError("bad lines " + rawText(rawLines))
	}
	if len(lines) == 0 {
		return b, caseError("bill has no lines")
	}
	b.Lines = make([]Line, len(lines))
	for i, rl := range lines {
		lo, err := decodeObject("", rl)
		if err != nil {
			return b, caseError("bad line " + rawText(rl))
		}
		rawClass, ok := lo.m["class"]
		if !ok {
			return b, caseError("missing class")
		}
		class, isStr := jsonString(rawClass)
		if !isStr {
			return b, caseError("bad class " + rawText(rawClass))
		}
		if classIndex(class) < 0 {
			return b, caseError("bad class " + quote(shorten(class)))
		}
		amt, err := decodeAmount(lo.m["amount"])
		if err != nil {
			return b, err
		}
		b.Lines[i] = Line{Class: class, Amount: amt}
	}
	return b, nil
}

func decodeReferral(raw json.RawMessage) (*Referral, error) {
	ro, err := decodeObject("", raw)
	if err != nil {
		return nil, caseError("bad referral " + rawText(raw))
	}
	rawDir, ok := ro.m["direction"]
	if !ok {
		return nil, caseError("missing referral direction")
	}
	dir, isStr := jsonString(rawDir)
	if !isStr {
		return nil, caseError("bad referral direction " + rawText(rawDir))
	}
	ref := &Referral{Direction: dir}
	switch dir {
	case DirectionDown:
	case DirectionUp:
		if rp, ok := ro.m["prior_deductible_paid"]; ok && !isNull(rp) {
			d, err := decodeAmount(rp)
			if err != nil {
				return nil, err
			}
			ref.PriorDeductiblePaid = d
		}
	default:
		return nil, caseError("bad referral direction " + quote(shorten(dir)))
	}
	return ref, nil
}

// decodeAmount reads an amount: a JSON string matching ^\d+(\.\d{1,2})?$.
func decodeAmount(raw json.RawMessage) (decimal.Decimal, error) {
	if raw == nil {
		return decimal.Decimal{}, caseError("missing amount")
	}
	s, isStr := jsonString(raw)
	if !isStr {
		return decimal.Decimal{}, caseError("bad amount " + rawText(raw) + " (amounts are JSON strings)")
	}
	d, ok := ParseAmount(s)
	if !ok {
		return decimal.Decimal{}, caseError("bad amount " + quote(shorten(s)))
	}
	return d, nil
}
