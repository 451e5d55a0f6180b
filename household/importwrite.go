package household

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// storedPerson is what an import compares a roster line with.
type storedPerson struct {
	id          int64
	name        string
	householdID string
	relation    string
	insured     *bool // the roster year's enrolment (nil: none)
}

// storedHousehold is a stored household an import compares with.
type storedHousehold struct {
	villageCode string
	category    string
}

// stored is what the database holds of a roster file: the persons with
// its identity numbers or in its households, and its households.
type stored struct {
	persons    map[string]*storedPerson // by identity number
	households map[string]storedHousehold
	heads      map[string]string // household id → its stored head's identity number
}

// wholeRoster is the size of file above which loadStored reads every
// stored person and household instead of looking the file's up: a lookup
// per key costs more than a scan once the file is a good part of a county.
const wholeRoster = 2000

// loadStored reads, under the import's table lock, the stored persons who
// share an identity number or a household with the file's good lines, with
// their enrolment of year, and the stored households of the file (for a
// large file: all of them).
func loadStored(ctx context.Context, tx pgx.Tx, ro *Roster, year int) (*stored, error) {
	nids := make([]string, 0, len(ro.Rows))
	for _, r := range ro.Rows {
		if r.OK {
			nids = append(nids, r.NationalID())
		}
	}
	hids := make([]string, len(ro.Households))
	for i, h := range ro.Households {
		hids[i] = h.ID
	}
	st := &stored{persons: map[string]*storedPerson{}, households: map[string]storedHousehold{}, heads: map[string]string{}}
	whole := len(ro.Rows) > wholeRoster
	if whole {
		nids, hids = nil, nil
	}
	b := &pgx.Batch{}
	b.Queue(`SELECT p.national_id, p.id, p.name, p.household_id, p.relation, i.insured
		FROM person p LEFT JOIN person_insurance i ON i.person_id = p.id AND i.year = $3
		WHERE $4 OR p.national_id = ANY($1) OR p.household_id = ANY($2)`, nids, hids, year, whole).Query(func(rows pgx.Rows) error {
		for rows.Next() {
			var nid string
			p := &storedPerson{}
			if err := rows.Scan(&nid, &p.id, &p.name, &p.householdID, &p.relation, &p.insured); err != nil {
				return err
			}
			st.persons[nid] = p
			if p.relation == string(Head) {
				st.heads[p.householdID] = nid
			}
		}
		return rows.Err()
	})
	b.Queue(`SELECT id, village_code, category FROM household WHERE $2 OR id = ANY($1)`, hids, whole).Query(func(rows pgx.Rows) error {
		for rows.Next() {
			var id string
			var h storedHousehold
			if err := rows.Scan(&id, &h.villageCode, &h.category); err != nil {
				return err
			}
			st.households[id] = h
		}
		return rows.Err()
	})
	if err := tx.SendBatch(ctx, b).Close(); err != nil {
		return nil, fmt.Errorf("read stored roster: %w", err)
	}
	return st, nil
}

// check finds the good lines that clash with what is stored: a person in
// another household, and a household whose stored head is not in the file
// (it would have two).
func (st *stored) check(ro *Roster) []RowError {
	var out []RowError
	var inFile map[string]string // identity number → household, of the good lines (needed when heads are stored)
	if len(st.heads) > 0 {
		inFile = make(map[string]string, len(ro.Rows))
	}
	for _, r := range ro.Rows {
		if !r.OK {
			continue
		}
		if inFile != nil {
			inFile[r.NationalID()] = r.HouseholdID()
		}
		if p := st.persons[r.NationalID()]; p != nil && p.householdID != r.HouseholdID() {
			out = append(out, RowError{Line: r.Line, Column: "national_id", Reason: "this person is already in household " + p.householdID})
		}
	}
	for _, h := range ro.Households {
		head, ok := st.heads[h.ID]
		if !ok || inFile[head] == h.ID {
			continue
		}
		out = append(out, RowError{Line: h.Line, Column: "relation", Reason: "household " + h.ID + " already has a head on record (" +
			MaskID(head) + ") who is not in this file; list every member with their relation"})
	}
	return out
}

// importPlan is what an import writes.
type importPlan struct {
	newHouseholds, changedHouseholds []*RosterHousehold
	newPersons                       []*Row // their ids are drawn when written
	changedPersons                   []storedLine
	// Enrolments of stored persons: missing for the year, or different.
	newEnrolments, changedEnrolments []storedLine
}

// storedLine is a line of the file about a stored person.
type storedLine struct {
	id  int64
	row *Row
}

// plan compares the file's households and lines (but the rejected
// households) with what is stored, fills the report's counts and returns
// the writes.
func (st *stored) plan(ro *Roster, rejected map[string]bool, rep *Report) *importPlan {
	pl := &importPlan{}
	for hi := range ro.Households {
		h := &ro.Households[hi]
		if rejected[h.ID] {
			continue
		}
		switch s, ok := st.households[h.ID]; {
		case !ok:
			pl.newHouseholds = append(pl.newHouseholds, h)
			rep.Households.Added++
		case s.villageCode != h.VillageCode || s.category != string(h.Category):
			pl.changedHouseholds = append(pl.changedHouseholds, h)
			rep.Households.Updated++
		default:
			rep.Households.Unchanged++
		}
		for _, i := range h.Rows {
			r := ro.Rows[i]
			p := st.persons[r.NationalID()]
			if p == nil {
				pl.newPersons = append(pl.newPersons, r)
				rep.Persons.Added++
				continue
			}
			line := storedLine{id: p.id, row: r}
			changed := p.name != r.Name() || p.householdID != r.HouseholdID() || p.relation != string(r.Relation())
			if changed {
				pl.changedPersons = append(pl.changedPersons, line)
			}
			switch {
			case p.insured == nil:
				pl.newEnrolments = append(pl.newEnrolments, line)
			case *p.insured != r.Insured:
				pl.changedEnrolments = append(pl.changedEnrolments, line)
			}
			if changed || p.insured == nil || *p.insured != r.Insured {
				rep.Persons.Updated++
			} else {
				rep.Persons.Unchanged++
			}
		}
	}
	return pl
}

