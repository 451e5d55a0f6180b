package settlement

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	pgxdecimal "github.com/jackc/pgx-shopspring-decimal"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/shopspring/decimal"

	"github.com/qinba/qinba/auth"
	"github.com/qinba/qinba/internal/apperr"
	"github.com/qinba/qinba/internal/db"
)

// Service is the settlement service: bills, settling and reversing them,
// estimates, the ledger, the monthly clearing and household statements, on
// PostgreSQL. Its methods take the principal they act for (nil: a trusted
// caller such as the CLI) and check its facility scope; routes check roles.
type Service struct {
	pool  *pgxpool.Pool
	log   *slog.Logger
	reg   *Registry
	scope *auth.Scope
	now   func() time.Time
	// Actor names the writer in the audit log when there is no principal
	// (e.g. "cli"); default "system".
	Actor string

	stored sync.Map    // [32]byte policy hash → stored in settlement_policy
	queue  settleQueue // settle requests waiting for a group (group.go)
}

// NewService returns the service on pool with the policies of reg.
func NewService(pool *pgxpool.Pool, log *slog.Logger, reg *Registry) *Service {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Service{pool: pool, log: log, reg: reg, scope: &auth.Scope{DB: pool, Log: log}, now: time.Now, Actor: "system"}
}

// SetClock replaces the clock (tests); "today" is read in China.
func (s *Service) SetClock(now func() time.Time) { s.now = now }

// Registry returns the policies the service settles with.
func (s *Service) Registry() *Registry { return s.reg }

func (s *Service) actor(p *auth.Principal) string {
	if p != nil {
		return ""
	}
	return s.Actor
}

func userID(p *auth.Principal) any {
	if p == nil || p.UserID == 0 {
		return nil
	}
	return p.UserID
}

// SettlementView is a settlement (or reversal) as the API shows it.
type SettlementView struct {
	ID          int64  `json:"id"`
	Kind        string `json:"kind"` // "settle" or "reverse"
	BillID      int64  `json:"bill_id"`
	BillVersion int    `json:"bill_version"`
	PersonID    int64  `json:"person_id"`
	Facility    string `json:"facility"`
	// Year is the calendar year of the bill's date: the year of the
	// accumulators and of the insurance enrolment.
	Year     int    `json:"year"`
	BillDate string `json:"bill_date"`
	// PostedOn is the accounting date the ledger and the clearing use.
	PostedOn   string `json:"posted_on"`
	Reverses   int64  `json:"reverses,omitempty"`
	ReversedBy int64  `json:"reversed_by,omitempty"`
	Reason     string `json:"reason,omitempty"`
	Policy     string `json:"policy"`
	// Input is what the engine was given (settlements only): the person,
	// the bill in the conformance-case form of SPEC.md, the policy.
	Input json.RawMessage `json:"input,omitempty"`
	// Result is the engine's result: the split, the accumulator delta and
	// the bilingual trace.
	Result    json.RawMessage   `json:"result,omitempty"`
	Journal   []JournalLineView `json:"journal"`
	CreatedAt time.Time         `json:"created_at"`
}

// encode renders v as JSON. The engine's input and result are spliced in
// as they are (they are compact JSON already): encoding/json would check
// and compact those kilobytes again.
func (v *SettlementView) encode() ([]byte, error) {
	head := *v
	head.Input, head.Result = nil, nil
	b, err := json.Marshal(head)
	if err != nil {
		return nil, err
	}
	out := make([]byte, 0, len(b)+len(v.Input)+len(v.Result)+24)
	out = append(out, b[:len(b)-1]...)
	if len(v.Input) > 0 {
		out = append(out, `,"input":`...)
		out = append(out, v.Input...)
	}
	out = append(out, `,"result":`...)
	out = append(out, v.Result...)
	return append(out, '}'), nil
}

// JournalLineView is one line of a settlement's journal entry.
type JournalLineView struct {
	Account string `json:"account"`
	Label   Label  `json:"label"`
	Debit   Money  `json:"debit"`
	Credit  Money  `json:"credit"`
}

func journalView(lines []JournalLine) []JournalLineView {
	out := make([]JournalLineView, len(lines))
	for i, l := range lines {
		out[i] = JournalLineView{Account: l.Account, Label: accountLabel(l.Account), Debit: M(l.Debit), Credit: M(l.Credit)}
	}
	return out
}

func accountLabel(code string) Label {
	for _, a := range Chart {
		if a.Code == code {
			return a.Label
		}
	}
	return Label{code, code}
}

// Snapshot is the engine's input of a settlement, stored with it so that
// `qinba verify` can replay it: the person, the bill in the conformance-case
// form of SPEC.md (a case of settle-cases can be built from it) and the
// policy (id and SHA-256 of its source, kept in settlement_policy).
type Snapshot struct {
	Policy       string     `json:"policy"`
	PolicySHA256 string     `json:"policy_sha256"`
	Person       CasePerson `json:"person"`
	Bill         CaseBill   `json:"bill"`
}

