package settlement

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/shopspring/decimal"

	"github.com/qinba/qinba/auth"
	"github.com/qinba/qinba/facility"
	"github.com/qinba/qinba/household"
	"github.com/qinba/qinba/internal/apperr"
	"github.com/qinba/qinba/internal/db"
	"github.com/qinba/qinba/referral"
)

// refs is what the checks of a bill against the database need: the persons,
// facilities and referrals it names. The API fills it through the owning
// packages' stores; the import in bulk.
type refs struct {
	persons    map[int64]string // person id → the region of their home village (their insurance pool)
	byNID      map[string]int64
	facilities map[string]facility.Facility
	referrals  map[int64]referral.Referral
}

// referralStates are the states in which a referral counts for settlement:
// the receiving facility accepted the patient.
var referralStates = map[referral.State]bool{referral.Accepted: true, referral.Scheduled: true, referral.Arrived: true, referral.Completed: true}

// checkRefs checks d against the database (persons, facility, kind and
// tier, referral) and fills its tier, region and referral fields. Problems
// name the field as in BillInput.
func (s *Service) checkRefs(d *draft, r *refs, add func(field, msg string)) {
	if d.NationalID != "" {
		id, ok := r.byNID[d.NationalID]
		switch {
		case !ok:
			add("national_id", "no person has this identity number")
		case d.PersonID != 0 && d.PersonID != id:
			add("person_id", "is not the person of national_id")
		default:
			d.PersonID = id
		}
	} else if _, ok := r.persons[d.PersonID]; !ok {
		add("person_id", fmt.Sprintf("person %d not found", d.PersonID))
	}
	fac, ok := r.facilities[d.Facility]
	if !ok {
		add("facility", fmt.Sprintf("unknown facility %q", d.Facility))
		return
	}
	// The policy is the patient's insurance pool's (参保地), wherever they
	// are treated: a county's patient in a city hospital is settled under the
	// county's policy at the city tier.
	d.Tier, d.Region = string(fac.Tier), r.persons[d.PersonID]
	var pol *Policy
	if !d.Date.IsZero() {
		pol, _ = s.reg.InForce(d.Region, d.Date)
	}
	if !tierAllowed(pol, d.Kind, d.Tier) {
		add("kind", tierProblem(fac, d.Kind))
	}
	if d.ReferralID == 0 {
		return
	}
	ref, ok := r.referrals[d.ReferralID]
	switch {
	case !ok:
		add("referral_id", fmt.Sprintf("referral %d not found", d.ReferralID))
	case ref.PersonID != d.PersonID:
		add("referral_id", fmt.Sprintf("referral %d is another person's", d.ReferralID))
	case ref.ToFacility != d.Facility:
		add("referral_id", fmt.Sprintf("referral %d goes to %s, not to %s", d.ReferralID, ref.ToFacility, d.Facility))
	case !referralStates[ref.State]:
		add("referral_id", fmt.Sprintf("referral %d is %s: only a referral the facility accepted counts", d.ReferralID, ref.State))
	case ref.Direction != referral.Up && ref.Direction != referral.Down:
		add("referral_id", fmt.Sprintf("referral %d is %s: only an upward or downward referral changes the settlement; leave referral_id empty", d.ReferralID, ref.Direction))
	default:
		d.RefDir, d.RefFrom = string(ref.Direction), ref.FromFacility
	}
}

