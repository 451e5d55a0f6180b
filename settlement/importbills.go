package settlement

import (
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/qinba/qinba/auth"
	"github.com/qinba/qinba/facility"
	"github.com/qinba/qinba/household"
	"github.com/qinba/qinba/internal/apperr"
	"github.com/qinba/qinba/internal/db"
	"github.com/qinba/qinba/referral"
)

// BillCSVHeader is the header of a bills CSV (UTF-8, optional BOM, LF or
// CRLF). One row per line item; the bill-level columns (external_no to
// referral_id) are repeated on every row of a bill and must be the same on
// each. A bill is identified by facility_code + external_no (required).
//
//	external_no    the facility's bill number, unique per facility: re-importing it is idempotent
//	facility_code  the billing facility (an import over HTTP: the clerk's own)
//	person_id      the patient's id, or empty when national_id is given
//	national_id    the patient's identity number, or empty when person_id is given
//	kind           inpatient | outpatient
//	admitted_on    YYYY-MM-DD (inpatient)
//	discharged_on  YYYY-MM-DD (inpatient; the bill's date)
//	visit_on       YYYY-MM-DD (outpatient; the bill's date)
//	emergency      true | false | 1 | 0 | empty (inpatient)
//	referral_id    the accepted referral the patient came through, or empty (inpatient)
//	item_code      the item's code
//	item_name      the item's name
//	class          A | B | C
//	quantity       > 0, at most 3 decimals
//	unit_price     yuan, at most 4 decimals
//	amount         yuan, at most 2 decimals, = round2(quantity × unit_price); empty: computed
var BillCSVHeader = []string{"external_no", "facility_code", "person_id", "national_id", "kind", "admitted_on", "discharged_on",
	"visit_on", "emergency", "referral_id", "item_code", "item_name", "class", "quantity", "unit_price", "amount"}

const (
	cExternal = iota
	cFacility
	cPerson
	cNationalID
	cKind
	cAdmitted
	cDischarged
	cVisit
	cEmergency
	cReferral
	cItemCode
	cItemName
	cClass
	cQuantity
	cUnitPrice
	cAmount
	nBillCols
	nHeaderCols = cItemCode // the bill-level columns come first
)

// columnOf maps a BillInput field (as checks name it) to its CSV column.
var columnOf = map[string]string{
	"person_id": "person_id", "national_id": "national_id", "facility": "facility_code", "kind": "kind",
	"admitted_on": "admitted_on", "discharged_on": "discharged_on", "visit_on": "visit_on", "emergency": "emergency",
	"referral_id": "referral_id", "external_no": "external_no", "lines": "item_code",
	"item_code": "item_code", "name": "item_name", "class": "class", "quantity": "quantity", "unit_price": "unit_price", "amount": "amount",
}

// RowError is one problem with one line of a bills CSV.
type RowError struct {
	Line   int    `json:"line"`
	Column string `json:"column,omitempty"`
	Reason string `json:"reason"`
}

// String renders the problem as the CLI prints it.
func (e RowError) String() string {
	if e.Column != "" {
		return fmt.Sprintf("line %d: %s: %s", e.Line, e.Column, e.Reason)
	}
	return fmt.Sprintf("line %d: %s", e.Line, e.Reason)
}

// Progress is told how an import advances (the CLI draws progress bars):
// "read", then "copy", then "write".
type Progress interface {
	Phase(name string, total int64)
	Set(done int64)
	Done()
}

type noProgress struct{}

func (noProgress) Phase(string, int64) {}
func (noProgress) Set(int64)           {}
func (noProgress) Done()               {}

// ImportOptions tune ImportBills.
type ImportOptions struct {
	// Facility, when set, is the only facility whose bills may be imported
	// (an import by a billing clerk over HTTP: theirs).
	Facility string
	// SkipInvalid writes the good bills and rejects the bad ones whole (a
	// bill with any bad line); without it any bad line rejects the file and
	// nothing is written.
	SkipInvalid bool
	Progress    Progress
}

// ImportCounts is what an import did to bills.
type ImportCounts struct {
	Added     int `json:"added"`
	Updated   int `json:"updated"`
	Unchanged int `json:"unchanged"`
	Rejected  int `json:"rejected"`
}

