package settlement

import (
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/qinba/qinba/auth"
	"github.com/qinba/qinba/internal/apperr"
	"github.com/qinba/qinba/internal/db"
)

// ClearingRequest is the body of POST /api/v1/clearing.
type ClearingRequest struct {
	// Period is the month, YYYY-MM.
	Period string `json:"period"`
	// Facility is the facility to clear; empty: a billing clerk's own, an
	// admin's whole region (every facility with postings in the month not
	// cleared yet).
	Facility string `json:"facility,omitempty"`
}

// ClearingRun is a recorded monthly clearing.
type ClearingRun struct {
	ID         int64              `json:"id"`
	Period     string             `json:"period"`
	Scope      string             `json:"scope"`
	Actor      string             `json:"actor,omitempty"`
	CreatedAt  time.Time          `json:"created_at"`
	Facilities []ClearingFacility `json:"facilities"`
	// Funds sums each fund over the facilities shown.
	Funds []ClearingFund `json:"funds"`
	// Owed is what the five funds owe in all.
	Owed Money `json:"owed"`
}

// ClearingFacility is what the funds owe one facility for the month:
// settlements minus reversals posted in the month.
type ClearingFacility struct {
	Facility    string         `json:"facility"`
	Name        string         `json:"name"`
	Settlements int            `json:"settlements"`
	Reversals   int            `json:"reversals"`
	Total       Money          `json:"total"`
	Patient     Money          `json:"patient"`
	Hospital    Money          `json:"hospital"`
	Funds       []ClearingFund `json:"funds"`
	Owed        Money          `json:"owed"`
}

// ClearingFund is what one fund owes: the net debit of its receivable
// account, with the number of settlements and reversals that moved it.
type ClearingFund struct {
	Fund        string `json:"fund"`
	Label       Label  `json:"label"`
	Account     string `json:"account"`
	Amount      Money  `json:"amount"`
	Settlements int    `json:"settlements"`
	Reversals   int    `json:"reversals"`
}

// ParsePeriod reads a month written YYYY-MM and returns its first day.
func ParsePeriod(s string) (time.Time, error) {
	t, err := time.Parse("2006-01", strings.TrimSpace(s))
	if err != nil || t.Year() < 2000 || t.Year() > 2100 {
		return time.Time{}, apperr.Field("period", "a month written YYYY-MM")
	}
	return t, nil
}