// CasePerson is the person of a conformance case.
type CasePerson struct {
	Category string `json:"category"`
	Insured  bool   `json:"insured"`
}

// CaseBill is a bill of a conformance case.
type CaseBill struct {
	ID        string        `json:"id"`
	Date      string        `json:"date"`
	Kind      string        `json:"kind"`
	Tier      string        `json:"tier"`
	Emergency bool          `json:"emergency,omitempty"`
	Referral  *CaseReferral `json:"referral,omitempty"`
	Lines     []CaseLine    `json:"lines"`
}

// CaseReferral is the referral of a conformance-case bill.
type CaseReferral struct {
	Direction           string `json:"direction"`
	PriorDeductiblePaid *Money `json:"prior_deductible_paid,omitempty"`
}

// CaseLine is a line of a conformance-case bill.
type CaseLine struct {
	Class  string `json:"class"`
	Amount Money  `json:"amount"`
}

// caseBill returns b in the conformance-case form.
func caseBill(b *Bill) CaseBill {
	cb := CaseBill{ID: b.ID, Date: b.Date.Format(time.DateOnly), Kind: b.Kind, Tier: b.Tier, Emergency: b.Emergency,
		Lines: make([]CaseLine, len(b.Lines))}
	if b.Referral != nil {
		cb.Referral = &CaseReferral{Direction: b.Referral.Direction}
		if b.Referral.Direction == DirectionUp {
			m := M(b.Referral.PriorDeductiblePaid)
			cb.Referral.PriorDeductiblePaid = &m
		}
	}
	for i, l := range b.Lines {
		cb.Lines[i] = CaseLine{Class: l.Class, Amount: M(l.Amount)}
	}
	return cb
}

// Bill returns the engine's bill.
func (c CaseBill) Bill() (Bill, error) {
	date, ok := parseDate(c.Date)
	if !ok {
		return Bill{}, fmt.Errorf("bad date %q", c.Date)
	}
	b := Bill{ID: c.ID, Date: date, Kind: c.Kind, Tier: c.Tier, Emergency: c.Emergency, Lines: make([]Line, len(c.Lines))}
	if c.Referral != nil {
		b.Referral = &Referral{Direction: c.Referral.Direction}
		if c.Referral.PriorDeductiblePaid != nil {
			b.Referral.PriorDeductiblePaid = c.Referral.PriorDeductiblePaid.Decimal
		}
	}
	for i, l := range c.Lines {
		b.Lines[i] = Line{Class: l.Class, Amount: l.Amount.Decimal}
	}
	return b, nil
}

// Settled is the outcome of Settle or Reverse.
type Settled struct {
	Settlement SettlementView
	// Body is the response as first sent; a retry with the same
	// Idempotency-Key gets it again, byte for byte.
	Body []byte
	// Replayed is true when Body is the stored answer to an earlier
	// request with the same key.
	Replayed bool

	policy [32]byte // the policy settled under (settlements only)
}

// SettleOptions tune Settle.
type SettleOptions struct {
	// Key is the request's Idempotency-Key ("" for none; a key needs a
	// principal, the keys are per user).
	Key string
	// Version, when not 0, is the bill version the clerk looked at: a bill
	// corrected since is not settled (409).
	Version int
}

// clearingLockClass is the first key of the advisory lock that orders
// postings of a facility against its clearing (the second is the hash of
// the facility code): settlements take it shared, a clearing run exclusive.
const clearingLockClass int32 = 0x716e6263 // "qnbc"

// errReplayed ends a transaction that only found a stored answer.
var errReplayed = errors.New("replayed")

// idemKey is a request's idempotency key and fingerprint.
type idemKey struct {
	user   int64
	key    string
	op     string
	target int64
	hash   []byte
}

func newIdemKey(p *auth.Principal, key, op string, target int64, body string) (*idemKey, error) {
	if key == "" {
		return nil, nil
	}
	if p == nil || p.UserID == 0 {
		return nil, errors.New("settlement: an idempotency key needs a principal")
	}
	if len(key) > 200 {
		return nil, apperr.Field("Idempotency-Key", "at most 200 characters")
	}
	h := sha256.Sum256([]byte(op + "\x00" + strconv.FormatInt(target, 10) + "\x00" + body))
	return &idemKey{user: p.UserID, key: key, op: op, target: target, hash: h[:]}, nil
}

// queue queues the read of what is stored under the key. It is queued
// right after the statement that locks the bill: a concurrent request with
// the same key for the same bill waits on that lock until the first one
// commits, and then finds its answer here.
func (k *idemKey) queue(b *pgx.Batch) {
	b.Queue(`SELECT operation, target_id, request_sha256, settlement_id FROM settlement_idempotency WHERE user_id = $1 AND key = $2`, k.user, k.key)
}

