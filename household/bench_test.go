package household

import (
	"bytes"
	"context"
	"encoding/csv"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/qinba/qinba/facility"
)

// fullCounty returns the generated full-county roster (seed 1, over the
// demo county's villages), made once per test binary.
func fullCounty(t testing.TB) []byte {
	t.Helper()
	data, err := fullCountyOnce()
	if err != nil {
		t.Fatal(err)
	}
	return data
}

var fullCountyOnce = sync.OnceValues(func() ([]byte, error) {
	var buf bytes.Buffer
	err := GenerateRosterSize(&buf, 1, FullCountyHouseholds, FullCountyPersons, demoVillageCodes())
	return buf.Bytes(), err
})

// demoVillageCodes lists the village codes of facility.DemoCSV.
func demoVillageCodes() []string {
	recs, err := csv.NewReader(bytes.NewReader(facility.DemoCSV)).ReadAll()
	if err != nil {
		panic(err)
	}
	var out []string
	for _, r := range recs[1:] {
		if r[2] == string(facility.Village) {
			out = append(out, r[0])
		}
	}
	return out
}

// BenchmarkRosterImport measures, in the same run and on the same
// database server, the full-county import (27,782 households, 82,590
// persons) into empty tables through Import, against a raw COPY of the
// same file into a bare table with the same columns (COPY FROM STDIN
// (FORMAT csv), which is what psql \copy does). It reports:
//
//	x-raw-copy   import time / raw COPY time (the target is at most 2)
//	import-ms    the import, parse to commit
//	raw-copy-ms  the raw COPY
//	reimport-ms  importing the same file again (nothing changes)
//	keyed-x-raw-copy
//	             a floor: the same raw COPY into a table that differs from
//	             the bare one only by a primary key on the identity number,
//	             against the bare table. Any roster that can find a person
//	             by identity number and refuse a second row for one pays at
//	             least this (the import also writes households, the
//	             household index and the year's enrolment).
//	schema-x-raw-copy
//	             the floor of this schema: the file's households, persons
//	             (ids given) and enrolments COPYed straight into the real
//	             tables, every index, constraint and foreign key checked, in
//	             a transaction rolled back, against the bare COPY. It is what
//	             any import into these tables costs before it classifies,
//	             validates or merges anything; import-ms minus this is the
//	             import's own work.
//
// Each iteration gets a fresh database (untimed). Run it with
//
//	go test -run '^$' -bench Roster -benchtime 3x ./household
func BenchmarkRosterImport(b *testing.B) {
	data := fullCounty(b)
	ctx := context.Background()
	hh, persons, enrol := schemaRows(b, data)
	var imp, raw, keyed, schema, reimp time.Duration
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		tb := setup(b)
		if _, err := tb.owner.Exec(ctx, `CREATE TABLE raw_roster (household_id text, national_id text, name text,
			relation text, village_code text, category text, insured boolean);
			CREATE TABLE keyed_roster (household_id text, national_id text COLLATE "C" PRIMARY KEY, name text,
			relation text, village_code text, category text, insured boolean)`); err != nil {
			b.Fatal(err)
		}
		conn, err := tb.owner.Acquire(ctx)
		if err != nil {
			b.Fatal(err)
		}
		_, _ = conn.Exec(ctx, `CHECKPOINT`) // best effort: needs a superuser
		b.StartTimer()

		t0 := time.Now()
		if _, err := conn.Conn().PgConn().CopyFrom(ctx, bytes.NewReader(data), `COPY raw_roster FROM STDIN (FORMAT csv, HEADER true)`); err != nil {
			b.Fatal(err)
		}
		raw += time.Since(t0)
		t0 = time.Now()
		if _, err := conn.Conn().PgConn().CopyFrom(ctx, bytes.NewReader(data), `COPY keyed_roster FROM STDIN (FORMAT csv, HEADER true)`); err != nil {
			b.Fatal(err)
		}
		keyed += time.Since(t0)
		t0 = time.Now()
		if err := copySchema(ctx, conn.Conn(), hh, persons, enrol); err != nil {
			b.Fatal(err)
		}
		schema += time.Since(t0)
		conn.Release()

		t0 = time.Now()
		rep, err := Import(ctx, tb.pool, bytes.NewReader(data), Options{Year: 2024})
		if err != nil {
			b.Fatal(err)
		}
		imp += time.Since(t0)
		if rep.Persons.Added != FullCountyPersons || rep.Households.Added != FullCountyHouseholds {
			b.Fatalf("import added %+v %+v", rep.Households, rep.Persons)
		}

		t0 = time.Now()
		rep, err = Import(ctx, tb.pool, bytes.NewReader(data), Options{Year: 2024})
		if err != nil {
			b.Fatal(err)
		}
		reimp += time.Since(t0)
		if rep.Persons.Unchanged != FullCountyPersons {
			b.Fatalf("re-import %+v", rep.Persons)
		}
	}
	n := float64(b.N)
	b.ReportMetric(imp.Seconds()*1000/n, "import-ms")
	b.ReportMetric(raw.Seconds()*1000/n, "raw-copy-ms")
	b.ReportMetric(reimp.Seconds()*1000/n, "reimport-ms")
	b.ReportMetric(imp.Seconds()/raw.Seconds(), "x-raw-copy")
	b.ReportMetric(reimp.Seconds()/raw.Seconds(), "reimport-x-raw-copy")
	b.ReportMetric(keyed.Seconds()/raw.Seconds(), "keyed-x-raw-copy")
	b.ReportMetric(schema.Seconds()/raw.Seconds(), "schema-x-raw-copy")
}

// schemaRows splits a roster file into the rows of the household, person
// (with ids 1..n) and person_insurance tables.
func schemaRows(tb testing.TB, data []byte) (hh, persons, enrol [][]any) {
	recs, err := csv.NewReader(bytes.NewReader(data)).ReadAll()
	if err != nil {
		tb.Fatal(err)
	}
	seen := map[string]bool{}
	for i, r := range recs[1:] {
		if !seen[r[colHousehold]] {
			seen[r[colHousehold]] = true
			hh = append(hh, []any{r[colHousehold], r[colVillage], r[colCategory]})
		}
		id := int64(i + 1)
		persons = append(persons, []any{id, r[colNationalID], r[colName], r[colHousehold], r[colRelation]})
		enrol = append(enrol, []any{id, int32(2024), r[colInsured] == "true"})
	}
	return hh, persons, enrol
}

// copySchema COPYs the rows into the real tables in a transaction it
// rolls back (the deferred head check runs first: SET CONSTRAINTS ALL
// IMMEDIATE at the end).
func copySchema(ctx context.Context, conn *pgx.Conn, hh, persons, enrol [][]any) error {
	tx, err := conn.Begin(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback(ctx)
	for _, c := range []struct {
		table string
		cols  []string
		rows  [][]any
	}{
		{"household", []string{"id", "village_code", "category"}, hh},
		{"person", []string{"id", "national_id", "name", "household_id", "relation"}, persons},
		{"person_insurance", []string{"person_id", "year", "insured"}, enrol},
	} {
		if _, err := tx.CopyFrom(ctx, pgx.Identifier{c.table}, c.cols, pgx.CopyFromRows(c.rows)); err != nil {
			return fmt.Errorf("copy %s: %w", c.table, err)
		}
	}
	_, err = tx.Exec(ctx, `SET CONSTRAINTS ALL IMMEDIATE`)
	return err
}
