package settlement

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/shopspring/decimal"

	"github.com/qinba/qinba/internal/db"
)

// VerifyError names the first mismatch Verify found.
type VerifyError struct {
	// Check is which proof failed: "journal balance", "journal vs
	// settlements", "bill status", "replay" or "accumulators".
	Check string
	// Detail says where and what, e.g. "settlement 42: basic stored 120.00,
	// replay gives 118.50".
	Detail string
}

func (e *VerifyError) Error() string { return "verify: " + e.Check + ": " + e.Detail }

// VerifyStats is what Verify checked.
type VerifyStats struct {
	JournalEntries int64
	JournalLines   int64
	Debits         decimal.Decimal
	Credits        decimal.Decimal
	Settlements    int
	Reversals      int
	PersonYears    int
	Accumulators   int
}

// Verify proves the settlement books consistent, and returns a
// *VerifyError naming the first mismatch otherwise:
//
//  1. every journal entry balances, and so does the journal as a whole;
//  2. every settlement and reversal has exactly one entry, at its facility
//     and accounting date, whose net per account is its split (so the
//     journal's totals per fund equal the settlements' totals per fund,
//     which is also checked on its own);
//  3. every bill's status agrees with its settlements (settled: exactly one
//     settlement in force, the one it names; otherwise none);
//  4. replaying every settlement and reversal of each person and year
//     through the engine, in the order they were applied, from zero
//     accumulators, with the stored engine input and the stored policy
//     (checked against its SHA-256), gives each stored split and delta
//     exactly, and ends at the stored accumulators; accumulator rows without
//     settlements are zero.
//
// Verify reads only; run it on a quiet database (or accept that rows
// committed while it runs may be reported).
func Verify(ctx context.Context, d db.DBTX) error {
	_, err := VerifyWithStats(ctx, d)
	return err
}