// read reads the result of queue: 0 when the key is unused, the
// settlement an earlier request with this key wrote, or a 409 when the key
// was used for another request.
func (k *idemKey) read(br pgx.BatchResults) (int64, error) {
	var r idemRow
	if _, err := readOptional(br.QueryRow(), &r.op, &r.target, &r.hash, &r.settlement); err != nil {
		return 0, err
	}
	return k.check(r)
}

// idemRow is what is stored under a key (op empty: nothing).
type idemRow struct {
	op         string
	target     int64
	hash       []byte
	settlement int64
}

// check is read for a row fetched by another statement.
func (k *idemKey) check(r idemRow) (int64, error) {
	if r.op == "" {
		return 0, nil
	}
	if r.op != k.op || r.target != k.target || string(r.hash) != string(k.hash) {
		return 0, &apperr.Error{Code: apperr.Conflict,
			Message: "this Idempotency-Key was already used for a different request; use a new key for a new request",
			Details: map[string]any{"operation": r.op, "target_id": r.target}}
	}
	return r.settlement, nil
}

// The key is stored with the settlement it wrote, by the statement that
// writes it (settlementRow.idemCTE). Two requests with the same key for
// different targets are not serialised by a bill lock: the second one's
// insert waits for the first and then fails on the primary key; Settle and
// Reverse then run it again, and it finds the key taken.

// keyRace reports whether err is a concurrent request's claim of the same
// Idempotency-Key (run the request again: it will find the key).
func keyRace(err error) bool {
	return db.IsCode(err, db.CodeUniqueViolation) && db.ConstraintName(err) == "settlement_idempotency_pkey"
}

// billState is what settling reads about a bill.
type billState struct {
	ID           int64
	PersonID     int64
	Facility     string
	Tier         string
	Region       string
	Kind         string
	Date         time.Time
	Emergency    bool
	ReferralID   int64
	RefDir       string
	RefFrom      string
	Status       string
	SettlementID int64
	Version      int
	Category     string
	Insured      bool
}

const billStateCols = `b.id, b.person_id, b.facility_code, b.tier, b.region_code, b.kind, b.bill_date, b.emergency,
	coalesce(b.referral_id, 0), coalesce(b.referral_direction, ''), coalesce(b.referral_from, ''), bs.status,
	coalesce(bs.settlement_id, 0), b.version, h.category, coalesce(i.insured, false)`

const billStateFrom = ` FROM bill b JOIN bill_state bs ON bs.bill_id = b.id
	JOIN person p ON p.id = b.person_id JOIN household h ON h.id = p.household_id
	LEFT JOIN person_insurance i ON i.person_id = b.person_id AND i.year = extract(year FROM b.bill_date)::int
	WHERE b.id = $1`

func scanBillState(row pgx.Row) (billState, error) {
	var b billState
	err := row.Scan(b.dest()...)
	return b, err
}

// dest is where a row of billStateCols scans to.
func (b *billState) dest() []any {
	return []any{&b.ID, &b.PersonID, &b.Facility, &b.Tier, &b.Region, &b.Kind, &b.Date, &b.Emergency,
		&b.ReferralID, &b.RefDir, &b.RefFrom, &b.Status, &b.SettlementID, &b.Version, &b.Category, &b.Insured}
}

const accCols = `a.admissions, a.outpatient_paid, a.basic_paid, a.critical_base, a.critical_paid, a.assistance_paid,
	a.supplementary_paid, a.backstop_paid, a.patient_in_policy`

func scanAcc(row pgx.Row) (Accumulators, error) {
	var a Accumulators
	err := row.Scan(a.dest()...)
	return a, err
}

// dest is where a row of accCols scans to. The amounts scan as
// pgxdecimal.Decimal (the same type): pgx decodes a binary numeric straight
// into it, while a *decimal.Decimal, being an sql.Scanner, would be handed
// the number formatted as text and parse it back.
func (a *Accumulators) dest() []any {
	return []any{&a.Admissions, pgDec(&a.OutpatientPaid), pgDec(&a.BasicPaid), pgDec(&a.CriticalBase), pgDec(&a.CriticalPaid),
		pgDec(&a.AssistancePaid), pgDec(&a.SupplementaryPaid), pgDec(&a.BackstopPaid), pgDec(&a.PatientInPolicy)}
}

func pgDec(d *decimal.Decimal) *pgxdecimal.Decimal { return (*pgxdecimal.Decimal)(d) }

// priorDeductibleSQL finds, for a bill referred up, the deductible borne in
// the referring stay: the latest settled, not reversed, inpatient stay of
// the person at the referral's sending facility in the same year, dated on
// or before the bill (another bill than this one). src is a CTE "b" giving
// person_id, referral_from, bill_date and id.
func priorDeductibleSQL(src string) string {
	return `WITH b AS (` + src + `)
		SELECT s.deductible FROM b JOIN settlement s ON s.person_id = b.person_id AND s.facility_code = b.referral_from
			AND s.year = extract(year FROM b.bill_date)::int
		WHERE s.kind = 'settle' AND s.bill_kind = 'inpatient' AND s.bill_date <= b.bill_date AND s.bill_id <> b.id
			AND NOT EXISTS (SELECT 1 FROM settlement r WHERE r.reverses_id = s.id)
		ORDER BY s.bill_date DESC, s.id DESC LIMIT 1`
}