// RunClearing clears one month: for each facility it covers and each fund,
// what the fund owes for the month (the net of the fund's receivable account
// over the facility's journal entries posted in the month: settlements minus
// reversals), with counts. The run is recorded (append-only); a facility is
// cleared at most once per month (409). Postings of the facility wait while
// it is cleared; a settlement whose month is already cleared is posted in the
// next open month. The month must be over.
//
// Who: p nil (the CLI) any facility, or every facility with postings in the
// month; a billing clerk their own facility; an admin a facility of their
// region, or every facility of the region with postings in the month.
func (s *Service) RunClearing(ctx context.Context, p *auth.Principal, period time.Time, fac string) (ClearingRun, error) {
	period = monthOf(period)
	if !period.Before(monthOf(today(s.now()))) {
		return ClearingRun{}, apperr.Field("period", "%s is not over yet", period.Format("2006-01"))
	}
	region := ""
	scope := "all"
	switch {
	case p == nil:
	case p.Role == auth.RoleBillingClerk:
		if fac == "" {
			fac = p.Facility
		}
		if fac != p.Facility {
			return ClearingRun{}, s.denyClearing(ctx, fac, "a billing clerk clears their own facility only")
		}
	case p.Role == auth.RoleAdmin:
		region = p.Region
		scope = "region " + region
		if fac != "" {
			ok, err := s.scope.CanSee(ctx, p, fac)
			if err != nil {
				return ClearingRun{}, err
			}
			if !ok {
				return ClearingRun{}, s.denyClearing(ctx, fac, "an admin clears the facilities of their region only")
			}
		}
	default:
		return ClearingRun{}, apperr.E(apperr.Forbidden, "your role may not run the clearing")
	}
	if fac != "" {
		scope = fac
		var exists bool
		if err := s.pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM facility WHERE code = $1)`, fac).Scan(&exists); err != nil {
			return ClearingRun{}, err
		}
		if !exists {
			return ClearingRun{}, apperr.Field("facility", "unknown facility %q", fac)
		}
	}
	end := period.AddDate(0, 1, 0)
	var id int64
	err := db.WithTx(ctx, s.pool, func(tx pgx.Tx) error {
		facs := []string{fac}
		if fac == "" {
			rows, err := tx.Query(ctx, `SELECT DISTINCT e.facility_code FROM journal_entry e
				WHERE e.posted_on >= $1 AND e.posted_on < $2
					AND ($3 = '' OR e.facility_code IN (SELECT code FROM facility WHERE region_code = $3))
				ORDER BY 1`, period, end, region)
			if err != nil {
				return err
			}
			if facs, err = pgx.CollectRows(rows, pgx.RowTo[string]); err != nil {
				return err
			}
		}
		// Wait for the facilities' postings in flight; new ones wait for us.
		for _, f := range facs {
			if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1, hashtext($2))`, clearingLockClass, f); err != nil {
				return err
			}
		}
		rows, _ := tx.Query(ctx, `SELECT facility_code, run_id FROM clearing_facility WHERE period = $1 AND facility_code = ANY($2) ORDER BY 1`, period, facs)
		done := map[string]int64{}
		var f string
		var run int64
		if _, err := pgx.ForEachRow(rows, []any{&f, &run}, func() error { done[f] = run; return nil }); err != nil {
			return err
		}
		if fac != "" && done[fac] != 0 {
			return &apperr.Error{Code: apperr.Conflict, Message: fmt.Sprintf("%s is already cleared for %s (run %d)", fac, period.Format("2006-01"), done[fac]),
				Details: map[string]any{"run_id": done[fac], "facility": fac, "period": period.Format("2006-01")}}
		}
		facs = slices.DeleteFunc(facs, func(f string) bool { return done[f] != 0 })
		if len(facs) == 0 {
			runs := map[string]int64{}
			for f, r := range done {
				runs[f] = r
			}
			return &apperr.Error{Code: apperr.Conflict, Message: fmt.Sprintf("nothing to clear for %s: every facility with postings in the month is already cleared", period.Format("2006-01")),
				Details: map[string]any{"period": period.Format("2006-01"), "runs": runs}}
		}
		if err := tx.QueryRow(ctx, `INSERT INTO clearing_run (period, scope, created_by, actor) VALUES ($1, $2, $3, $4) RETURNING id`,
			period, scope, userID(p), s.actor(p)).Scan(&id); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `INSERT INTO clearing_facility (run_id, period, facility_code, settlements, reversals, total, patient, hospital)
			SELECT $1, $3, f.code, count(s.id) FILTER (WHERE s.kind = 'settle'), count(s.id) FILTER (WHERE s.kind = 'reverse'),
				coalesce(sum(s.total), 0), coalesce(sum(s.patient), 0), coalesce(sum(s.hospital), 0)
			FROM unnest($2::text[]) AS f(code)
			LEFT JOIN (journal_entry e JOIN settlement s ON s.id = e.settlement_id)
				ON e.facility_code = f.code AND e.posted_on >= $3 AND e.posted_on < $4
			GROUP BY f.code`, id, facs, period, end); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `INSERT INTO clearing_line (run_id, facility_code, fund, account, amount, settlements, reversals)
			SELECT $1, f.code, a.fund, a.code, coalesce(sum(l.debit - l.credit), 0),
				count(l.settlement_id) FILTER (WHERE l.debit > 0), count(l.settlement_id) FILTER (WHERE l.credit > 0)
			FROM unnest($2::text[]) AS f(code) CROSS JOIN ledger_account a
			LEFT JOIN (journal_entry e JOIN journal_line l ON l.settlement_id = e.settlement_id)
				ON e.facility_code = f.code AND e.posted_on >= $3 AND e.posted_on < $4 AND l.account = a.code
			WHERE a.fund = ANY($5)
			GROUP BY f.code, a.fund, a.code`, id, facs, period, end, Funds); err != nil {
			return err
		}
		return auth.Audit(ctx, tx, auth.Entry{Action: "clearing", RecordType: "clearing_run", RecordID: strconv.FormatInt(id, 10),
			Facility: fac, Username: s.actor(p), Detail: map[string]any{"period": period.Format("2006-01"), "facilities": facs}})
	})
	if err != nil {
		return ClearingRun{}, err
	}
	return s.clearingRun(ctx, p, id)
}

func (s *Service) denyClearing(ctx context.Context, fac, msg string) error {
	_ = auth.Audit(ctx, s.pool, auth.Entry{Action: "deny", RecordType: "clearing_run", RecordID: "new", Facility: fac,
		Detail: map[string]any{"reason": "facility scope"}})
	return apperr.E(apperr.Forbidden, "%s", msg)
}

// GetClearing returns clearing run id with the facilities p may see (a
// billing clerk: theirs; an admin: their region's); none: 404. Audited.
func (s *Service) GetClearing(ctx context.Context, p *auth.Principal, id int64) (ClearingRun, error) {
	run, err := s.clearingRun(ctx, p, id)
	if err != nil {
		return run, err
	}
	return run, auth.Audit(ctx, s.pool, auth.Entry{Action: "read", RecordType: "clearing_run", RecordID: strconv.FormatInt(id, 10),
		Username: s.actor(p), Detail: map[string]any{"facilities": len(run.Facilities)}})
}