// VerifyWithStats is Verify, also returning what it checked.
func VerifyWithStats(ctx context.Context, d db.DBTX) (VerifyStats, error) {
	var st VerifyStats
	fail := func(check, format string, args ...any) (VerifyStats, error) {
		return st, &VerifyError{Check: check, Detail: fmt.Sprintf(format, args...)}
	}

	// 1. Balance.
	var sid int64
	var dr, cr decimal.Decimal
	ok, err := readOptional(d.QueryRow(ctx, `SELECT e.settlement_id, coalesce(sum(l.debit), 0), coalesce(sum(l.credit), 0)
		FROM journal_entry e LEFT JOIN journal_line l ON l.settlement_id = e.settlement_id
		GROUP BY e.settlement_id HAVING coalesce(sum(l.debit), 0) <> coalesce(sum(l.credit), 0) ORDER BY 1 LIMIT 1`), &sid, &dr, &cr)
	if err != nil {
		return st, err
	}
	if ok {
		return fail("journal balance", "the entry of settlement %d: debits %s, credits %s", sid, FormatMoney(dr), FormatMoney(cr))
	}
	var orphan int64
	ok, err = readOptional(d.QueryRow(ctx, `SELECT l.settlement_id FROM journal_line l LEFT JOIN journal_entry e ON e.settlement_id = l.settlement_id
		WHERE e.settlement_id IS NULL ORDER BY 1 LIMIT 1`), &orphan)
	if err != nil {
		return st, err
	}
	if ok {
		return fail("journal balance", "journal lines of settlement %d, which has no journal entry", orphan)
	}
	if err := d.QueryRow(ctx, `SELECT (SELECT count(*) FROM journal_entry), count(*), coalesce(sum(debit), 0), coalesce(sum(credit), 0) FROM journal_line`).
		Scan(&st.JournalEntries, &st.JournalLines, &st.Debits, &st.Credits); err != nil {
		return st, err
	}
	if !st.Debits.Equal(st.Credits) {
		return fail("journal balance", "the journal as a whole: debits %s, credits %s", FormatMoney(st.Debits), FormatMoney(st.Credits))
	}

	// 2. Journal against settlements: per fund overall, then entry by entry.
	const split = `CROSS JOIN LATERAL (VALUES ('1221', s.basic), ('1222', s.critical), ('1223', s.assistance), ('1224', s.supplementary),
		('1225', s.backstop), ('1231', s.patient), ('5301', s.hospital), ('4101', -s.total)) AS x(account, amount)`
	var account string
	var stored, posted decimal.Decimal
	ok, err = readOptional(d.QueryRow(ctx, `WITH j AS (SELECT l.account, sum(l.debit - l.credit) AS net FROM journal_line l GROUP BY 1),
			x AS (SELECT x.account, sum(x.amount) AS amount FROM settlement s `+split+` GROUP BY 1)
		SELECT coalesce(x.account, j.account), coalesce(x.amount, 0), coalesce(j.net, 0)
		FROM x FULL JOIN j ON j.account = x.account WHERE coalesce(x.amount, 0) <> coalesce(j.net, 0) ORDER BY 1 LIMIT 1`),
		&account, &stored, &posted)
	if err != nil {
		return st, err
	}
	if ok {
		return fail("journal vs settlements", "account %s (%s): settlements %s, journal (debit − credit) %s",
			account, accountLabel(account).EN, FormatMoney(stored), FormatMoney(posted))
	}
	ok, err = readOptional(d.QueryRow(ctx, `SELECT s.id FROM settlement s JOIN bill b ON b.id = s.bill_id
			LEFT JOIN journal_entry e ON e.settlement_id = s.id
		WHERE e.settlement_id IS NULL OR e.facility_code <> s.facility_code OR e.posted_on <> s.posted_on OR s.facility_code <> b.facility_code
		ORDER BY s.id LIMIT 1`), &sid)
	if err != nil {
		return st, err
	}
	if ok {
		return fail("journal vs settlements", "settlement %d has no journal entry at its bill's facility and its accounting date", sid)
	}
	ok, err = readOptional(d.QueryRow(ctx, `WITH j AS (SELECT l.settlement_id, l.account, sum(l.debit - l.credit) AS net
				FROM journal_line l GROUP BY 1, 2),
			x AS (SELECT s.id, x.account, x.amount FROM settlement s `+split+`)
		SELECT coalesce(x.id, j.settlement_id), coalesce(x.account, j.account), coalesce(x.amount, 0), coalesce(j.net, 0)
		FROM x FULL JOIN j ON j.settlement_id = x.id AND j.account = x.account
		WHERE coalesce(x.amount, 0) <> coalesce(j.net, 0) ORDER BY 1, 2 LIMIT 1`), &sid, &account, &stored, &posted)
	if err != nil {
		return st, err
	}
	if ok {
		return fail("journal vs settlements", "settlement %d, account %s (%s): split %s, journal (debit − credit) %s",
			sid, account, accountLabel(account).EN, FormatMoney(stored), FormatMoney(posted))
	}

	// 3. Bill status.
	var bill int64
	var status string
	var current int64
	var inForce []int64
	ok, err = readOptional(d.QueryRow(ctx, `SELECT b.id, coalesce(bs.status, 'missing'), coalesce(bs.settlement_id, 0),
			coalesce(array_agg(s.id ORDER BY s.id) FILTER (WHERE s.kind = 'settle' AND r.id IS NULL), '{}')
		FROM bill b LEFT JOIN bill_state bs ON bs.bill_id = b.id
			LEFT JOIN settlement s ON s.bill_id = b.id LEFT JOIN settlement r ON r.reverses_id = s.id
		GROUP BY b.id, bs.status, bs.settlement_id
		HAVING NOT (CASE WHEN bs.status = 'settled' THEN count(s.id) FILTER (WHERE s.kind = 'settle' AND r.id IS NULL) = 1
				AND bs.settlement_id = max(s.id) FILTER (WHERE s.kind = 'settle' AND r.id IS NULL)
			WHEN bs.status IN ('open', 'reversed') THEN count(s.id) FILTER (WHERE s.kind = 'settle' AND r.id IS NULL) = 0
				AND (bs.status = 'reversed') = (count(s.id) > 0)
			ELSE false END)
		ORDER BY b.id LIMIT 1`), &bill, &status, &current, &inForce)
	if err != nil {
		return st, err
	}
	if ok {
		return fail("bill status", "bill %d is %s (settlement %d) but its settlements in force are %v", bill, status, current, inForce)
	}

	// 4. Replay.
	return st, replay(ctx, d, &st)
}

// replayRow is one settlement as replay reads it.
type replayRow struct {
	id, person, reverses int64
	year                 int
	kind                 string
	sha                  []byte
	input                []byte
	amounts              [10]decimal.Decimal
	delta                Accumulators
}