var (
	priorByBill  = priorDeductibleSQL(`SELECT person_id, referral_from, bill_date, id FROM bill WHERE id = $1 AND referral_direction = 'up'`)
	priorByDraft = priorDeductibleSQL(`SELECT $1::bigint AS person_id, $2::text AS referral_from, $3::date AS bill_date, 0::bigint AS id`)
)

// readOptional scans a row that may be missing: ok is false on no rows.
func readOptional(row pgx.Row, dst ...any) (bool, error) {
	err := row.Scan(dst...)
	if errors.Is(err, pgx.ErrNoRows) {
		return false, nil
	}
	return err == nil, err
}

// monthOf returns the first day of t's month.
func monthOf(t time.Time) time.Time { return time.Date(t.Year(), t.Month(), 1, 0, 0, 0, 0, time.UTC) }

// postingDate returns the accounting date of an entry dated date: date
// itself, unless its month is cleared for the facility, then the first day
// of the first later month that is not (cleared lists the facility's
// cleared months from date's month on, ascending).
func postingDate(date time.Time, cleared []time.Time) time.Time {
	m, posted := monthOf(date), date
	for _, c := range cleared {
		c = monthOf(c)
		if c.Before(m) {
			continue
		}
		if !c.Equal(m) {
			break
		}
		m = m.AddDate(0, 1, 0)
		posted = m
	}
	return posted
}

// engineInput builds the engine's bill and person for a bill.
func engineInput(st *billState, lines []Line, prior decimal.Decimal) (Person, Bill) {
	b := Bill{ID: strconv.FormatInt(st.ID, 10), Date: st.Date, Kind: st.Kind, Tier: st.Tier, Emergency: st.Emergency, Lines: lines}
	if st.RefDir != "" {
		b.Referral = &Referral{Direction: st.RefDir}
		if st.RefDir == DirectionUp {
			b.Referral.PriorDeductiblePaid = prior
		}
	}
	return Person{Category: st.Category, Insured: st.Insured}, b
}

// compute picks the policy in force for the bill and settles it.
func (s *Service) compute(region string, person Person, acc Accumulators, bill Bill) (*Policy, Result, Accumulators, error) {
	pol, err := s.reg.InForce(region, bill.Date)
	if err != nil {
		return nil, Result{}, acc, err
	}
	res, next, err := pol.Settle(person, acc, bill)
	if err != nil {
		var ve *ValidationError
		if errors.As(err, &ve) {
			return nil, Result{}, acc, &apperr.Error{Code: apperr.Conflict, Err: err,
				Message: fmt.Sprintf("bill %s cannot be settled under policy %s: %s", bill.ID, pol.ID(), ve.Error())}
		}
		return nil, Result{}, acc, err
	}
	return pol, res, next, nil
}

// args collects the parameters of a statement and names them $1, $2, ...
type args []any

func (a *args) add(v any) string {
	*a = append(*a, v)
	return "$" + strconv.Itoa(len(*a))
}

// row is what insertSettlement writes.
type settlementRow struct {
	ID          int64
	Kind        string
	BillID      int64
	BillVersion int
	PersonID    int64
	Facility    string
	Year        int
	BillDate    time.Time
	PostedOn    time.Time
	Reverses    int64
	Reason      string
	PolicySHA   []byte
	PolicyID    string
	BillKind    string
	Tier        string
	Category    string
	Insured     bool
	Result      *Result
	ResultJSON  []byte
	InputJSON   []byte
	CreatedBy   any
	CreatedAt   time.Time
	Idem        *idemKey     // the request's key, stored with the row (nil: none)
	Audit       []any        // the audit_log row written with it (auth.Entry.Row; nil: none)
	Acc         Accumulators // the person-year's accumulators after this row
	BillStatus  string       // the bill's status after this row
	BillCurrent int64        // the bill's settlement in force after this row (0: none)
	Journal     []JournalLine
}