// ImportReport is the outcome of an import.
type ImportReport struct {
	// Rows is the number of data lines read.
	Rows int `json:"rows"`
	// Written is false when nothing was written.
	Written bool         `json:"written"`
	Bills   ImportCounts `json:"bills"`
	// Lines is the number of bill lines written.
	Lines  int        `json:"lines"`
	Errors []RowError `json:"errors"`

	header  []string
	rejects []importReject
}

type importReject struct {
	raw     []string
	line    int
	columns []string
	reasons []string
}

// Summary is the report as the CLI prints it.
func (r *ImportReport) Summary() string {
	var b strings.Builder
	if !r.Written {
		fmt.Fprintf(&b, "bills: REJECTED, nothing written (%d bad lines)\n", len(r.Errors))
	} else {
		fmt.Fprintf(&b, "bills: %d lines read, %d bill lines written\n", r.Rows, r.Lines)
	}
	fmt.Fprintf(&b, "bills %7d added %7d updated %7d unchanged %7d rejected\n", r.Bills.Added, r.Bills.Updated, r.Bills.Unchanged, r.Bills.Rejected)
	return b.String()
}

// Rejected is the number of lines not written.
func (r *ImportReport) Rejected() int { return len(r.rejects) }

// WriteRejects writes the lines not written as a CSV: the original columns,
// then line, column and reason (several problems of a line joined by "; ").
// It copies the input's lines (identity numbers included) for the clerk to
// fix and re-import; it is never logged or served.
func (r *ImportReport) WriteRejects(w io.Writer) error {
	cw := csv.NewWriter(w)
	if err := cw.Write(append(slices.Clone(BillCSVHeader), "line", "column", "reason")); err != nil {
		return err
	}
	for _, rj := range r.rejects {
		rec := make([]string, 0, nBillCols+3)
		for i := range nBillCols {
			if i < len(rj.raw) {
				rec = append(rec, rj.raw[i])
			} else {
				rec = append(rec, "")
			}
		}
		if len(rj.raw) > nBillCols {
			rec[nBillCols-1] = strings.Join(rj.raw[nBillCols-1:], ",")
		}
		rec = append(rec, strconv.Itoa(rj.line), strings.Join(rj.columns, ";"), strings.Join(rj.reasons, "; "))
		if err := cw.Write(rec); err != nil {
			return err
		}
	}
	cw.Flush()
	return cw.Error()
}

// ImportError is the cause of the apperr Invalid returned when bad lines
// reject the whole file; Report lists them.
type ImportError struct{ Report *ImportReport }

func (e *ImportError) Error() string {
	return fmt.Sprintf("%d bad lines, nothing written", len(e.Report.Errors))
}

// csvRow is one data line.
type csvRow struct {
	line int
	raw  []string
	ok   bool // the line passed its own checks
}

// importBill is one bill of the file.
type importBill struct {
	key   string // facility + "\x00" + external_no
	rows  []int  // indexes into rows
	d     *draft
	bad   bool
	first int // the line of its first row
}