var amountNames = [10]string{"total", "eligible", "deductible", "basic", "critical", "assistance", "supplementary", "backstop", "hospital", "patient"}

func resultAmounts(r *Result) [10]decimal.Decimal {
	return [10]decimal.Decimal{r.Total, r.Eligible, r.Deductible, r.Basic, r.Critical, r.Assistance, r.Supplementary, r.Backstop, r.Hospital, r.Patient}
}

// personYear names an accumulator row.
type personYear struct {
	person int64
	year   int
}

func replay(ctx context.Context, d db.DBTX, st *VerifyStats) error {
	// The policies settlements were computed under, verbatim.
	policies := map[string]*Policy{}
	rows, err := d.Query(ctx, `SELECT sha256, policy_id, source FROM settlement_policy`)
	if err != nil {
		return err
	}
	for rows.Next() {
		var sum []byte
		var id, src string
		if err := rows.Scan(&sum, &id, &src); err != nil {
			rows.Close()
			return err
		}
		if h := sha256.Sum256([]byte(src)); string(h[:]) != string(sum) {
			rows.Close()
			return &VerifyError{Check: "replay", Detail: fmt.Sprintf("stored policy %s: its source does not match its SHA-256", id)}
		}
		p, err := ParsePolicy([]byte(src))
		if err != nil {
			rows.Close()
			return &VerifyError{Check: "replay", Detail: fmt.Sprintf("stored policy %s: %v", id, err)}
		}
		policies[string(sum)] = p
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}

	// The stored accumulators.
	accs := map[personYear]Accumulators{}
	rows, err = d.Query(ctx, `SELECT a.person_id, a.year, `+accCols+` FROM accumulator a`)
	if err != nil {
		return err
	}
	for rows.Next() {
		var k personYear
		var a Accumulators
		if err := rows.Scan(&k.person, &k.year, &a.Admissions, &a.OutpatientPaid, &a.BasicPaid, &a.CriticalBase, &a.CriticalPaid,
			&a.AssistancePaid, &a.SupplementaryPaid, &a.BackstopPaid, &a.PatientInPolicy); err != nil {
			rows.Close()
			return err
		}
		accs[k] = a
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	st.Accumulators = len(accs)

	rows, err = d.Query(ctx, `SELECT s.id, s.kind, s.person_id, s.year, coalesce(s.reverses_id, 0), s.policy_sha256, s.input::text,
			s.total, s.eligible, s.deductible, s.basic, s.critical, s.assistance, s.supplementary, s.backstop, s.hospital, s.patient,
			s.d_admissions, s.d_outpatient_paid, s.d_basic_paid, s.d_critical_base, s.d_critical_paid, s.d_assistance_paid,
			s.d_supplementary_paid, s.d_backstop_paid, s.d_patient_in_policy
		FROM settlement s ORDER BY s.person_id, s.year, s.id`)
	if err != nil {
		return err
	}
	defer rows.Close()
	var (
		cur     personYear
		started bool
		acc     Accumulators
		results = map[int64]Result{}
	)
	endGroup := func() error {
		if !started {
			return nil
		}
		st.PersonYears++
		stored, ok := accs[cur]
		if !ok {
			return &VerifyError{Check: "accumulators", Detail: fmt.Sprintf("person %d, year %d: settled but no accumulator row", cur.person, cur.year)}
		}
		delete(accs, cur)
		if !stored.Equal(acc) {
			return &VerifyError{Check: "accumulators", Detail: fmt.Sprintf("person %d, year %d: %s", cur.person, cur.year, accDiff(stored, acc))}
		}
		return nil
	}
	for rows.Next() {
		var r replayRow
		var input *string
		a := &r.amounts
		if err := rows.Scan(&r.id, &r.kind, &r.person, &r.year, &r.reverses, &r.sha, &input,
			&a[0], &a[1], &a[2], &a[3], &a[4], &a[5], &a[6], &a[7], &a[8], &a[9],
			&r.delta.Admissions, &r.delta.OutpatientPaid, &r.delta.BasicPaid, &r.delta.CriticalBase, &r.delta.CriticalPaid,
			&r.delta.AssistancePaid, &r.delta.SupplementaryPaid, &r.delta.BackstopPaid, &r.delta.PatientInPolicy); err != nil {
			return err
		}
		if input != nil {
			r.input = []byte(*input)
		}
		k := personYear{r.person, r.year}
		if !started || k != cur {
			if err := endGroup(); err != nil {
				return err
			}
			cur, started, acc = k, true, Accumulators{}
			clear(results)
		}
		var res Result
		var next Accumulators
		switch r.kind {
		case "settle":
			st.Settlements++
			pol := policies[string(r.sha)]
			if pol == nil {
				return &VerifyError{Check: "replay", Detail: fmt.Sprintf("settlement %d: its policy is not stored", r.id)}
			}
			var snap Snapshot
			if err := json.Unmarshal(r.input, &snap); err != nil {
				return &VerifyError{Check: "replay", Detail: fmt.Sprintf("settlement %d: stored input: %v", r.id, err)}
			}
			if snap.PolicySHA256 != fmt.Sprintf("%x", r.sha) {
				return &VerifyError{Check: "replay", Detail: fmt.Sprintf("settlement %d: its input names another policy", r.id)}
			}
			bill, err := snap.Bill.Bill()
			if err != nil {
				return &VerifyError{Check: "replay", Detail: fmt.Sprintf("settlement %d: stored input: %v", r.id, err)}
			}
			if bill.Date.Year() != r.year {
				return &VerifyError{Check: "replay", Detail: fmt.Sprintf("settlement %d: bill dated %s filed under year %d", r.id, snap.Bill.Date, r.year)}
			}
			res, next, err = pol.Settle(Person{Category: snap.Person.Category, Insured: snap.Person.Insured}, acc, bill)
			if err != nil {
				return &VerifyError{Check: "replay", Detail: fmt.Sprintf("settlement %d: the engine refuses its input: %v", r.id, err)}
			}
		case "reverse":
			st.Reversals++
			orig, ok := results[r.reverses]
			if !ok {
				return &VerifyError{Check: "replay", Detail: fmt.Sprintf("reversal %d reverses %d, which is not a settlement of the same person and year before it", r.id, r.reverses)}
			}
			var err error
			res, next, err = Reverse(orig, acc)
			if err != nil {
				return &VerifyError{Check: "replay", Detail: fmt.Sprintf("reversal %d of %d: %v", r.id, r.reverses, err)}
			}
			delete(results, r.reverses)
		default:
			return &VerifyError{Check: "replay", Detail: fmt.Sprintf("settlement %d has kind %q", r.id, r.kind)}
		}
		got := resultAmounts(&res)
		for i := range got {
			if !got[i].Equal(r.amounts[i]) {
				return &VerifyError{Check: "replay", Detail: fmt.Sprintf("settlement %d (%s, person %d): %s stored %s, replay gives %s",
					r.id, r.kind, r.person, amountNames[i], FormatMoney(r.amounts[i]), FormatMoney(got[i]))}
			}
		}
		if !res.Delta.Equal(r.delta) {
			return &VerifyError{Check: "replay", Detail: fmt.Sprintf("settlement %d (%s, person %d): accumulator delta %s",
				r.id, r.kind, r.person, accDiff(r.delta, res.Delta))}
		}
		if r.kind == "settle" {
			results[r.id] = res
		}
		acc = next
	}
	if err := rows.Err(); err != nil {
		return err
	}
	if err := endGroup(); err != nil {
		return err
	}
	for k, a := range accs {
		if !a.Equal(Accumulators{}) {
			return &VerifyError{Check: "accumulators", Detail: fmt.Sprintf("person %d, year %d: no settlements but %s", k.person, k.year, accDiff(a, Accumulators{}))}
		}
	}
	return nil
}

// accDiff describes how stored accumulators differ from replayed ones.
func accDiff(stored, replayed Accumulators) string {
	var parts []string
	if stored.Admissions != replayed.Admissions {
		parts = append(parts, fmt.Sprintf("admissions stored %d, replay gives %d", stored.Admissions, replayed.Admissions))
	}
	sf, rf := stored.fields(), replayed.fields()
	for i := range sf {
		if !sf[i].v.Equal(*rf[i].v) {
			parts = append(parts, fmt.Sprintf("%s stored %s, replay gives %s", sf[i].name, FormatMoney(*sf[i].v), FormatMoney(*rf[i].v)))
		}
	}
	if len(parts) == 0 {
		return "equal"
	}
	return strings.Join(parts, "; ")
}

// IsVerifyError reports whether err is a mismatch found by Verify (rather
// than a failure to read).
func IsVerifyError(err error) bool {
	var ve *VerifyError
	return errors.As(err, &ve)
}