// queueInsert queues the one statement that writes a settlement: the row,
// its journal entry and lines, the person-year's accumulators, the bill's
// status, and (when set) the idempotency record and the audit entry.
func (r *settlementRow) queueInsert(b *pgx.Batch) {
	var a args
	res := r.Result
	d := res.Delta
	id := a.add(r.ID)
	createdAt := a.add(r.CreatedAt)
	var reverses any
	if r.Reverses != 0 {
		reverses = r.Reverses
	}
	var reason any
	if r.Reason != "" {
		reason = r.Reason
	}
	var input any
	if r.InputJSON != nil {
		input = r.InputJSON
	}
	vals := []string{id, a.add(r.Kind), a.add(r.BillID), a.add(r.BillVersion), a.add(r.PersonID), a.add(r.Facility), a.add(r.Year),
		a.add(r.BillDate), a.add(r.PostedOn), a.add(reverses), a.add(reason), a.add(r.PolicySHA), a.add(r.PolicyID),
		a.add(r.BillKind), a.add(r.Tier), a.add(r.Category), a.add(r.Insured),
		a.add(res.Total), a.add(res.Eligible), a.add(res.Deductible), a.add(res.Basic), a.add(res.Critical), a.add(res.Assistance),
		a.add(res.Supplementary), a.add(res.Backstop), a.add(res.Hospital), a.add(res.Patient),
		a.add(d.Admissions), a.add(d.OutpatientPaid), a.add(d.BasicPaid), a.add(d.CriticalBase), a.add(d.CriticalPaid),
		a.add(d.AssistancePaid), a.add(d.SupplementaryPaid), a.add(d.BackstopPaid), a.add(d.PatientInPolicy),
		a.add(input), a.add(r.ResultJSON), a.add(r.CreatedBy), createdAt}
	// Amounts go as decimals, not strings: pgx sends a decimal as a binary
	// numeric, while a string for a numeric[] parameter first fails the
	// binary encoding (building an error) and is then sent as text.
	accounts := make([]string, len(r.Journal))
	debits := make([]decimal.Decimal, len(r.Journal))
	credits := make([]decimal.Decimal, len(r.Journal))
	for i, l := range r.Journal {
		accounts[i], debits[i], credits[i] = l.Account, l.Debit, l.Credit
	}
	memo := r.memo()
	acc := r.Acc
	var current any
	if r.BillCurrent != 0 {
		current = r.BillCurrent
	}
	sql := `WITH s AS (
		INSERT INTO settlement (id, kind, bill_id, bill_version, person_id, facility_code, year, bill_date, posted_on, reverses_id, reason,
			policy_sha256, policy_id, bill_kind, tier, category, insured,
			total, eligible, deductible, basic, critical, assistance, supplementary, backstop, hospital, patient,
			d_admissions, d_outpatient_paid, d_basic_paid, d_critical_base, d_critical_paid, d_assistance_paid,
			d_supplementary_paid, d_backstop_paid, d_patient_in_policy, input, result, created_by, created_at)
		VALUES (` + joinComma(vals) + `)
		RETURNING id, facility_code, posted_on),
	e AS (
		INSERT INTO journal_entry (settlement_id, facility_code, posted_on, memo, created_at)
		SELECT id, facility_code, posted_on, ` + a.add(memo) + `, ` + createdAt + ` FROM s),
	l AS (
		INSERT INTO journal_line (settlement_id, line_no, account, debit, credit)
		SELECT ` + id + `, x.n::smallint, x.account, x.debit, x.credit
		FROM unnest(` + a.add(accounts) + `::text[], ` + a.add(debits) + `::numeric[], ` + a.add(credits) + `::numeric[])
			WITH ORDINALITY AS x(account, debit, credit, n)),
` + r.idemCTE(&a, id) + r.auditCTE(&a) + `
	a AS (
		UPDATE accumulator SET admissions = ` + a.add(acc.Admissions) + `, outpatient_paid = ` + a.add(acc.OutpatientPaid) +
		`, basic_paid = ` + a.add(acc.BasicPaid) + `, critical_base = ` + a.add(acc.CriticalBase) +
		`, critical_paid = ` + a.add(acc.CriticalPaid) + `, assistance_paid = ` + a.add(acc.AssistancePaid) +
		`, supplementary_paid = ` + a.add(acc.SupplementaryPaid) + `, backstop_paid = ` + a.add(acc.BackstopPaid) +
		`, patient_in_policy = ` + a.add(acc.PatientInPolicy) + `, last_settlement_id = ` + id + `, updated_at = ` + createdAt + `
		WHERE person_id = ` + vals[4] + ` AND year = ` + vals[6] + `)
	UPDATE bill_state SET status = ` + a.add(r.BillStatus) + `, settlement_id = ` + a.add(current) + `, updated_at = ` + createdAt + `
	WHERE bill_id = ` + vals[2]
	b.Queue(sql, a...)
}

// idemCTE is the part of the insert that stores the request's key with
// the settlement it wrote ("" without a key).
func (r *settlementRow) idemCTE(a *args, id string) string {
	k := r.Idem
	if k == nil {
		return ""
	}
	return `	k AS (
		INSERT INTO settlement_idempotency (user_id, key, operation, target_id, request_sha256, settlement_id)
		SELECT ` + a.add(k.user) + `, ` + a.add(k.key) + `, ` + a.add(k.op) + `, ` + a.add(k.target) + `, ` + a.add(k.hash) + `, id FROM s),`
}