// ImportBills loads a bills CSV (see BillCSVHeader) in one transaction:
// every line is checked (its fields, the lines of a bill together, the
// person, facility and referral, and the stored bill of the same number);
// without SkipInvalid any bad line rejects the whole file (the report lists
// every bad line; the error is an apperr Invalid wrapping *ImportError).
// The good bills are COPYed into staging tables and written set-wise: new
// bills inserted, changed ones corrected (only while not settled), bills
// equal to the stored ones left alone, so re-importing a file changes
// nothing. Imports of one facility are serialised. One audit entry records
// the import.
func (s *Service) ImportBills(ctx context.Context, p *auth.Principal, r io.Reader, opts ImportOptions) (*ImportReport, error) {
	prog := opts.Progress
	if prog == nil {
		prog = noProgress{}
	}
	rep := &ImportReport{Errors: []RowError{}}
	prog.Phase("read", -1)
	rows, err := readBillCSV(r, rep, func(n int) { prog.Set(int64(n)) })
	prog.Done()
	if err != nil {
		return nil, err
	}
	rep.Rows = len(rows)
	bills := s.checkRows(rows, opts, rep)
	if err := s.checkBillRefs(ctx, bills, rows, rep); err != nil {
		return nil, err
	}
	err = db.WithTx(ctx, s.pool, func(tx pgx.Tx) error {
		facs := map[string]bool{}
		for _, b := range bills {
			if b.d != nil {
				facs[b.d.Facility] = true
			}
		}
		codes := make([]string, 0, len(facs))
		for f := range facs {
			codes = append(codes, f)
		}
		sort.Strings(codes)
		for _, f := range codes {
			if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1, hashtext($2))`, importLockClass, f); err != nil {
				return err
			}
		}
		if _, err := tx.Exec(ctx, `SET LOCAL work_mem = '64MB'`); err != nil {
			return err
		}
		if err := stageBills(ctx, tx, bills, prog); err != nil {
			return err
		}
		prog.Phase("write", 3)
		if err := classifyStaged(ctx, tx, bills, rows, rep); err != nil {
			return err
		}
		prog.Set(1)
		s.collectRejects(bills, rows, rep)
		if len(rep.Errors) > 0 && !opts.SkipInvalid {
			return &ImportError{Report: rep}
		}
		if err := writeStaged(ctx, tx, p, rep); err != nil {
			return err
		}
		prog.Set(3)
		prog.Done()
		return auth.Audit(ctx, tx, auth.Entry{Action: "import", RecordType: "bill", Facility: opts.Facility, Username: s.actor(p),
			Detail: map[string]any{"rows": rep.Rows, "bills": rep.Bills, "lines": rep.Lines, "skip_invalid": opts.SkipInvalid}})
	})
	if err != nil {
		var ie *ImportError
		if errors.As(err, &ie) {
			prog.Done()
			rep.Bills.Added, rep.Bills.Updated, rep.Bills.Unchanged, rep.Lines = 0, 0, 0, 0
			return rep, &apperr.Error{Code: apperr.Invalid, Message: ie.Error(), Err: ie}
		}
		return nil, err
	}
	rep.Written = true
	return rep, nil
}

// importLockClass keys the advisory lock that serialises imports of one
// facility.
const importLockClass int32 = 0x716e6269 // "qnbi"

func headerError(msg string) error {
	return &apperr.Error{Code: apperr.Invalid, Message: "line 1: " + msg}
}

// readBillCSV reads the file; malformed lines are reported in rep.
func readBillCSV(r io.Reader, rep *ImportReport, progress func(int)) ([]*csvRow, error) {
	cr := csv.NewReader(r)
	cr.FieldsPerRecord = -1
	header, err := cr.Read()
	if errors.Is(err, io.EOF) {
		return nil, headerError("the file is empty: expected the header " + strings.Join(BillCSVHeader, ","))
	}
	if err != nil {
		var pe *csv.ParseError
		if errors.As(err, &pe) {
			return nil, headerError("cannot read the header: " + pe.Err.Error())
		}
		return nil, err
	}
	got := make([]string, len(header))
	for i, h := range header {
		got[i] = strings.TrimSpace(h)
	}
	if len(got) > 0 {
		got[0] = strings.TrimSpace(strings.TrimPrefix(got[0], "\ufeff"))
	}
	if !slices.Equal(got, BillCSVHeader) {
		g := strings.Join(got, ",")
		if len(g) > 200 {
			g = g[:200] + "…"
		}
		return nil, headerError(fmt.Sprintf("the header must be %s (got %s)", strings.Join(BillCSVHeader, ","), g))
	}
	rep.header = BillCSVHeader
	var rows []*csvRow
	for {
		rec, err := cr.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			var pe *csv.ParseError
			if !errors.As(err, &pe) {
				return nil, err
			}
			rows = append(rows, &csvRow{line: pe.StartLine})
			rep.Errors = append(rep.Errors, RowError{Line: pe.StartLine, Reason: "malformed CSV: " + pe.Err.Error()})
			continue
		}
		line, _ := cr.FieldPos(0)
		row := &csvRow{line: line, raw: rec}
		rows = append(rows, row)
		if len(rec) != nBillCols {
			rep.Errors = append(rep.Errors, RowError{Line: line, Reason: fmt.Sprintf("expected %d fields, got %d", nBillCols, len(rec))})
			continue
		}
		for i := range rec {
			rec[i] = strings.TrimSpace(rec[i])
		}
		row.ok = true
		if progress != nil && len(rows)%4096 == 0 {
			progress(len(rows))
		}
	}
	if progress != nil {
		progress(len(rows))
	}
	return rows, nil
}

// checkRows checks every line on its own and the lines of each bill
// together, and groups them into bills (in order of first appearance).
func (s *Service) checkRows(rows []*csvRow, opts ImportOptions, rep *ImportReport) []*importBill {
	now := s.now()
	var bills []*importBill
	byKey := map[string]*importBill{}
	for i, row := range rows {
		if !row.ok {
			continue
		}
		f := row.raw
		add := func(field, msg string) {
			col := columnOf[field]
			if col == "" {
				col = field
			}
			rep.Errors = append(rep.Errors, RowError{Line: row.line, Column: col, Reason: msg})
			row.ok = false
		}
		in := BillInput{Facility: f[cFacility], Kind: f[cKind], AdmittedOn: f[cAdmitted], DischargedOn: f[cDischarged],
			VisitOn: f[cVisit], ExternalNo: f[cExternal]}
		d := &draft{}
		if f[cPerson] != "" {
			id, err := strconv.ParseInt(f[cPerson], 10, 64)
			if err != nil || id <= 0 {
				add("person_id", fmt.Sprintf("bad person id %q", f[cPerson]))
			}
			in.PersonID = id
		}
		if f[cNationalID] != "" {
			d.NationalID = household.NormalizeNationalID(f[cNationalID])
			if len(d.NationalID) != household.NationalIDLen {
				add("national_id", "an identity number has 18 characters")
			}
		}
		if f[cPerson] == "" && f[cNationalID] == "" {
			add("person_id", "give person_id or national_id")
		}
		switch strings.ToLower(f[cEmergency]) {
		case "", "0", "false", "no":
		case "1", "true", "yes":
			in.Emergency = true
		default:
			add("emergency", fmt.Sprintf("bad value %q: true or false", f[cEmergency]))
		}
		if f[cReferral] != "" {
			id, err := strconv.ParseInt(f[cReferral], 10, 64)
			if err != nil || id <= 0 {
				add("referral_id", fmt.Sprintf("bad referral id %q", f[cReferral]))
			}
			in.ReferralID = id
		}
		if f[cExternal] == "" {
			add("external_no", "required in an import (it makes re-importing idempotent)")
		}
		if f[cFacility] == "" {
			add("facility", "required")
		} else if opts.Facility != "" && f[cFacility] != opts.Facility {
			add("facility", fmt.Sprintf("you may import bills of your own facility (%s) only", opts.Facility))
		}
		checkHeader(&in, now, d, func(field, msg string) {
			if field == "person_id" {
				return // checked above
			}
			add(field, msg)
		})
		line, _ := checkLine(&LineInput{ItemCode: f[cItemCode], Name: f[cItemName], Class: f[cClass], Quantity: f[cQuantity],
			UnitPrice: f[cUnitPrice], Amount: f[cAmount]}, "", add)

		key := f[cFacility] + "\x00" + f[cExternal]
		b := byKey[key]
		if b == nil {
			b = &importBill{key: key, first: i}
			byKey[key] = b
			bills = append(bills, b)
			if row.ok {
				b.d = d
			}
		} else {
			first := rows[b.first]
			for c := range nHeaderCols {
				if f[c] != first.raw[c] {
					add(BillCSVHeader[c], fmt.Sprintf("differs from line %d, the first line of bill %s (%q there)", first.line, f[cExternal], first.raw[c]))
				}
			}
			if len(b.rows) >= MaxLines {
				add("item_code", fmt.Sprintf("bill %s has more than %d lines", f[cExternal], MaxLines))
			}
		}
		b.rows = append(b.rows, i)
		if !row.ok {
			b.bad = true
			continue
		}
		if b.d != nil {
			b.d.Lines = append(b.d.Lines, line)
			b.d.Total = b.d.Total.Add(line.Amt)
		}
	}
	// A bill whose first line was bad has no header to check the others
	// against: it is rejected through that line.
	for _, b := range bills {
		if b.d == nil {
			b.bad = true
		}
	}
	return bills
}

// checkBillRefs checks the good bills against the database: persons,
// facilities, referrals (loaded in bulk).
func (s *Service) checkBillRefs(ctx context.Context, bills []*importBill, rows []*csvRow, rep *ImportReport) error {
	r := &refs{persons: map[int64]string{}, byNID: map[string]int64{}, facilities: map[string]facility.Facility{}, referrals: map[int64]referral.Referral{}}
	var ids, refIDs []int64
	var nids []string
	for _, b := range bills {
		if b.bad {
			continue
		}
		if b.d.NationalID != "" {
			nids = append(nids, b.d.NationalID)
		}
		if b.d.PersonID > 0 {
			ids = append(ids, b.d.PersonID)
		}
		if b.d.ReferralID > 0 {
			refIDs = append(refIDs, b.d.ReferralID)
		}
	}
	// Bulk reads of the person, facility and referral tables (read only;
	// their packages read one record at a time).
	q, err := s.pool.Query(ctx, `SELECT p.id, p.national_id, f.region_code
		FROM person p JOIN household h ON h.id = p.household_id JOIN facility f ON f.code = h.village_code
		WHERE p.id = ANY($1) OR p.national_id = ANY($2)`, ids, nids)
	if err != nil {
		return err
	}
	for q.Next() {
		var id int64
		var nid, region string
		if err := q.Scan(&id, &nid, &region); err != nil {
			q.Close()
			return err
		}
		r.persons[id] = region
		r.byNID[nid] = id
	}
	q.Close()
	if err := q.Err(); err != nil {
		return err
	}
	facs, err := facility.NewStore(s.pool).List(ctx, facility.Filter{Limit: 1 << 20})
	if err != nil {
		return err
	}
	for _, f := range facs {
		r.facilities[f.Code] = f
	}
	if len(refIDs) > 0 {
		q, err := s.pool.Query(ctx, `SELECT id, person_id, from_facility, to_facility, direction, state FROM referral WHERE id = ANY($1)`, refIDs)
		if err != nil {
			return err
		}
		for q.Next() {
			var ref referral.Referral
			if err := q.Scan(&ref.ID, &ref.PersonID, &ref.FromFacility, &ref.ToFacility, &ref.Direction, &ref.State); err != nil {
				q.Close()
				return err
			}
			r.referrals[ref.ID] = ref
		}
		q.Close()
		if err := q.Err(); err != nil {
			return err
		}
	}
	for _, b := range bills {
		if b.bad {
			continue
		}
		line := rows[b.first].line
		s.checkRefs(b.d, r, func(field, msg string) {
			rep.Errors = append(rep.Errors, RowError{Line: line, Column: columnOf[field], Reason: msg})
			b.bad = true
		})
		if !b.bad {
			b.d.contentHash = b.d.hash()
		}
	}
	return nil
}

// stageBills COPYs the good bills and their lines into temporary tables
// dropped at commit.
func stageBills(ctx context.Context, tx pgx.Tx, bills []*importBill, prog Progress) error {
	if _, err := tx.Exec(ctx, `CREATE TEMP TABLE bill_stage (
			seq int PRIMARY KEY, id bigint, action text, person_id bigint NOT NULL, facility_code text NOT NULL, tier text NOT NULL,
			region_code text NOT NULL, kind text NOT NULL, admitted_on date, discharged_on date, visit_on date, bill_date date NOT NULL,
			emergency boolean NOT NULL, referral_id bigint, referral_direction text, referral_from text, external_no text NOT NULL,
			total numeric NOT NULL, line_count int NOT NULL, content_sha256 bytea NOT NULL) ON COMMIT DROP;
		CREATE TEMP TABLE bill_line_stage (seq int NOT NULL, line_no int NOT NULL, item_code text NOT NULL, item_name text NOT NULL,
			class text NOT NULL, quantity numeric NOT NULL, unit_price numeric NOT NULL, amount numeric NOT NULL) ON COMMIT DROP`); err != nil {
		return err
	}
	var good []*importBill
	nLines := 0
	for _, b := range bills {
		if !b.bad {
			good = append(good, b)
			nLines += len(b.d.Lines)
		}
	}
	prog.Phase("copy", int64(len(good)+nLines))
	i := 0
	src := pgx.CopyFromFunc(func() ([]any, error) {
		if i == len(good) {
			return nil, nil
		}
		d := good[i].d
		i++
		if i%4096 == 0 {
			prog.Set(int64(i))
		}
		return []any{int32(i), nonZero(int64(0)), nil, d.PersonID, d.Facility, d.Tier, d.Region, d.Kind, dateArg(d.Admitted),
			dateArg(d.Discharged), dateArg(d.Visit), d.Date, d.Emergency, nonZero(d.ReferralID), nonZero(d.RefDir), nonZero(d.RefFrom),
			d.ExternalNo, d.Total, int32(len(d.Lines)), d.contentHash[:]}, nil
	})
	if _, err := tx.CopyFrom(ctx, pgx.Identifier{"bill_stage"}, []string{"seq", "id", "action", "person_id", "facility_code", "tier",
		"region_code", "kind", "admitted_on", "discharged_on", "visit_on", "bill_date", "emergency", "referral_id", "referral_direction",
		"referral_from", "external_no", "total", "line_count", "content_sha256"}, src); err != nil {
		return fmt.Errorf("copy bills: %w", err)
	}
	bi, li, done := 0, 0, len(good)
	lsrc := pgx.CopyFromFunc(func() ([]any, error) {
		for bi < len(good) && li == len(good[bi].d.Lines) {
			bi, li = bi+1, 0
		}
		if bi == len(good) {
			return nil, nil
		}
		l := good[bi].d.Lines[li]
		li++
		if done++; done%8192 == 0 {
			prog.Set(int64(done))
		}
		return []any{int32(bi + 1), int32(li), l.Code, l.Name, l.Class, l.Qty, l.Price, l.Amt}, nil
	})
	if _, err := tx.CopyFrom(ctx, pgx.Identifier{"bill_line_stage"}, []string{"seq", "line_no", "item_code", "item_name", "class",
		"quantity", "unit_price", "amount"}, lsrc); err != nil {
		return fmt.Errorf("copy bill lines: %w", err)
	}
	prog.Set(int64(len(good) + nLines))
	prog.Done()
	// Remember which staged seq is which bill.
	for n, b := range good {
		b.d.stageSeq = n + 1
	}
	return nil
}

// classifyStaged matches the staged bills with the stored ones (locking
// those): unchanged, to update, or settled (a row error: a settled bill is
// never changed).
func classifyStaged(ctx context.Context, tx pgx.Tx, bills []*importBill, rows []*csvRow, rep *ImportReport) error {
	if _, err := tx.Exec(ctx, `SELECT 1 FROM bill b JOIN bill_stage s ON s.facility_code = b.facility_code AND s.external_no = b.external_no
		ORDER BY b.id FOR UPDATE OF b`); err != nil {
		return err
	}
	if _, err := tx.Exec(ctx, `UPDATE bill_stage s SET id = b.id, action = CASE WHEN b.content_sha256 = s.content_sha256 THEN 'unchanged'
			WHEN bs.status = 'settled' THEN 'settled' ELSE 'update' END
		FROM bill b JOIN bill_state bs ON bs.bill_id = b.id
		WHERE b.facility_code = s.facility_code AND b.external_no = s.external_no`); err != nil {
		return err
	}
	if _, err := tx.Exec(ctx, `UPDATE bill_stage SET action = 'new' WHERE action IS NULL`); err != nil {
		return err
	}
	q, _ := tx.Query(ctx, `SELECT seq, id FROM bill_stage WHERE action = 'settled' ORDER BY seq`)
	settled := map[int]int64{}
	var seq int
	var id int64
	if _, err := pgx.ForEachRow(q, []any{&seq, &id}, func() error { settled[seq] = id; return nil }); err != nil {
		return err
	}
	for _, b := range bills {
		if b.bad {
			continue
		}
		if id, ok := settled[b.d.stageSeq]; ok {
			rep.Errors = append(rep.Errors, RowError{Line: rows[b.first].line, Column: "external_no",
				Reason: fmt.Sprintf("bill %s (id %d) is settled and this file changes it: reverse its settlement before correcting it", b.d.ExternalNo, id)})
			b.bad = true
		}
	}
	return nil
}

// collectRejects sorts the errors and lists the rejected lines: every bad
// line and every line of a bill with a bad line.
func (s *Service) collectRejects(bills []*importBill, rows []*csvRow, rep *ImportReport) {
	sort.SliceStable(rep.Errors, func(i, j int) bool { return rep.Errors[i].Line < rep.Errors[j].Line })
	byLine := map[int][]RowError{}
	for _, e := range rep.Errors {
		byLine[e.Line] = append(byLine[e.Line], e)
	}
	rejected := map[int]bool{}
	for _, b := range bills {
		if !b.bad {
			continue
		}
		rep.Bills.Rejected++
		firstBad := 0
		for _, i := range b.rows {
			if len(byLine[rows[i].line]) > 0 {
				firstBad = rows[i].line
				break
			}
		}
		for _, i := range b.rows {
			rejected[i] = true
			if len(byLine[rows[i].line]) == 0 {
				byLine[rows[i].line] = []RowError{{Line: rows[i].line, Column: "external_no",
					Reason: fmt.Sprintf("bill %s is rejected whole: line %d is bad", rows[i].raw[cExternal], firstBad)}}
			}
		}
	}
	for i, row := range rows {
		es := byLine[row.line]
		if len(es) == 0 && !rejected[i] {
			continue
		}
		rj := importReject{raw: row.raw, line: row.line}
		for _, e := range es {
			rj.columns = append(rj.columns, e.Column)
			rj.reasons = append(rj.reasons, e.Reason)
		}
		rep.rejects = append(rep.rejects, rj)
	}
}

// writeStaged writes the staged bills that are good: new ones inserted,
// changed ones corrected (version + 1, lines replaced), and counts them.
func writeStaged(ctx context.Context, tx pgx.Tx, p *auth.Principal, rep *ImportReport) error {
	err := tx.QueryRow(ctx, `SELECT count(*) FILTER (WHERE action = 'new'), count(*) FILTER (WHERE action = 'update'),
		count(*) FILTER (WHERE action = 'unchanged') FROM bill_stage`).Scan(&rep.Bills.Added, &rep.Bills.Updated, &rep.Bills.Unchanged)
	if err != nil {
		return err
	}
	if _, err := tx.Exec(ctx, `WITH ins AS (
			INSERT INTO bill (person_id, facility_code, tier, region_code, kind, admitted_on, discharged_on, visit_on, bill_date, emergency,
				referral_id, referral_direction, referral_from, external_no, total, line_count, content_sha256, source, created_by)
			SELECT person_id, facility_code, tier, region_code, kind, admitted_on, discharged_on, visit_on, bill_date, emergency,
				referral_id, referral_direction, referral_from, external_no, total, line_count, content_sha256, 'import', $1
			FROM bill_stage WHERE action = 'new' ORDER BY seq
			RETURNING id, facility_code, external_no)
		UPDATE bill_stage s SET id = ins.id FROM ins
		WHERE s.action = 'new' AND s.facility_code = ins.facility_code AND s.external_no = ins.external_no`, userID(p)); err != nil {
		return fmt.Errorf("insert bills: %w", err)
	}
	if _, err := tx.Exec(ctx, `INSERT INTO bill_state (bill_id) SELECT id FROM bill_stage WHERE action = 'new'`); err != nil {
		return fmt.Errorf("insert bills: %w", err)
	}
	if _, err := tx.Exec(ctx, `UPDATE bill b SET person_id = s.person_id, tier = s.tier, region_code = s.region_code, kind = s.kind,
			admitted_on = s.admitted_on, discharged_on = s.discharged_on, visit_on = s.visit_on, bill_date = s.bill_date,
			emergency = s.emergency, referral_id = s.referral_id, referral_direction = s.referral_direction, referral_from = s.referral_from,
			total = s.total, line_count = s.line_count, content_sha256 = s.content_sha256, version = b.version + 1, updated_at = now()
		FROM bill_stage s WHERE s.action = 'update' AND b.id = s.id`); err != nil {
		return fmt.Errorf("correct bills: %w", err)
	}
	if _, err := tx.Exec(ctx, `DELETE FROM bill_line l USING bill_stage s WHERE s.action = 'update' AND l.bill_id = s.id`); err != nil {
		return err
	}
	tag, err := tx.Exec(ctx, `INSERT INTO bill_line (bill_id, line_no, item_code, item_name, class, quantity, unit_price, amount)
		SELECT s.id, l.line_no, l.item_code, l.item_name, l.class, l.quantity, l.unit_price, l.amount
		FROM bill_line_stage l JOIN bill_stage s ON s.seq = l.seq WHERE s.action IN ('new', 'update')`)
	if err != nil {
		return fmt.Errorf("insert bill lines: %w", err)
	}
	rep.Lines = int(tag.RowsAffected())
	return nil
}
