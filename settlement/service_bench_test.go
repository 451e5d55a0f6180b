package settlement

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/qinba/qinba/auth"
	"github.com/qinba/qinba/household"
	"github.com/qinba/qinba/internal/db"
	"github.com/qinba/qinba/internal/dbtest"
)

// benchPersons is how many patients the throughput benchmark bills.
const benchPersons = 5000

// benchConcurrency is how many settlements run at once (QINBA_BENCH_CONCURRENCY
// overrides it).
var benchConcurrency = func() int {
	if n, err := strconv.Atoi(os.Getenv("QINBA_BENCH_CONCURRENCY")); err == nil && n > 0 {
		return n
	}
	return 8
}()

// seedBench loads benchPersons insured persons (a mix of categories) in
// the demo county and n open bills of theirs at township T420626-01 (two
// thirds outpatient visits, one third inpatient stays, 3 to 8 lines), in
// bulk, as the schema owner.
func seedBench(tb testing.TB, owner *pgxpool.Pool, n int) {
	tb.Helper()
	ctx := context.Background()
	cats := []string{CategoryRegisteredPoor, CategoryDibao, CategoryTekun, CategoryNone}
	var hh, persons [][]any
	for i := range benchPersons {
		hh = append(hh, []any{fmt.Sprintf("BH%05d", i), tVillage, cats[i%len(cats)]})
		id17 := fmt.Sprintf("420626%04d%02d01%03d", 1940+i/10000%60, 1+i/1000%10, i%1000)
		persons = append(persons, []any{id17 + string(household.CheckChar(id17)), fmt.Sprintf("患者%d", i), fmt.Sprintf("BH%05d", i), "head"})
	}
	if _, err := owner.CopyFrom(ctx, pgx.Identifier{"household"}, []string{"id", "village_code", "category"}, pgx.CopyFromRows(hh)); err != nil {
		tb.Fatal(err)
	}
	if _, err := owner.CopyFrom(ctx, pgx.Identifier{"person"}, []string{"national_id", "name", "household_id", "relation"}, pgx.CopyFromRows(persons)); err != nil {
		tb.Fatal(err)
	}
	for _, q := range []string{
		`INSERT INTO person_insurance (person_id, year, insured) SELECT id, 2019, true FROM person`,
		`INSERT INTO bill (person_id, facility_code, tier, region_code, kind, admitted_on, discharged_on, visit_on, bill_date,
				total, line_count, content_sha256, source)
			SELECT p.id, 'T420626-01', 'township', '420626', k.kind,
				CASE WHEN k.kind = 'inpatient' THEN d.day - 5 END, CASE WHEN k.kind = 'inpatient' THEN d.day END,
				CASE WHEN k.kind = 'outpatient' THEN d.day END, d.day, 0, 3 + g.i % 6, sha256(g.i::text::bytea), 'import'
			FROM generate_series(1, $1) AS g(i)
			CROSS JOIN LATERAL (SELECT (SELECT min(id) FROM person) + g.i % ` + strconv.Itoa(benchPersons) + ` AS id) p
			CROSS JOIN LATERAL (SELECT CASE WHEN g.i % 3 = 0 THEN 'inpatient' ELSE 'outpatient' END AS kind) k
			CROSS JOIN LATERAL (SELECT date '2019-01-06' + (g.i * 7) % 350 AS day) d`,
		`INSERT INTO bill_line (bill_id, line_no, item_code, item_name, class, quantity, unit_price, amount)
			SELECT b.id, n, 'IT' || n, '项目' || n, (ARRAY['A', 'A', 'B', 'C'])[1 + (b.id + n) % 4], 1,
				CASE WHEN b.kind = 'inpatient' THEN 300 + (b.id * 37 + n * 101) % 2500 ELSE 5 + (b.id + n * 13) % 40 END,
				CASE WHEN b.kind = 'inpatient' THEN 300 + (b.id * 37 + n * 101) % 2500 ELSE 5 + (b.id + n * 13) % 40 END
			FROM bill b CROSS JOIN LATERAL generate_series(1, b.line_count) AS n`,
		`UPDATE bill b SET total = (SELECT sum(amount) FROM bill_line WHERE bill_id = b.id)`,
		`INSERT INTO bill_state (bill_id) SELECT id FROM bill`,
		`VACUUM ANALYZE`,
	} {
		var args []any
		if strings.Contains(q, "$1") {
			args = []any{n}
		}
		if _, err := owner.Exec(ctx, q, args...); err != nil {
			tb.Fatalf("%.60s: %v", q, err)
		}
	}
}