// auditCTE is the part of the insert that writes its audit entry (""
// without one).
func (r *settlementRow) auditCTE(a *args) string {
	if r.Audit == nil {
		return ""
	}
	vals := make([]string, len(r.Audit))
	for i, v := range r.Audit {
		vals[i] = a.add(v)
	}
	return `	au AS (INSERT INTO audit_log (` + auth.AuditColumns + `) VALUES (` + joinComma(vals) + `)),
`
}

// memo is the journal entry's text.
func (r *settlementRow) memo() string {
	if r.Reverses != 0 {
		return fmt.Sprintf("reverse settlement %d of bill %d", r.Reverses, r.BillID)
	}
	return fmt.Sprintf("%s bill %d (%s %s)", r.Kind, r.BillID, r.BillKind, r.BillDate.Format(time.DateOnly))
}

func joinComma(ss []string) string {
	n := 0
	for _, s := range ss {
		n += len(s) + 2
	}
	out := make([]byte, 0, n)
	for i, s := range ss {
		if i > 0 {
			out = append(out, ',', ' ')
		}
		out = append(out, s...)
	}
	return string(out)
}

// view returns the API view of a freshly written row.
func (r *settlementRow) view() SettlementView {
	v := SettlementView{ID: r.ID, Kind: r.Kind, BillID: r.BillID, BillVersion: r.BillVersion, PersonID: r.PersonID,
		Facility: r.Facility, Year: r.Year, BillDate: r.BillDate.Format(time.DateOnly), PostedOn: r.PostedOn.Format(time.DateOnly),
		Reverses: r.Reverses, Reason: r.Reason, Policy: r.PolicyID, Result: r.ResultJSON, Journal: journalView(r.Journal),
		CreatedAt: r.CreatedAt.UTC()}
	if r.InputJSON != nil {
		v.Input = r.InputJSON
	}
	return v
}

// queuePolicy queues storing policy p (once per process).
func (s *Service) queuePolicy(b *pgx.Batch, p *Policy) (sum [32]byte, queued bool) {
	sum = s.reg.SHA256(p)
	if _, ok := s.stored.Load(sum); ok {
		return sum, false
	}
	b.Queue(`INSERT INTO settlement_policy (sha256, policy_id, region_code, valid_from, valid_to, source) VALUES ($1, $2, $3, $4, $5, $6)
		ON CONFLICT DO NOTHING`, sum[:], p.ID(), p.Region(), p.ValidFrom(), p.ValidTo(), string(p.source))
	return sum, true
}

// Settle settles bill billID: the policy in force on the bill's date in its
// facility's region, the person's category and insurance for the year, the
// person's accumulators of the year and the referral's input, in one
// transaction that also writes the journal entry, the new accumulators and
// (with a key) the idempotency record. Settlements of one person and year
// serialise on their accumulator row. A bill already settled is a 409
// (reverse it first); a key reused for another request is a 409; a request
// repeated with its key gets the first answer.
func (s *Service) Settle(ctx context.Context, p *auth.Principal, billID int64, opts SettleOptions) (*Settled, error) {
	k, err := newIdemKey(p, opts.Key, "settle", billID, strconv.Itoa(opts.Version))
	if err != nil {
		return nil, err
	}
	for attempt := 0; ; attempt++ {
		op := &settleOp{ctx: ctx, p: p, billID: billID, version: opts.Version, k: k}
		s.settleGrouped(op)
		if attempt == 0 && keyRace(op.err) {
			continue
		}
		return op.out, op.err
	}
}

// planSettings fixes how the rest of a settlement's transaction is planned
// (a condition, so that it rides on one of its statements): on the indexes,
// and with each statement's plan made once per connection and kept.
// Without the first, a plan made while a table was still empty (a new
// database, a day's first settlements) would scan it whole ever after, and
// each settlement would cost more than the one before; every lookup of a
// settlement is by key. Without the second, PostgreSQL plans a statement
// that takes an array (the set-wise reads of a group) anew at every
// execution: measured with pg_stat_statements, planning cost more than
// running them, about 1.2 ms per group.
const planSettings = "set_config('enable_seqscan', 'off', true) = 'off' AND set_config('plan_cache_mode', 'force_generic_plan', true) IS NOT NULL"