// refsFor loads what checkRefs needs for one bill, through the owning
// packages' stores.
func (s *Service) refsFor(ctx context.Context, d db.DBTX, dr *draft) (*refs, error) {
	r := &refs{persons: map[int64]string{}, facilities: map[string]facility.Facility{}, referrals: map[int64]referral.Referral{}}
	if dr.PersonID > 0 {
		if p, err := household.NewStore().GetPerson(ctx, d, dr.PersonID); err == nil {
			village, err := facility.NewStore(d).Get(ctx, p.VillageCode)
			if err != nil {
				return nil, fmt.Errorf("home village of person %d: %w", p.ID, err)
			}
			r.persons[dr.PersonID] = village.RegionCode
		} else if !apperr.Is(err, apperr.NotFound) {
			return nil, err
		}
	}
	if f, err := facility.NewStore(d).Get(ctx, dr.Facility); err == nil {
		r.facilities[f.Code] = f
	} else if !apperr.Is(err, apperr.NotFound) {
		return nil, err
	}
	if dr.ReferralID > 0 {
		if ref, err := (referral.Store{}).Get(ctx, d, dr.ReferralID); err == nil {
			r.referrals[ref.ID] = ref
		} else if !apperr.Is(err, apperr.NotFound) {
			return nil, err
		}
	}
	return r, nil
}

// prepare checks a bill given as JSON for principal p: its own fields, the
// facility (the clerk's own; empty means it) and the references.
func (s *Service) prepare(ctx context.Context, p *auth.Principal, in *BillInput) (*draft, error) {
	d, probs := checkInput(in, s.now())
	if len(probs) > 0 {
		return nil, problemsErr(probs)
	}
	if d.Facility == "" {
		if p == nil {
			return nil, apperr.Field("facility", "required")
		}
		d.Facility = p.Facility
	}
	if p != nil && d.Facility != p.Facility {
		_ = auth.Audit(ctx, s.pool, auth.Entry{Action: "deny", RecordType: "bill", RecordID: "new", Facility: d.Facility,
			Detail: map[string]any{"reason": "facility scope"}})
		return nil, apperr.E(apperr.Forbidden, "a billing clerk records bills of their own facility (%s) only", p.Facility)
	}
	r, err := s.refsFor(ctx, s.pool, d)
	if err != nil {
		return nil, err
	}
	var more []problem
	s.checkRefs(d, r, func(f, m string) { more = append(more, problem{f, m}) })
	if len(more) > 0 {
		return nil, problemsErr(more)
	}
	d.contentHash = d.hash()
	return d, nil
}

func problemsErr(probs []problem) error {
	f := apperr.Fields{}
	for _, p := range probs {
		f.Add(p.Field, "%s", p.Msg)
	}
	return f.Err()
}

func dateArg(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t
}

func nonZero[T comparable](v T) any {
	var zero T
	if v == zero {
		return nil
	}
	return v
}

// lineArrays returns the lines as parallel text arrays for unnest.
func (d *draft) lineArrays() (codes, names, classes, qtys, prices, amts []string) {
	n := len(d.Lines)
	codes, names, classes = make([]string, n), make([]string, n), make([]string, n)
	qtys, prices, amts = make([]string, n), make([]string, n), make([]string, n)
	for i, l := range d.Lines {
		codes[i], names[i], classes[i] = l.Code, l.Name, l.Class
		qtys[i], prices[i], amts[i] = l.Qty.String(), l.Price.String(), l.Amt.StringFixed(2)
	}
	return
}

const insertLinesSQL = `INSERT INTO bill_line (bill_id, line_no, item_code, item_name, class, quantity, unit_price, amount)
	SELECT $1, x.n, x.code, x.name, x.class, x.qty::numeric, x.price::numeric, x.amt::numeric
	FROM unnest($2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[]) WITH ORDINALITY AS x(code, name, class, qty, price, amt, n)`

