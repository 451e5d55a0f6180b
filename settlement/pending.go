package settlement

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/shopspring/decimal"

	"github.com/qinba/qinba/auth"
	"github.com/qinba/qinba/internal/apperr"
	"github.com/qinba/qinba/internal/db"
)

// PendingOptions tune SettlePending.
type PendingOptions struct {
	// Workers settle persons in parallel (default 4).
	Workers int
	// Batch is about how many bills one transaction settles (default 100;
	// a person's bills are never split between transactions).
	Batch int
	// Progress, if set, is called with the bills done so far and the total
	// (one call at a time, done increasing).
	Progress func(done, total int64)
}

// PendingFailure is a bill SettlePending could not settle.
type PendingFailure struct {
	BillID   int64  `json:"bill_id"`
	PersonID int64  `json:"person_id"`
	Reason   string `json:"reason"`
}

// PendingReport is what SettlePending did.
type PendingReport struct {
	Bills   int `json:"bills"`   // open bills found
	Persons int `json:"persons"` // their persons
	Settled int `json:"settled"`
	// Failed lists the bills the engine or the policy refused; Skipped
	// counts the later bills of their persons, left open so that a
	// person's bills are always settled in date order.
	Failed  []PendingFailure `json:"failed"`
	Skipped int              `json:"skipped"`
	// Raced counts bills settled by someone else meanwhile.
	Raced int `json:"raced"`
}

type personBills struct {
	person int64
	bills  []int64
}