func (s *Service) clearingRun(ctx context.Context, p *auth.Principal, id int64) (ClearingRun, error) {
	var run ClearingRun
	var period time.Time
	err := s.pool.QueryRow(ctx, `SELECT id, period, scope, actor, created_at FROM clearing_run WHERE id = $1`, id).
		Scan(&run.ID, &period, &run.Scope, &run.Actor, &run.CreatedAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return run, apperr.E(apperr.NotFound, "clearing run %d not found", id)
	}
	if err != nil {
		return run, err
	}
	run.Period = period.Format("2006-01")
	rows, err := s.pool.Query(ctx, `SELECT c.facility_code, f.name, c.settlements, c.reversals, c.total, c.patient, c.hospital
		FROM clearing_facility c JOIN facility f ON f.code = c.facility_code WHERE c.run_id = $1 ORDER BY c.facility_code`, id)
	if err != nil {
		return run, err
	}
	byFac := map[string]int{}
	for rows.Next() {
		var f ClearingFacility
		if err := rows.Scan(&f.Facility, &f.Name, &f.Settlements, &f.Reversals, &f.Total.Decimal, &f.Patient.Decimal, &f.Hospital.Decimal); err != nil {
			rows.Close()
			return run, err
		}
		if p != nil {
			ok, err := s.scope.CanSee(ctx, p, f.Facility)
			if err != nil {
				rows.Close()
				return run, err
			}
			if !ok {
				continue
			}
		}
		byFac[f.Facility] = len(run.Facilities)
		run.Facilities = append(run.Facilities, f)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return run, err
	}
	if len(run.Facilities) == 0 {
		if p != nil {
			_ = auth.Audit(ctx, s.pool, auth.Entry{Action: "deny", RecordType: "clearing_run", RecordID: strconv.FormatInt(id, 10),
				Detail: map[string]any{"reason": "facility scope"}})
		}
		return ClearingRun{}, apperr.E(apperr.NotFound, "clearing run %d not found", id)
	}
	rows, err = s.pool.Query(ctx, `SELECT facility_code, fund, account, amount, settlements, reversals FROM clearing_line WHERE run_id = $1`, id)
	if err != nil {
		return run, err
	}
	defer rows.Close()
	totals := map[string]*ClearingFund{}
	for rows.Next() {
		var f string
		var cf ClearingFund
		if err := rows.Scan(&f, &cf.Fund, &cf.Account, &cf.Amount.Decimal, &cf.Settlements, &cf.Reversals); err != nil {
			return run, err
		}
		i, ok := byFac[f]
		if !ok {
			continue
		}
		cf.Label = PayerLabel(cf.Fund)
		run.Facilities[i].Funds = append(run.Facilities[i].Funds, cf)
		run.Facilities[i].Owed.Decimal = run.Facilities[i].Owed.Add(cf.Amount.Decimal)
		t := totals[cf.Fund]
		if t == nil {
			t = &ClearingFund{Fund: cf.Fund, Label: cf.Label, Account: cf.Account}
			totals[cf.Fund] = t
		}
		t.Amount.Decimal = t.Amount.Add(cf.Amount.Decimal)
		t.Settlements += cf.Settlements
		t.Reversals += cf.Reversals
	}
	if err := rows.Err(); err != nil {
		return run, err
	}
	order := func(f string) int { return slices.Index(Funds, f) }
	for i := range run.Facilities {
		slices.SortFunc(run.Facilities[i].Funds, func(a, b ClearingFund) int { return order(a.Fund) - order(b.Fund) })
	}
	for _, f := range Funds {
		if t := totals[f]; t != nil {
			run.Funds = append(run.Funds, *t)
			run.Owed.Decimal = run.Owed.Add(t.Amount.Decimal)
		}
	}
	return run, nil
}

// ClearingCSVHeader is the header of a clearing run's CSV export.
var ClearingCSVHeader = []string{"period", "facility_code", "facility_name", "fund", "fund_zh", "account", "amount", "settlements", "reversals"}

// WriteCSV writes the run as CSV: one row per facility and fund.
func (run *ClearingRun) WriteCSV(w io.Writer) error {
	cw := csv.NewWriter(w)
	if err := cw.Write(ClearingCSVHeader); err != nil {
		return err
	}
	for _, f := range run.Facilities {
		for _, fu := range f.Funds {
			if err := cw.Write([]string{run.Period, f.Facility, f.Name, fu.Fund, fu.Label.ZH, fu.Account, fu.Amount.String(),
				strconv.Itoa(fu.Settlements), strconv.Itoa(fu.Reversals)}); err != nil {
				return err
			}
		}
	}
	cw.Flush()
	return cw.Error()
}

// Text renders the run as the CLI prints it.
func (run *ClearingRun) Text() string {
	var b strings.Builder
	fmt.Fprintf(&b, "clearing run %d: %s (%s)\n", run.ID, run.Period, run.Scope)
	for _, f := range run.Facilities {
		fmt.Fprintf(&b, "%s %s: %d settlements, %d reversals, total %s, owed by the funds %s\n",
			f.Facility, f.Name, f.Settlements, f.Reversals, f.Total, f.Owed)
		for _, fu := range f.Funds {
			fmt.Fprintf(&b, "    %-14s %14s  (%d settlements, %d reversals)\n", fu.Fund, fu.Amount, fu.Settlements, fu.Reversals)
		}
	}
	fmt.Fprintf(&b, "owed by the funds in all: %s\n", run.Owed)
	return b.String()
}