// CreateBill records a bill (POST /api/v1/bills). A bill with the external
// number of a stored bill of the facility is that bill: unchanged when its
// content is the same (created false), corrected (lines replaced, version +
// 1) when it differs and the bill is open or reversed, and a 409 when it is
// settled.
func (s *Service) CreateBill(ctx context.Context, p *auth.Principal, in *BillInput) (view BillView, created bool, err error) {
	d, err := s.prepare(ctx, p, in)
	if err != nil {
		return BillView{}, false, err
	}
	var id int64
	for attempt := 0; ; attempt++ {
		err = db.WithTx(ctx, s.pool, func(tx pgx.Tx) error {
			var err error
			id, created, err = s.writeBill(ctx, tx, p, d)
			return err
		})
		if err != nil && attempt == 0 && db.IsCode(err, db.CodeUniqueViolation) {
			continue // a concurrent request stored the same external number: see it
		}
		break
	}
	if err != nil {
		return BillView{}, false, err
	}
	view, err = s.billView(ctx, s.pool, id, false)
	return view, created, err
}

// writeBill stores d, or recognises it by its external number.
func (s *Service) writeBill(ctx context.Context, tx pgx.Tx, p *auth.Principal, d *draft) (int64, bool, error) {
	action := "create"
	var id int64
	if d.ExternalNo != "" {
		var status string
		var sum []byte
		ok, err := readOptional(tx.QueryRow(ctx, `SELECT b.id, bs.status, b.content_sha256 FROM bill b JOIN bill_state bs ON bs.bill_id = b.id
			WHERE b.facility_code = $1 AND b.external_no = $2 FOR UPDATE OF b`,
			d.Facility, d.ExternalNo), &id, &status, &sum)
		if err != nil {
			return 0, false, err
		}
		if ok {
			switch {
			case string(sum) == string(d.contentHash[:]):
				return id, false, nil
			case status == StatusSettled:
				return 0, false, &apperr.Error{Code: apperr.Conflict,
					Message: fmt.Sprintf("bill %s of %s (id %d) is settled: reverse its settlement before correcting it", d.ExternalNo, d.Facility, id),
					Details: map[string]any{"bill_id": id, "status": status}}
			}
			action = "update"
		}
	}
	codes, names, classes, qtys, prices, amts := d.lineArrays()
	var refID, refDir, refFrom any = nonZero(d.ReferralID), nonZero(d.RefDir), nonZero(d.RefFrom)
	if action == "create" {
		err := tx.QueryRow(ctx, `INSERT INTO bill (person_id, facility_code, tier, region_code, kind, admitted_on, discharged_on, visit_on,
				bill_date, emergency, referral_id, referral_direction, referral_from, external_no, total, line_count, content_sha256, source, created_by)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, 'api', $18) RETURNING id`,
			d.PersonID, d.Facility, d.Tier, d.Region, d.Kind, dateArg(d.Admitted), dateArg(d.Discharged), dateArg(d.Visit),
			d.Date, d.Emergency, refID, refDir, refFrom, nonZero(d.ExternalNo), d.Total, len(d.Lines), d.contentHash[:], userID(p)).Scan(&id)
		if err != nil {
			return 0, false, err
		}
		if _, err := tx.Exec(ctx, `INSERT INTO bill_state (bill_id) VALUES ($1)`, id); err != nil {
			return 0, false, err
		}
	} else {
		if _, err := tx.Exec(ctx, `UPDATE bill SET person_id = $2, tier = $3, region_code = $4, kind = $5, admitted_on = $6, discharged_on = $7,
				visit_on = $8, bill_date = $9, emergency = $10, referral_id = $11, referral_direction = $12, referral_from = $13, total = $14,
				line_count = $15, content_sha256 = $16, version = version + 1, updated_at = now()
			WHERE id = $1`, id, d.PersonID, d.Tier, d.Region, d.Kind, dateArg(d.Admitted), dateArg(d.Discharged), dateArg(d.Visit),
			d.Date, d.Emergency, refID, refDir, refFrom, d.Total, len(d.Lines), d.contentHash[:]); err != nil {
			return 0, false, err
		}
		if _, err := tx.Exec(ctx, `DELETE FROM bill_line WHERE bill_id = $1`, id); err != nil {
			return 0, false, err
		}
	}
	if _, err := tx.Exec(ctx, insertLinesSQL, id, codes, names, classes, qtys, prices, amts); err != nil {
		return 0, false, err
	}
	err := auth.Audit(ctx, tx, auth.Entry{Action: action, RecordType: "bill", RecordID: strconv.FormatInt(id, 10), Facility: d.Facility,
		Username: s.actor(p), Detail: map[string]any{"person_id": d.PersonID, "total": FormatMoney(d.Total), "lines": len(d.Lines)}})
	return id, action == "create", err
}