// SettlePending settles every open bill (recorded, never settled; a
// reversed bill waits for a clerk): each person's bills in date order, as
// settling them one by one would (the same code settles each bill: the
// results are identical), persons in parallel, since accumulators are per
// person. A chunk of persons is settled in one transaction that first locks
// all its bills; one audit entry records the chunk. A bill the policy
// refuses is reported and the person's later bills are left open.
func (s *Service) SettlePending(ctx context.Context, opts PendingOptions) (*PendingReport, error) {
	if opts.Workers <= 0 {
		opts.Workers = 4
	}
	if opts.Batch <= 0 {
		opts.Batch = 100
	}
	rows, err := s.pool.Query(ctx, `SELECT b.id, b.person_id FROM bill b JOIN bill_state bs ON bs.bill_id = b.id
		WHERE bs.status = 'open' ORDER BY b.person_id, b.bill_date, b.id`)
	if err != nil {
		return nil, err
	}
	var persons []personBills
	rep := &PendingReport{Failed: []PendingFailure{}}
	for rows.Next() {
		var id, person int64
		if err := rows.Scan(&id, &person); err != nil {
			rows.Close()
			return nil, err
		}
		if n := len(persons); n == 0 || persons[n-1].person != person {
			persons = append(persons, personBills{person: person})
		}
		persons[len(persons)-1].bills = append(persons[len(persons)-1].bills, id)
		rep.Bills++
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	rep.Persons = len(persons)

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	chunks := make(chan []personBills)
	go func() {
		defer close(chunks)
		start, n := 0, 0
		for i := range persons {
			n += len(persons[i].bills)
			if n >= opts.Batch || i == len(persons)-1 {
				select {
				case chunks <- persons[start : i+1]:
				case <-ctx.Done():
					return
				}
				start, n = i+1, 0
			}
		}
	}()
	var (
		done     int64
		mu       sync.Mutex
		firstErr error
		wg       sync.WaitGroup
	)
	total := int64(rep.Bills)
	for range opts.Workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for chunk := range chunks {
				r, err := s.settleChunk(ctx, chunk)
				mu.Lock()
				if err != nil {
					if firstErr == nil {
						firstErr = err
					}
					mu.Unlock()
					cancel()
					return
				}
				rep.Settled += r.Settled
				rep.Skipped += r.Skipped
				rep.Raced += r.Raced
				rep.Failed = append(rep.Failed, r.Failed...)
				for _, p := range chunk {
					done += int64(len(p.bills))
				}
				if opts.Progress != nil {
					opts.Progress(done, total)
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if firstErr != nil {
		return rep, firstErr
	}
	return rep, ctx.Err()
}

// settleChunk settles the bills of some persons in one transaction, in
// waves: wave k holds the k-th open bill of each person, so no person
// appears twice in a wave, and a wave reads what the waves before it wrote.
// Each wave reads with a few set-wise statements (one round trip), computes
// every bill with the same code as Settle (engineInput, compute,
// postingDate, JournalLines) and writes with COPY and two set-wise
// updates: the results are those of settling the bills one by one.
func (s *Service) settleChunk(ctx context.Context, chunk []personBills) (*PendingReport, error) {
	var ids []int64
	for _, p := range chunk {
		ids = append(ids, p.bills...)
	}
	var rep *PendingReport
	var policies [][32]byte
	err := db.WithTx(ctx, s.pool, func(tx pgx.Tx) error {
		rep, policies = &PendingReport{}, policies[:0]
		// The locking order of every posting (see groupTx): the clearing
		// locks of the chunk's facilities (in code order), then every bill
		// of the chunk (in id order), then, wave by wave, the accumulators.
		if _, err := tx.Exec(ctx, `SELECT `+planSettings+`, pg_advisory_xact_lock_shared($2, hashtext(f))
			FROM (SELECT DISTINCT facility_code AS f FROM bill WHERE id = ANY($1) ORDER BY 1) x`, ids, clearingLockClass); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `SELECT 1 FROM bill WHERE id = ANY($1) ORDER BY id FOR UPDATE`, ids); err != nil {
			return err
		}
		var settled []int64
		stopped := map[int64]bool{} // persons with a refused bill
		for k := 0; ; k++ {
			var wave []int64
			var owner []int
			for i, p := range chunk {
				if k < len(p.bills) && !stopped[p.person] {
					wave = append(wave, p.bills[k])
					owner = append(owner, i)
				}
			}
			if len(wave) == 0 {
				break
			}
			res, err := s.settleWave(ctx, tx, wave)
			if err != nil {
				return err
			}
			for j, id := range wave {
				p := chunk[owner[j]]
				switch r := res[id]; {
				case r.err == nil:
					rep.Settled++
					settled = append(settled, id)
				case r.raced:
					rep.Raced++
				default:
					rep.Failed = append(rep.Failed, PendingFailure{BillID: id, PersonID: p.person, Reason: r.err.Error()})
					rep.Skipped += len(p.bills) - k - 1
					stopped[p.person] = true
				}
				if r := res[id]; r.policyQueued {
					policies = append(policies, r.policy)
				}
			}
		}
		if len(settled) == 0 {
			return nil
		}
		return auth.Audit(ctx, tx, auth.Entry{Action: "settle", RecordType: "bill", RecordID: "batch:" + strconv.FormatInt(settled[0], 10),
			Username: s.Actor, Detail: map[string]any{"bill_ids": settled, "count": len(settled)}})
	})
	if err == nil {
		for _, sum := range policies {
			s.stored.Store(sum, true)
		}
	}
	return rep, err
}

// waveResult is what happened to one bill of a wave.
type waveResult struct {
	err          error // refused (an apperr message for the report)
	raced        bool  // settled by someone else meanwhile
	policy       [32]byte
	policyQueued bool
}

// waveData is what settling a set of bills reads (queueWaveReads, readWave).
type waveData struct {
	states  map[int64]billState
	accs    map[personYear]Accumulators
	lines   map[int64][]Line
	priors  map[int64]decimal.Decimal
	cleared map[string][]time.Time
	newIDs  []int64 // one per bill, drawn while the accumulators are locked
}

// queueWaveReads queues what settling bills ids reads, set-wise: their
// persons' accumulator rows made sure of and locked (in key order), the
// bills' state, lines, referring stays' deductibles, the months already
// cleared for their facilities, and a settlement id per bill. The caller
// holds the bills' locks (and their facilities' clearing locks) already.
func queueWaveReads(b *pgx.Batch, ids []int64) {
	b.Queue(`INSERT INTO accumulator (person_id, year)
		SELECT DISTINCT person_id, extract(year FROM bill_date)::int FROM bill WHERE id = ANY($1) ORDER BY 1, 2
		ON CONFLICT DO NOTHING`, ids)
	b.Queue(`SELECT `+billStateCols+strings.Replace(billStateFrom, "WHERE b.id = $1", "WHERE b.id = ANY($1)", 1), ids)
	b.Queue(`SELECT a.person_id, a.year, `+accCols+` FROM accumulator a
		WHERE (a.person_id, a.year) IN (SELECT person_id, extract(year FROM bill_date)::int FROM bill WHERE id = ANY($1))
		ORDER BY a.person_id, a.year FOR UPDATE`, ids)
	b.Queue(`SELECT bill_id, class, amount::text FROM bill_line WHERE bill_id = ANY($1) ORDER BY bill_id, line_no`, ids)
	b.Queue(`SELECT b.id, (SELECT s.deductible FROM settlement s
				WHERE s.person_id = b.person_id AND s.facility_code = b.referral_from
					AND s.year = extract(year FROM b.bill_date)::int AND s.kind = 'settle' AND s.bill_kind = 'inpatient'
					AND s.bill_date <= b.bill_date AND s.bill_id <> b.id
					AND NOT EXISTS (SELECT 1 FROM settlement r WHERE r.reverses_id = s.id)
				ORDER BY s.bill_date DESC, s.id DESC LIMIT 1)
		FROM bill b WHERE b.id = ANY($1) AND b.referral_direction = 'up'`, ids)
	b.Queue(`SELECT c.facility_code, c.period FROM clearing_facility c
		WHERE c.facility_code IN (SELECT facility_code FROM bill WHERE id = ANY($1)) ORDER BY 1, 2`, ids)
	b.Queue(`SELECT nextval('settlement_id_seq') FROM generate_series(1, $1) ORDER BY 1`, len(ids))
}

// readWave reads the results of queueWaveReads.
func readWave(br pgx.BatchResults) (*waveData, error) {
	w := &waveData{states: map[int64]billState{}, accs: map[personYear]Accumulators{}, lines: map[int64][]Line{},
		priors: map[int64]decimal.Decimal{}, cleared: map[string][]time.Time{}}
	if _, err := br.Exec(); err != nil {
		return nil, err
	}
	var (
		st            billState
		py            personYear
		acc           Accumulators
		id            int64
		class, amount string
		prior         *decimal.Decimal
		fac           string
		period        time.Time
	)
	for _, r := range []struct {
		scans []any
		fn    func() error
	}{
		{st.dest(), func() error { w.states[st.ID] = st; return nil }},
		{append([]any{&py.person, &py.year}, acc.dest()...), func() error { w.accs[py] = acc; return nil }},
		{[]any{&id, &class, &amount}, func() error {
			amt, err := decimal.NewFromString(amount)
			w.lines[id] = append(w.lines[id], Line{Class: class, Amount: amt})
			return err
		}},
		{[]any{&id, &prior}, func() error {
			if prior != nil {
				w.priors[id] = *prior
			}
			return nil
		}},
		{[]any{&fac, &period}, func() error { w.cleared[fac] = append(w.cleared[fac], period); return nil }},
		{[]any{&id}, func() error { w.newIDs = append(w.newIDs, id); return nil }},
	} {
		if err := eachRow(br, r.scans, r.fn); err != nil {
			return nil, err
		}
	}
	return w, nil
}

// eachRow calls fn for each row of br's next result, scanned into scans.
func eachRow(br pgx.BatchResults, scans []any, fn func() error) error {
	rows, err := br.Query()
	if err != nil {
		return err
	}
	_, err = pgx.ForEachRow(rows, scans, fn)
	return err
}

// settlementOf computes the settlement of bill st from what a wave read,
// as the row to write with id, and queues its policy on b if it may not be
// stored yet (queued). An *apperr.Error is the engine's or the policy's
// refusal.
func (s *Service) settlementOf(st *billState, w *waveData, id int64, now time.Time, b *pgx.Batch) (r *settlementRow, queued bool, err error) {
	person, bill := engineInput(st, w.lines[st.ID], w.priors[st.ID])
	pol, res, next, err := s.compute(st.Region, person, w.accs[personYear{st.PersonID, st.Date.Year()}], bill)
	if err != nil {
		return nil, false, err
	}
	sum, queued := s.queuePolicy(b, pol)
	r = &settlementRow{ID: id, Kind: "settle", BillID: st.ID, BillVersion: st.Version, PersonID: st.PersonID,
		Facility: st.Facility, Year: st.Date.Year(), BillDate: st.Date, PostedOn: postingDate(st.Date, w.cleared[st.Facility]),
		PolicySHA: sum[:], PolicyID: pol.ID(), BillKind: st.Kind, Tier: st.Tier, Category: st.Category, Insured: st.Insured,
		Result: &res, CreatedAt: now, Acc: next, BillStatus: StatusSettled, BillCurrent: id, Journal: JournalLines(&res)}
	r.ResultJSON = appendResultJSON(nil, &res)
	if r.InputJSON, err = json.Marshal(Snapshot{Policy: pol.ID(), PolicySHA256: hex.EncodeToString(sum[:]),
		Person: CasePerson{Category: person.Category, Insured: person.Insured}, Bill: caseBill(&bill)}); err != nil {
		return nil, false, err
	}
	return r, queued, nil
}

// settleWave settles bills of distinct persons; tx holds their bills and
// facilities' clearing locks.
func (s *Service) settleWave(ctx context.Context, tx pgx.Tx, ids []int64) (map[int64]waveResult, error) {
	b := &pgx.Batch{}
	queueWaveReads(b, ids)
	br := tx.SendBatch(ctx, b)
	w, err := readWave(br)
	if cerr := br.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, err
	}

	out := make(map[int64]waveResult, len(ids))
	now := s.now().Truncate(time.Microsecond)
	var rows []*settlementRow
	pb := &pgx.Batch{}
	for i, id := range ids {
		st, ok := w.states[id]
		switch {
		case !ok:
			out[id] = waveResult{err: apperr.E(apperr.NotFound, "bill %d not found", id)}
			continue
		case st.Status == StatusSettled:
			out[id] = waveResult{raced: true}
			continue
		}
		r, queued, err := s.settlementOf(&st, w, w.newIDs[i], now, pb)
		if err != nil {
			var ae *apperr.Error
			if !errors.As(err, &ae) {
				return nil, err
			}
			out[id] = waveResult{err: errors.New(ae.Message)}
			continue
		}
		rows = append(rows, r)
		out[id] = waveResult{policy: [32]byte(r.PolicySHA), policyQueued: queued}
	}
	if len(rows) == 0 {
		return out, nil
	}
	if pb.Len() > 0 {
		if err := tx.SendBatch(ctx, pb).Close(); err != nil {
			return nil, err
		}
	}
	return out, writeSettlements(ctx, tx, rows)
}

// writeSettlements writes settlements of distinct persons and bills: the
// rows and their journal entries and lines by COPY, the accumulators and
// the bills' state by one update each.
func writeSettlements(ctx context.Context, tx pgx.Tx, rows []*settlementRow) error {
	if _, err := tx.CopyFrom(ctx, pgx.Identifier{"settlement"}, []string{"id", "kind", "bill_id", "bill_version", "person_id",
		"facility_code", "year", "bill_date", "posted_on", "policy_sha256", "policy_id", "bill_kind", "tier", "category", "insured",
		"total", "eligible", "deductible", "basic", "critical", "assistance", "supplementary", "backstop", "hospital", "patient",
		"d_admissions", "d_outpatient_paid", "d_basic_paid", "d_critical_base", "d_critical_paid", "d_assistance_paid",
		"d_supplementary_paid", "d_backstop_paid", "d_patient_in_policy", "input", "result", "created_at"},
		pgx.CopyFromSlice(len(rows), func(i int) ([]any, error) {
			r := rows[i]
			res, d := r.Result, r.Result.Delta
			return []any{r.ID, r.Kind, r.BillID, int32(r.BillVersion), r.PersonID, r.Facility, int32(r.Year), r.BillDate, r.PostedOn,
				r.PolicySHA, r.PolicyID, r.BillKind, r.Tier, r.Category, r.Insured,
				res.Total, res.Eligible, res.Deductible, res.Basic, res.Critical, res.Assistance, res.Supplementary, res.Backstop,
				res.Hospital, res.Patient, int32(d.Admissions), d.OutpatientPaid, d.BasicPaid, d.CriticalBase, d.CriticalPaid,
				d.AssistancePaid, d.SupplementaryPaid, d.BackstopPaid, d.PatientInPolicy, r.InputJSON, r.ResultJSON, r.CreatedAt}, nil
		})); err != nil {
		return fmt.Errorf("copy settlements: %w", err)
	}
	if _, err := tx.CopyFrom(ctx, pgx.Identifier{"journal_entry"}, []string{"settlement_id", "facility_code", "posted_on", "memo", "created_at"},
		pgx.CopyFromSlice(len(rows), func(i int) ([]any, error) {
			r := rows[i]
			return []any{r.ID, r.Facility, r.PostedOn, r.memo(), r.CreatedAt}, nil
		})); err != nil {
		return fmt.Errorf("copy journal entries: %w", err)
	}
	var lines [][]any
	for _, r := range rows {
		for n, l := range r.Journal {
			lines = append(lines, []any{r.ID, int16(n + 1), l.Account, l.Debit, l.Credit})
		}
	}
	if _, err := tx.CopyFrom(ctx, pgx.Identifier{"journal_line"}, []string{"settlement_id", "line_no", "account", "debit", "credit"},
		pgx.CopyFromRows(lines)); err != nil {
		return fmt.Errorf("copy journal lines: %w", err)
	}
	n := len(rows)
	persons, years, adm := make([]int64, n), make([]int32, n), make([]int32, n)
	sums := make([][]string, 8)
	for k := range sums {
		sums[k] = make([]string, n)
	}
	bills, sids := make([]int64, n), make([]int64, n)
	for i, r := range rows {
		persons[i], years[i], adm[i] = r.PersonID, int32(r.Year), int32(r.Acc.Admissions)
		for k, f := range r.Acc.fields() {
			sums[k][i] = f.v.String()
		}
		bills[i], sids[i] = r.BillID, r.ID
	}
	b := &pgx.Batch{}
	b.Queue(`UPDATE accumulator a SET admissions = u.adm, outpatient_paid = u.op, basic_paid = u.bp, critical_base = u.cb,
			critical_paid = u.cp, assistance_paid = u.ap, supplementary_paid = u.sp, backstop_paid = u.kp, patient_in_policy = u.pp,
			last_settlement_id = u.sid, updated_at = $13
		FROM unnest($1::bigint[], $2::int[], $3::int[], $4::numeric[], $5::numeric[], $6::numeric[], $7::numeric[], $8::numeric[],
			$9::numeric[], $10::numeric[], $11::numeric[], $12::bigint[]) AS u(person, year, adm, op, bp, cb, cp, ap, sp, kp, pp, sid)
		WHERE a.person_id = u.person AND a.year = u.year`,
		persons, years, adm, sums[0], sums[1], sums[2], sums[3], sums[4], sums[5], sums[6], sums[7], sids, rows[0].CreatedAt)
	b.Queue(`UPDATE bill_state bs SET status = 'settled', settlement_id = u.sid, updated_at = $3
		FROM unnest($1::bigint[], $2::bigint[]) AS u(bill, sid) WHERE bs.bill_id = u.bill`, bills, sids, rows[0].CreatedAt)
	return tx.SendBatch(ctx, b).Close()
}