// write carries out the plan: households, then persons, then enrolments
// (each refers to the one before). New rows go in by COPY, changed rows by
// one UPDATE per table fed with arrays.
func write(ctx context.Context, tx pgx.Tx, pl *importPlan, year int, prog Progress) error {
	ids, err := drawPersonIDs(ctx, tx, len(pl.newPersons))
	if err != nil {
		return err
	}
	total := int64(len(pl.newHouseholds) + 2*len(pl.newPersons) + len(pl.newEnrolments))
	prog.Phase("copy", total)
	var done int64
	copyRows := func(table string, cols []string, n int, row func(i int) []any) error {
		i := 0
		_, err := tx.CopyFrom(ctx, pgx.Identifier{table}, cols, pgx.CopyFromFunc(func() ([]any, error) {
			if i == n {
				return nil, nil
			}
			i++
			if done++; done%4096 == 0 {
				prog.Set(done)
			}
			return row(i - 1), nil
		}))
		if err != nil {
			return fmt.Errorf("copy %s: %w", table, err)
		}
		return nil
	}
	if err := copyRows("household", []string{"id", "village_code", "category"}, len(pl.newHouseholds), func(i int) []any {
		h := pl.newHouseholds[i]
		return []any{h.ID, h.VillageCode, string(h.Category)}
	}); err != nil {
		return err
	}
	if err := copyRows("person", []string{"id", "national_id", "name", "household_id", "relation"}, len(pl.newPersons), func(i int) []any {
		r := pl.newPersons[i]
		return []any{ids[i], r.NationalID(), r.Name(), r.HouseholdID(), string(r.Relation())}
	}); err != nil {
		return err
	}
	year32 := int32(year)
	if err := copyRows("person_insurance", []string{"person_id", "year", "insured"}, len(ids)+len(pl.newEnrolments), func(i int) []any {
		if i < len(ids) {
			return []any{ids[i], year32, pl.newPersons[i].Insured}
		}
		e := pl.newEnrolments[i-len(ids)]
		return []any{e.id, year32, e.row.Insured}
	}); err != nil {
		return err
	}
	prog.Set(total)
	prog.Done()

	prog.Phase("write", 3)
	if hs := pl.changedHouseholds; len(hs) > 0 {
		id, village, category := make([]string, len(hs)), make([]string, len(hs)), make([]string, len(hs))
		for i, h := range hs {
			id[i], village[i], category[i] = h.ID, h.VillageCode, string(h.Category)
		}
		if _, err := tx.Exec(ctx, `UPDATE household h SET village_code = u.village_code, category = u.category, updated_at = now()
			FROM unnest($1::text[], $2::text[], $3::text[]) AS u(id, village_code, category) WHERE h.id = u.id`, id, village, category); err != nil {
			return fmt.Errorf("update households: %w", err)
		}
	}
	prog.Set(1)
	if ps := pl.changedPersons; len(ps) > 0 {
		id := make([]int64, len(ps))
		name, hh, rel := make([]string, len(ps)), make([]string, len(ps)), make([]string, len(ps))
		for i, p := range ps {
			id[i], name[i], hh[i], rel[i] = p.id, p.row.Name(), p.row.HouseholdID(), string(p.row.Relation())
		}
		if _, err := tx.Exec(ctx, `UPDATE person p SET name = u.name, household_id = u.household_id, relation = u.relation, updated_at = now()
			FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[]) AS u(id, name, household_id, relation) WHERE p.id = u.id`,
			id, name, hh, rel); err != nil {
			return fmt.Errorf("update persons: %w", err)
		}
	}
	prog.Set(2)
	if es := pl.changedEnrolments; len(es) > 0 {
		id, insured := make([]int64, len(es)), make([]bool, len(es))
		for i, e := range es {
			id[i], insured[i] = e.id, e.row.Insured
		}
		if _, err := tx.Exec(ctx, `UPDATE person_insurance i SET insured = u.insured, updated_at = now()
			FROM unnest($1::bigint[], $2::boolean[]) AS u(person_id, insured) WHERE i.person_id = u.person_id AND i.year = $3`,
			id, insured, year); err != nil {
			return fmt.Errorf("update enrolments: %w", err)
		}
	}
	prog.Set(3)
	return nil
}

// drawPersonIDs takes n values from the person identity sequence
// (person_id_seq, the name PostgreSQL gave it; named by a constant, so
// that it is resolved once per statement, not once per value).
func drawPersonIDs(ctx context.Context, tx pgx.Tx, n int) ([]int64, error) {
	if n == 0 {
		return nil, nil
	}
	var ids []int64
	err := tx.QueryRow(ctx, `SELECT array_agg(nextval('person_id_seq')) FROM generate_series(1, $1)`, n).Scan(&ids)
	if err != nil || len(ids) != n {
		return nil, fmt.Errorf("person ids: %d of %d (%v)", len(ids), n, err)
	}
	return ids, nil
}