const billViewCols = `b.id, b.person_id, b.facility_code, b.tier, b.region_code, b.kind, b.admitted_on, b.discharged_on, b.visit_on,
	b.bill_date, b.emergency, coalesce(b.referral_id, 0), coalesce(b.referral_direction, ''), coalesce(b.referral_from, ''),
	coalesce(b.external_no, ''), bs.status, coalesce(bs.settlement_id, 0), b.version, b.total, b.created_at, greatest(b.updated_at, bs.updated_at)`

const billViewFrom = ` FROM bill b JOIN bill_state bs ON bs.bill_id = b.id`

func scanBillView(row pgx.Row) (BillView, error) {
	var v BillView
	var adm, dis, vis *time.Time
	var date time.Time
	var refDir, refFrom string
	err := row.Scan(&v.ID, &v.PersonID, &v.Facility, &v.Tier, &v.Region, &v.Kind, &adm, &dis, &vis, &date, &v.Emergency,
		&v.ReferralID, &refDir, &refFrom, &v.ExternalNo, &v.Status, &v.SettlementID, &v.Version, &v.Total.Decimal, &v.CreatedAt, &v.UpdatedAt)
	if err != nil {
		return v, err
	}
	if adm != nil {
		v.AdmittedOn = dayString(*adm)
	}
	if dis != nil {
		v.DischargedOn = dayString(*dis)
	}
	if vis != nil {
		v.VisitOn = dayString(*vis)
	}
	v.Date = dayString(date)
	if v.ReferralID != 0 {
		v.Referral = &ReferralInput{ID: v.ReferralID, Direction: refDir, FromFacility: refFrom}
	}
	return v, nil
}