// BenchmarkSettleService measures settlement throughput through the
// service against PostgreSQL: benchConcurrency goroutines call
// Service.Settle (with an Idempotency-Key, as the API does) on open bills
// of benchPersons persons, each settlement its own transaction (bill and
// accumulator locks, engine, settlement with its trace, journal entry,
// accumulators, audit entry, idempotency record). b.N bills are created
// before the timer starts; run it with a fixed count, e.g.
//
//	go test -run '^$' -bench BenchmarkSettleService -benchtime 20000x -count 1 ./settlement/
//
// It reports settlements/s; Verify checks the books afterwards.
func BenchmarkSettleService(b *testing.B) {
	owner, _ := dbtest.NewApp(b)
	ctx := context.Background()
	if err := importDemo(ctx, owner); err != nil {
		b.Fatal(err)
	}
	seedBench(b, owner, b.N)
	u, err := url.Parse(dbtest.AppURL(owner.Config().ConnString()))
	if err != nil {
		b.Fatal(err)
	}
	q := u.Query()
	q.Set("pool_max_conns", strconv.Itoa(benchConcurrency))
	u.RawQuery = q.Encode()
	pool, err := db.Open(ctx, u.String())
	if err != nil {
		b.Fatal(err)
	}
	defer pool.Close()
	reg, err := NewRegistry()
	if err != nil {
		b.Fatal(err)
	}
	svc := NewService(pool, nil, reg)
	var clerk auth.Principal
	clerk.Role, clerk.Facility, clerk.Region, clerk.Tier = auth.RoleBillingClerk, tTownship, "420626", "township"
	clerk.Username = "bench.clerk"
	if err := owner.QueryRow(ctx, `INSERT INTO app_user (username, password_hash, role, facility_code)
		VALUES ($1, '$argon2id$v=19$m=8,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA', 'billing_clerk', $2) RETURNING id`,
		clerk.Username, tTownship).Scan(&clerk.UserID); err != nil {
		b.Fatal(err)
	}
	rows, err := pool.Query(ctx, `SELECT bill_id FROM bill_state WHERE status = 'open' ORDER BY bill_id`)
	if err != nil {
		b.Fatal(err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil {
		b.Fatal(err)
	}
	if len(ids) != b.N {
		b.Fatalf("%d bills, want %d", len(ids), b.N)
	}
	// Warm the pool's connections.
	var wg sync.WaitGroup
	for range benchConcurrency {
		wg.Add(1)
		go func() { defer wg.Done(); _ = pool.Ping(ctx) }()
	}
	wg.Wait()
	var next atomic.Int64
	var failed atomic.Value
	pgPIDs := backendPIDs(ctx, pool)
	goCPU0, pgCPU0 := processCPU(), cpuOf(pgPIDs)
	b.ResetTimer()
	for range benchConcurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1) - 1
				if i >= int64(len(ids)) {
					return
				}
				if _, err := svc.Settle(ctx, &clerk, ids[i], SettleOptions{Key: "bench-" + strconv.FormatInt(ids[i], 10)}); err != nil {
					failed.CompareAndSwap(nil, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	b.StopTimer()
	if err, _ := failed.Load().(error); err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "settlements/s")
	// CPU per settlement, of this process and of the PostgreSQL backends
	// serving the pool (when the server runs on this machine): unlike the
	// rate, it does not depend on what else the machine is doing.
	b.ReportMetric(float64(processCPU()-goCPU0)/float64(time.Millisecond)/float64(b.N), "go-cpu-ms/op")
	if pgCPU0 >= 0 {
		if pg := cpuOf(pgPIDs); pg >= 0 {
			b.ReportMetric(float64(pg-pgCPU0)/float64(time.Millisecond)/float64(b.N), "pg-cpu-ms/op")
		}
	}
	if b.N <= 50000 {
		if err := Verify(ctx, pool); err != nil {
			b.Fatal(err)
		}
	}
}

// backendPIDs returns the server process ids of the pool's connections.
func backendPIDs(ctx context.Context, pool *pgxpool.Pool) []int {
	var pids []int
	var mu sync.Mutex
	var wg sync.WaitGroup
	for range pool.Config().MaxConns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := pool.Acquire(ctx)
			if err != nil {
				return
			}
			defer c.Release()
			time.Sleep(50 * time.Millisecond) // hold it, so that every connection is opened
			mu.Lock()
			pids = append(pids, int(c.Conn().PgConn().PID()))
			mu.Unlock()
		}()
	}
	wg.Wait()
	return pids
}

// cpuOf sums the user and system CPU time of processes (from /proc), or
// returns -1 when one cannot be read (the server runs elsewhere).
func cpuOf(pids []int) time.Duration {
	var total time.Duration
	for _, pid := range pids {
		data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			return -1
		}
		// Fields after the command name (which is in parentheses): utime
		// and stime are the 12th and 13th, in clock ticks (100 Hz).
		f := strings.Fields(string(data[strings.LastIndexByte(string(data), ')')+1:]))
		if len(f) < 13 {
			return -1
		}
		u, _ := strconv.ParseInt(f[11], 10, 64)
		st, _ := strconv.ParseInt(f[12], 10, 64)
		total += time.Duration(u+st) * 10 * time.Millisecond
	}
	return total
}

// processCPU is this process's user and system CPU time.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkSettlePending measures the batch run behind `qinba settle
// --pending` on b.N open bills of benchPersons persons (4 workers, as the
// command's default), reported as bills/s and as the seconds 100,000 bills
// would take. The timing the target is stated for is the command's own on
// a generated county year (see settlement/generate.go and the README).
//
//	go test -run '^$' -bench BenchmarkSettlePending -benchtime 20000x -count 1 ./settlement/
func BenchmarkSettlePending(b *testing.B) {
	owner, pool := dbtest.NewApp(b)
	ctx := context.Background()
	if err := importDemo(ctx, owner); err != nil {
		b.Fatal(err)
	}
	seedBench(b, owner, b.N)
	reg, err := NewRegistry()
	if err != nil {
		b.Fatal(err)
	}
	svc := NewService(pool, nil, reg)
	b.ResetTimer()
	rep, err := svc.SettlePending(ctx, PendingOptions{})
	b.StopTimer()
	if err != nil {
		b.Fatal(err)
	}
	if rep.Settled != b.N {
		b.Fatalf("settled %d of %d: %+v", rep.Settled, b.N, rep.Failed)
	}
	rate := float64(b.N) / b.Elapsed().Seconds()
	b.ReportMetric(rate, "bills/s")
	b.ReportMetric(100000/rate, "s/100k")
	if err := Verify(ctx, pool); err != nil {
		b.Fatal(err)
	}
}