// txConn is what a settle group (groupTx, which opens and commits its own
// transaction) and a replay run on: a connection or a pool.
type txConn interface {
	SendBatch(ctx context.Context, b *pgx.Batch) pgx.BatchResults
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// markStored notes, after commit, that the policy of a settlement is in
// settlement_policy.
func (s *Service) markStored(out *Settled) {
	if out.policy != ([32]byte{}) {
		s.stored.Store(out.policy, true)
	}
}

// replayed answers a repeated request with what it first got: the
// settlement it wrote, rendered from the stored row exactly as it was first
// sent (the row never changes; the engine's result and input read back and
// written again give the same JSON, byte for byte).
func (s *Service) replayed(ctx context.Context, d txConn, id int64) (*Settled, error) {
	var r settlementRow
	var res Result
	var reverses *int64
	var reason *string
	var input, result []byte
	err := d.QueryRow(ctx, `SELECT id, kind, bill_id, bill_version, person_id, facility_code, year, bill_date, posted_on, reverses_id,
			reason, policy_id, input, result, created_at
		FROM settlement WHERE id = $1`, id).Scan(&r.ID, &r.Kind, &r.BillID, &r.BillVersion, &r.PersonID, &r.Facility, &r.Year,
		&r.BillDate, &r.PostedOn, &reverses, &reason, &r.PolicyID, &input, &result, &r.CreatedAt)
	if err != nil {
		return nil, fmt.Errorf("stored answer (settlement %d): %w", id, err)
	}
	if reverses != nil {
		r.Reverses = *reverses
	}
	if reason != nil {
		r.Reason = *reason
	}
	if err := json.Unmarshal(result, &res); err != nil {
		return nil, fmt.Errorf("stored answer (settlement %d): %w", id, err)
	}
	r.ResultJSON = appendResultJSON(nil, &res)
	if input != nil {
		var snap Snapshot
		if err := json.Unmarshal(input, &snap); err != nil {
			return nil, fmt.Errorf("stored answer (settlement %d): %w", id, err)
		}
		if r.InputJSON, err = json.Marshal(snap); err != nil {
			return nil, err
		}
	}
	r.Journal = JournalLines(&res)
	out := &Settled{Settlement: r.view(), Replayed: true}
	if out.Body, err = out.Settlement.encode(); err != nil {
		return nil, err
	}
	return out, nil
}

// ReverseRequest is the body of POST /settlements/{id}/reverse.
type ReverseRequest struct {
	// Reason says why (required, at most 500 characters).
	Reason string `json:"reason"`
	// Date is the day of the reversal (YYYY-MM-DD); empty means today. It
	// may not be before the settlement's accounting date, nor in the future.
	Date string `json:"date,omitempty"`
}

// Reverse reverses settlement id (退费 / 冲正): a new settlement row with the
// split negated, the person-year's accumulators restored by exactly what
// the settlement added (engine Reverse), the mirror journal entry, and the
// bill back to "reversed" (it may be corrected and settled again). The
// original is kept. Reversing a reversal, or a settlement already
// reversed, is a 409.
func (s *Service) Reverse(ctx context.Context, p *auth.Principal, settlementID int64, req ReverseRequest, key string) (*Settled, error) {
	reason, msg := cleanText(req.Reason, 500)
	if msg != "" {
		return nil, apperr.Field("reason", "%s", msg)
	}
	day := today(s.now())
	if req.Date != "" {
		d, msg := parseDay(req.Date, s.now())
		if msg != "" {
			return nil, apperr.Field("date", "%s", msg)
		}
		day = d
	}
	k, err := newIdemKey(p, key, "reverse", settlementID, reason+"\x00"+req.Date)
	if err != nil {
		return nil, err
	}
	var out *Settled
	for attempt := 0; ; attempt++ {
		err = db.WithTx(ctx, s.pool, func(tx pgx.Tx) error {
			var err error
			out, err = s.reverseTx(ctx, tx, p, settlementID, reason, day, k)
			if err == nil && out.Replayed {
				return errReplayed
			}
			return err
		})
		if attempt == 0 && keyRace(err) {
			continue
		}
		break
	}
	if errors.Is(err, errReplayed) {
		err = nil
	}
	if err != nil {
		return nil, err
	}
	return out, nil
}

func (s *Service) reverseTx(ctx context.Context, tx pgx.Tx, p *auth.Principal, sid int64, reason string, day time.Time, k *idemKey) (*Settled, error) {
	// The same locking order as settling: clearing lock, bill, accumulators.
	b := &pgx.Batch{}
	b.Queue(`SELECT `+planSettings+`, pg_advisory_xact_lock_shared($2, hashtext(facility_code)) FROM settlement WHERE id = $1`, sid, clearingLockClass)
	b.Queue(`SELECT bs.status, coalesce(bs.settlement_id, 0) FROM bill b JOIN bill_state bs ON bs.bill_id = b.id
		WHERE b.id = (SELECT bill_id FROM settlement WHERE id = $1) FOR UPDATE OF b`, sid)
	if k != nil {
		k.queue(b)
	}
	b.Queue(`SELECT `+accCols+` FROM accumulator a JOIN settlement s ON a.person_id = s.person_id AND a.year = s.year
		WHERE s.id = $1 FOR UPDATE OF a`, sid)
	b.Queue(`SELECT s.kind, s.bill_id, s.bill_version, s.person_id, s.facility_code, s.year, s.bill_date, s.posted_on, s.policy_sha256,
			s.policy_id, s.bill_kind, s.tier, s.category, s.insured, s.result,
			coalesce((SELECT r.id FROM settlement r WHERE r.reverses_id = s.id), 0),
			coalesce((SELECT array_agg(c.period ORDER BY c.period) FROM clearing_facility c
				WHERE c.facility_code = s.facility_code AND c.period >= date_trunc('month', $2::date)::date), '{}'),
			nextval('settlement_id_seq')
		FROM settlement s WHERE s.id = $1`, sid, day)

	var (
		replay                 int64
		billStatus             string
		billCurrent            int64
		acc                    Accumulators
		orig                   settlementRow
		resultJSON             []byte
		reversedBy             int64
		found                  bool
		cleared                []time.Time
		id                     int64
		origKind, origCategory string
	)
	err := func() error {
		br := tx.SendBatch(ctx, b)
		defer br.Close()
		if _, err := br.Exec(); err != nil {
			return err
		}
		ok, err := readOptional(br.QueryRow(), &billStatus, &billCurrent)
		if err != nil || !ok {
			return err
		}
		found = true
		if k != nil {
			if replay, err = k.read(br); err != nil || replay != 0 {
				return err
			}
		}
		if acc, err = scanAcc(br.QueryRow()); err != nil {
			return fmt.Errorf("accumulators: %w", err)
		}
		return br.QueryRow().Scan(&origKind, &orig.BillID, &orig.BillVersion, &orig.PersonID, &orig.Facility, &orig.Year,
			&orig.BillDate, &orig.PostedOn, &orig.PolicySHA, &orig.PolicyID, &orig.BillKind, &orig.Tier, &origCategory,
			&orig.Insured, &resultJSON, &reversedBy, &cleared, &id)
	}()
	if err != nil {
		return nil, err
	}
	if replay != 0 {
		return s.replayed(ctx, tx, replay)
	}
	if !found {
		return nil, apperr.E(apperr.NotFound, "settlement %d not found", sid)
	}
	if p != nil {
		if err := s.scope.Check(ctx, p, auth.DenyNotFound, "settlement", strconv.FormatInt(sid, 10), orig.Facility); err != nil {
			return nil, err
		}
	}
	switch {
	case origKind != "settle":
		return nil, &apperr.Error{Code: apperr.Conflict, Message: fmt.Sprintf("settlement %d is itself a reversal: it cannot be reversed", sid),
			Details: map[string]any{"kind": origKind}}
	case reversedBy != 0:
		return nil, &apperr.Error{Code: apperr.Conflict, Message: fmt.Sprintf("settlement %d is already reversed (by %d)", sid, reversedBy),
			Details: map[string]any{"reversed_by": reversedBy, "bill_status": billStatus}}
	case billStatus != StatusSettled || billCurrent != sid:
		return nil, fmt.Errorf("settlement %d is not reversed but bill %d is %s with settlement %d", sid, orig.BillID, billStatus, billCurrent)
	case day.Before(orig.PostedOn):
		return nil, apperr.Field("date", "before the settlement's accounting date %s", orig.PostedOn.Format(time.DateOnly))
	}
	var res Result
	if err := json.Unmarshal(resultJSON, &res); err != nil {
		return nil, fmt.Errorf("settlement %d: stored result: %w", sid, err)
	}
	rev, next, err := Reverse(res, acc)
	if err != nil {
		return nil, fmt.Errorf("reverse settlement %d of person %d, year %d: %w", sid, orig.PersonID, orig.Year, err)
	}
	row := &settlementRow{ID: id, Kind: "reverse", BillID: orig.BillID, BillVersion: orig.BillVersion, PersonID: orig.PersonID,
		Facility: orig.Facility, Year: orig.Year, BillDate: orig.BillDate, PostedOn: postingDate(day, cleared), Reverses: sid,
		Reason: reason, PolicySHA: orig.PolicySHA, PolicyID: orig.PolicyID, BillKind: orig.BillKind, Tier: orig.Tier,
		Category: origCategory, Insured: orig.Insured, Result: &rev, CreatedBy: userID(p), CreatedAt: s.now().Truncate(time.Microsecond), Acc: next,
		BillStatus: StatusReversed, Journal: JournalLines(&rev), Idem: k}
	row.ResultJSON = appendResultJSON(nil, &rev)
	if row.Audit, err = (auth.Entry{Action: "reverse", RecordType: "settlement", RecordID: strconv.FormatInt(sid, 10),
		Facility: orig.Facility, Username: s.actor(p), Detail: map[string]any{"bill_id": orig.BillID, "person_id": orig.PersonID,
			"reversal_id": id, "reason": reason, "total": FormatMoney(res.Total)}}).Row(ctx); err != nil {
		return nil, err
	}
	b = &pgx.Batch{}
	row.queueInsert(b)
	out := &Settled{Settlement: row.view()}
	if out.Body, err = out.Settlement.encode(); err != nil {
		return nil, err
	}
	if err := tx.SendBatch(ctx, b).Close(); err != nil {
		return nil, fmt.Errorf("write reversal: %w", err)
	}
	return out, nil
}