// billView reads bill id with its lines and current settlement; history
// adds every settlement and reversal.
func (s *Service) billView(ctx context.Context, d db.DBTX, id int64, history bool) (BillView, error) {
	v, err := scanBillView(d.QueryRow(ctx, `SELECT `+billViewCols+billViewFrom+` WHERE b.id = $1`, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return v, apperr.E(apperr.NotFound, "bill %d not found", id)
	}
	if err != nil {
		return v, err
	}
	rows, err := d.Query(ctx, `SELECT line_no, item_code, item_name, class, quantity, unit_price, amount FROM bill_line WHERE bill_id = $1 ORDER BY line_no`, id)
	if err != nil {
		return v, err
	}
	for rows.Next() {
		var l LineView
		var q, pr decimal.Decimal
		if err := rows.Scan(&l.LineNo, &l.ItemCode, &l.Name, &l.Class, &q, &pr, &l.Amount.Decimal); err != nil {
			rows.Close()
			return v, err
		}
		l.Quantity, l.UnitPrice = q.String(), pr.String()
		v.Lines = append(v.Lines, l)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return v, err
	}
	if v.SettlementID != 0 {
		sv, err := s.settlementView(ctx, d, v.SettlementID)
		if err != nil {
			return v, err
		}
		v.Settlement = &sv
	}
	if history {
		rows, err := d.Query(ctx, `SELECT s.id, s.kind, s.posted_on, coalesce(s.reverses_id, 0),
				coalesce((SELECT r.id FROM settlement r WHERE r.reverses_id = s.id), 0), s.total, s.patient
			FROM settlement s WHERE s.bill_id = $1 ORDER BY s.id`, id)
		if err != nil {
			return v, err
		}
		defer rows.Close()
		for rows.Next() {
			var h SettlementSummary
			var posted time.Time
			if err := rows.Scan(&h.ID, &h.Kind, &posted, &h.Reverses, &h.ReversedBy, &h.Total.Decimal, &h.Patient.Decimal); err != nil {
				return v, err
			}
			h.PostedOn = dayString(posted)
			v.Settlements = append(v.Settlements, h)
		}
		if err := rows.Err(); err != nil {
			return v, err
		}
	}
	return v, nil
}

// settlementView reads settlement id with its journal lines.
func (s *Service) settlementView(ctx context.Context, d db.DBTX, id int64) (SettlementView, error) {
	var v SettlementView
	var billDate, posted time.Time
	var reason *string
	var input, result []byte
	err := d.QueryRow(ctx, `SELECT s.id, s.kind, s.bill_id, s.bill_version, s.person_id, s.facility_code, s.year, s.bill_date, s.posted_on,
			coalesce(s.reverses_id, 0), coalesce((SELECT r.id FROM settlement r WHERE r.reverses_id = s.id), 0), s.reason,
			s.policy_id, s.input, s.result, s.created_at
		FROM settlement s WHERE s.id = $1`, id).Scan(&v.ID, &v.Kind, &v.BillID, &v.BillVersion, &v.PersonID, &v.Facility, &v.Year,
		&billDate, &posted, &v.Reverses, &v.ReversedBy, &reason, &v.Policy, &input, &result, &v.CreatedAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return v, apperr.E(apperr.NotFound, "settlement %d not found", id)
	}
	if err != nil {
		return v, err
	}
	v.BillDate, v.PostedOn = dayString(billDate), dayString(posted)
	if reason != nil {
		v.Reason = *reason
	}
	if input != nil {
		v.Input = input
	}
	v.Result = result
	rows, err := d.Query(ctx, `SELECT account, debit, credit FROM journal_line WHERE settlement_id = $1 ORDER BY line_no`, id)
	if err != nil {
		return v, err
	}
	defer rows.Close()
	var lines []JournalLine
	for rows.Next() {
		var l JournalLine
		if err := rows.Scan(&l.Account, &l.Debit, &l.Credit); err != nil {
			return v, err
		}
		lines = append(lines, l)
	}
	v.Journal = journalView(lines)
	return v, rows.Err()
}

// checkScope answers 404 unless p may see bill (or settlement) id.
func (s *Service) checkScope(ctx context.Context, p *auth.Principal, what string, id int64) error {
	q := `SELECT facility_code FROM bill WHERE id = $1`
	if what == "settlement" {
		q = `SELECT facility_code FROM settlement WHERE id = $1`
	}
	var fac string
	if err := s.pool.QueryRow(ctx, q, id).Scan(&fac); err != nil {
		if errors.Is(err, pgx.ErrNoRows) {
			return apperr.E(apperr.NotFound, "%s %d not found", what, id)
		}
		return err
	}
	return s.scope.Check(ctx, p, auth.DenyNotFound, what, strconv.FormatInt(id, 10), fac)
}

// GetBill returns bill id with its lines, its settlement in force and its
// history, for p (the bill's facility, or an admin of its region; anyone
// else gets 404). The read is audited.
func (s *Service) GetBill(ctx context.Context, p *auth.Principal, id int64) (BillView, error) {
	v, err := s.billView(ctx, s.pool, id, true)
	if err != nil {
		return v, err
	}
	if err := s.scope.Check(ctx, p, auth.DenyNotFound, "bill", strconv.FormatInt(id, 10), v.Facility); err != nil {
		return BillView{}, err
	}
	return v, auth.Audit(ctx, s.pool, auth.Entry{Action: "read", RecordType: "bill", RecordID: strconv.FormatInt(id, 10),
		Facility: v.Facility, Detail: map[string]any{"person_id": v.PersonID}})
}

// GetSettlement returns settlement id for p (scope as GetBill). Audited.
func (s *Service) GetSettlement(ctx context.Context, p *auth.Principal, id int64) (SettlementView, error) {
	v, err := s.settlementView(ctx, s.pool, id)
	if err != nil {
		return v, err
	}
	if err := s.scope.Check(ctx, p, auth.DenyNotFound, "settlement", strconv.FormatInt(id, 10), v.Facility); err != nil {
		return SettlementView{}, err
	}
	return v, auth.Audit(ctx, s.pool, auth.Entry{Action: "read", RecordType: "settlement", RecordID: strconv.FormatInt(id, 10),
		Facility: v.Facility, Detail: map[string]any{"bill_id": v.BillID, "person_id": v.PersonID}})
}

// BillFilter narrows ListBills.
type BillFilter struct {
	PersonID int64
	Status   string
	Facility string
	Limit    int
	Offset   int
}

// BillList is the body of GET /api/v1/bills.
type BillList struct {
	Bills []BillView `json:"bills"`
}

// ListBills lists the bills p may see (their facility's; an admin's
// region's), newest date first. The read is audited with the ids returned.
func (s *Service) ListBills(ctx context.Context, p *auth.Principal, f BillFilter) (BillList, error) {
	fac, region := auth.ScopeFilter(p)
	rows, err := s.pool.Query(ctx, `SELECT `+billViewCols+billViewFrom+`
		WHERE ($1 = '' OR b.facility_code = $1) AND ($2 = '' OR b.facility_code IN (SELECT code FROM facility WHERE region_code = $2))
			AND ($3 = 0 OR b.person_id = $3) AND ($4 = '' OR bs.status = $4) AND ($5 = '' OR b.facility_code = $5)
		ORDER BY b.bill_date DESC, b.id DESC LIMIT $6 OFFSET $7`, fac, region, f.PersonID, f.Status, f.Facility, f.Limit, f.Offset)
	if err != nil {
		return BillList{}, err
	}
	defer rows.Close()
	out := BillList{Bills: []BillView{}}
	ids := []int64{}
	for rows.Next() {
		v, err := scanBillView(rows)
		if err != nil {
			return out, err
		}
		out.Bills = append(out.Bills, v)
		ids = append(ids, v.ID)
	}
	if err := rows.Err(); err != nil {
		return out, err
	}
	detail := map[string]any{"ids": ids, "count": len(ids)}
	if f.PersonID != 0 {
		detail["person_id"] = f.PersonID
	}
	facilityCode := ""
	if p != nil {
		facilityCode = p.Facility
	}
	return out, auth.Audit(ctx, s.pool, auth.Entry{Action: "read", RecordType: "bill", RecordID: "list", Facility: facilityCode,
		Username: s.actor(p), Detail: detail})
}

// Estimate is the answer of POST /api/v1/bills/estimate: what settling
// would give now, nothing written.
type Estimate struct {
	Estimate bool   `json:"estimate"` // always true
	BillID   int64  `json:"bill_id,omitempty"`
	Policy   string `json:"policy"`
	// Accumulators are the person's accumulators of the year the estimate
	// started from.
	Accumulators Accumulators    `json:"accumulators"`
	Input        json.RawMessage `json:"input"`
	Result       json.RawMessage `json:"result"`
}

// readOnly begins read-only transactions on a pool.
type readOnly struct{ s *Service }

func (r readOnly) Begin(ctx context.Context) (pgx.Tx, error) {
	return r.s.pool.BeginTx(ctx, pgx.TxOptions{AccessMode: pgx.ReadOnly})
}

// Estimate computes what settling a bill would give, without writing
// anything (a read-only transaction): the bill stored as billID, or the
// bill in given (checked as CreateBill checks it). p must be able to see
// the bill's facility (their own). The read is audited.
func (s *Service) Estimate(ctx context.Context, p *auth.Principal, given *BillInput, billID int64) (*Estimate, error) {
	var d *draft
	if given != nil {
		var err error
		if d, err = s.prepare(ctx, p, given); err != nil {
			return nil, err
		}
	}
	var out *Estimate
	var facilityCode string
	var personID int64
	err := db.WithTx(ctx, readOnly{s}, func(tx pgx.Tx) error {
		var st billState
		var lines []Line
		var prior decimal.Decimal
		if d == nil {
			var err error
			st, err = scanBillState(tx.QueryRow(ctx, `SELECT `+billStateCols+billStateFrom, billID))
			if errors.Is(err, pgx.ErrNoRows) {
				return apperr.E(apperr.NotFound, "bill %d not found", billID)
			}
			if err != nil {
				return err
			}
			if p != nil {
				if err := s.scope.Check(ctx, p, auth.DenyNotFound, "bill", strconv.FormatInt(billID, 10), st.Facility); err != nil {
					return err
				}
			}
			rows, err := tx.Query(ctx, `SELECT class, amount FROM bill_line WHERE bill_id = $1 ORDER BY line_no`, billID)
			if err != nil {
				return err
			}
			for rows.Next() {
				var l Line
				if err := rows.Scan(&l.Class, &l.Amount); err != nil {
					rows.Close()
					return err
				}
				lines = append(lines, l)
			}
			rows.Close()
			if err := rows.Err(); err != nil {
				return err
			}
			if _, err := readOptional(tx.QueryRow(ctx, priorByBill, billID), &prior); err != nil {
				return err
			}
		} else {
			st = billState{PersonID: d.PersonID, Facility: d.Facility, Tier: d.Tier, Region: d.Region, Kind: d.Kind, Date: d.Date,
				Emergency: d.Emergency, ReferralID: d.ReferralID, RefDir: d.RefDir, RefFrom: d.RefFrom}
			err := tx.QueryRow(ctx, `SELECT h.category, coalesce((SELECT insured FROM person_insurance WHERE person_id = p.id AND year = $2), false)
				FROM person p JOIN household h ON h.id = p.household_id WHERE p.id = $1`, d.PersonID, d.Date.Year()).Scan(&st.Category, &st.Insured)
			if err != nil {
				return err
			}
			lines = d.engineLines()
			if d.RefDir == DirectionUp {
				if _, err := readOptional(tx.QueryRow(ctx, priorByDraft, d.PersonID, d.RefFrom, d.Date), &prior); err != nil {
					return err
				}
			}
		}
		facilityCode, personID = st.Facility, st.PersonID
		var acc Accumulators
		if _, err := readOptional(tx.QueryRow(ctx, `SELECT `+accCols+` FROM accumulator a WHERE a.person_id = $1 AND a.year = $2`,
			st.PersonID, st.Date.Year()), acc.dest()...); err != nil {
			return err
		}
		person, bill := engineInput(&st, lines, prior)
		if d != nil {
			bill.ID = "estimate"
		}
		pol, res, _, err := s.compute(st.Region, person, acc, bill)
		if err != nil {
			return err
		}
		out = &Estimate{Estimate: true, BillID: billID, Policy: pol.ID(), Accumulators: acc}
		sum := s.reg.SHA256(pol)
		if out.Input, err = json.Marshal(Snapshot{Policy: pol.ID(), PolicySHA256: fmt.Sprintf("%x", sum[:]),
			Person: CasePerson{Category: person.Category, Insured: person.Insured}, Bill: caseBill(&bill)}); err != nil {
			return err
		}
		out.Result, err = json.Marshal(res)
		return err
	})
	if err != nil {
		return nil, err
	}
	rec := "draft"
	if billID != 0 {
		rec = strconv.FormatInt(billID, 10)
	}
	return out, auth.Audit(ctx, s.pool, auth.Entry{Action: "estimate", RecordType: "bill", RecordID: rec, Facility: facilityCode,
		Username: s.actor(p), Detail: map[string]any{"person_id": personID}})
}
