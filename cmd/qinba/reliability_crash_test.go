package main

// Crash safety: the real binary under concurrent settlements and referral
// changes is killed with SIGKILL at random moments and restarted. After
// every kill: every request that got a 2xx is in the database, and `qinba
// verify` is clean. After every restart, every request whose answer was
// lost is sent again with the same Idempotency-Key (or external bill
// number, or referral version) and must not create a second settlement,
// bill or referral. The short version runs in the normal suite; the soak
// version (build tag soak, `make soak`) kills at least 20 times.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/qinba/qinba/internal/db"
	"github.com/qinba/qinba/internal/dbtest"
)

// crashConfig shapes one crash run.
type crashConfig struct {
	Kills        int           // SIGKILLs
	MinUp, MaxUp time.Duration // load time before each kill (random in between)
	BillWorkers  int           // goroutines recording and settling bills
	RefWorkers   int           // goroutines sending and accepting referrals
}

// crashFigures are what a crash run reports.
type crashFigures struct {
	Kills        int   // kills survived (restart + verify clean)
	Acknowledged int64 // requests answered 2xx
	Retried      int64 // requests whose answer was lost, sent again after a restart
	Settlements  int   // settlements in the database at the end
	Referrals    int   // referrals in the database at the end
	Lost         int   // acknowledged writes missing from the database (must be 0)
	Duplicates   int   // second settlements / bills / referrals for one key (must be 0)
}

func (f crashFigures) String() string {
	return fmt.Sprintf("kills survived: %d, requests acknowledged: %d, answers lost and retried: %d, "+
		"settlements: %d, referrals: %d, lost: %d, duplicates: %d",
		f.Kills, f.Acknowledged, f.Retried, f.Settlements, f.Referrals, f.Lost, f.Duplicates)
}

// errLost means the request got no usable answer (connection refused or
// reset, the process killed mid-answer, a 503): it must be sent again.
var errLost = errors.New("answer lost")

// billOp records a bill and settles it: POST /bills (external_no is the
// idempotency of the bill), then POST /bills/{id}/settle with a key.
type billOp struct {
	ext       string
	person    int64
	day       int
	billID    int64
	key       string
	settledID int64 // settlement id acknowledged (0 until then)
	retried   bool
}

// refOp sends a referral (Idempotency-Key) and has it accepted (version 1).
type refOp struct {
	key      string
	person   int64
	refID    int64
	accepted bool
	retried  bool
}

// crashRun is the state shared by the workers of a crash run.
type crashRun struct {
	t                      testing.TB
	api                    *apiClient
	clerk, village, townDr string
	acked, retried         atomic.Int64

	mu   sync.Mutex
	lost []any // *billOp or *refOp whose last answer was lost
	done []any // ops completed
	seq  atomic.Int64

	billPersons, refPersons []int64
}

func (r *crashRun) outcome(st int, body []byte, err error) error {
	switch {
	case err != nil:
		return fmt.Errorf("%w: %v", errLost, err)
	case st == http.StatusServiceUnavailable:
		return fmt.Errorf("%w: 503 %s", errLost, body)
	case st >= 500:
		return fmt.Errorf("server error %d: %s", st, body)
	}
	return nil
}

// step advances op by one request; it returns done when op is complete.
func (r *crashRun) step(ctx context.Context, op any) (bool, error) {
	switch o := op.(type) {
	case *billOp:
		if o.billID == 0 {
			in := map[string]any{"person_id": o.person, "facility": facCounty, "kind": "inpatient", "external_no": o.ext,
				"admitted_on": fmt.Sprintf("2019-%02d-01", 1+o.day%11), "discharged_on": fmt.Sprintf("2019-%02d-%02d", 1+o.day%11, 2+o.day%20),
				"lines": []map[string]string{
					{"item_code": "A1", "name": "床位费", "class": "A", "quantity": "5", "unit_price": "60.5"},
					{"item_code": "B1", "name": "药品", "class": "B", "quantity": "1.5", "unit_price": "800.25"},
					{"item_code": "C1", "name": "自费项目", "class": "C", "quantity": "1", "unit_price": "120"},
				}}
			st, body, err := r.api.call(ctx, "POST", "/api/v1/bills", r.clerk, nil, in)
			if err := r.outcome(st, body, err); err != nil {
				return false, err
			}
			if st != http.StatusCreated && st != http.StatusOK {
				return false, fmt.Errorf("create bill %s: %d %s", o.ext, st, body)
			}
			var v struct{ ID int64 }
			if err := json.Unmarshal(body, &v); err != nil || v.ID == 0 {
				return false, fmt.Errorf("create bill: %s", body)
			}
			r.acked.Add(1)
			o.billID = v.ID
			return false, nil
		}
		st, body, err := r.api.call(ctx, "POST", fmt.Sprintf("/api/v1/bills/%d/settle", o.billID), r.clerk, map[string]string{"Idempotency-Key": o.key}, nil)
		if err := r.outcome(st, body, err); err != nil {
			return false, err
		}
		if st != http.StatusCreated {
			return false, fmt.Errorf("settle bill %d (key %s): %d %s", o.billID, o.key, st, body)
		}
		var v struct {
			ID     int64 `json:"id"`
			BillID int64 `json:"bill_id"`
		}
		if err := json.Unmarshal(body, &v); err != nil || v.ID == 0 || v.BillID != o.billID {
			return false, fmt.Errorf("settle answer: %s", body)
		}
		r.acked.Add(1)
		o.settledID = v.ID
		return true, nil
	case *refOp:
		if o.refID == 0 {
			in := map[string]any{"person_id": o.person, "to_facility": facTownship, "urgency": "urgent",
				"diagnoses": []string{"I10"}, "summary": "血压控制不佳 " + o.key}
			st, body, err := r.api.call(ctx, "POST", "/api/v1/referrals", r.village, map[string]string{"Idempotency-Key": o.key}, in)
			if err := r.outcome(st, body, err); err != nil {
				return false, err
			}
			if st != http.StatusCreated {
				return false, fmt.Errorf("create referral %s: %d %s", o.key, st, body)
			}
			var v struct{ ID int64 }
			if err := json.Unmarshal(body, &v); err != nil || v.ID == 0 {
				return false, fmt.Errorf("create referral: %s", body)
			}
			r.acked.Add(1)
			o.refID = v.ID
			return false, nil
		}
		st, body, err := r.api.call(ctx, "POST", fmt.Sprintf("/api/v1/referrals/%d/accept", o.refID), r.townDr, nil, map[string]any{"version": 1, "note": "收到"})
		if err := r.outcome(st, body, err); err != nil {
			return false, err
		}
		switch {
		case st == http.StatusOK:
		case st == http.StatusConflict && o.retried && strings.Contains(string(body), `"accepted"`):
			// The lost accept had committed: the retry sees it done.
		default:
			return false, fmt.Errorf("accept referral %d: %d %s", o.refID, st, body)
		}
		r.acked.Add(1)
		o.accepted = true
		return true, nil
	}
	panic("unknown op")
}

// newOp makes the next operation of a worker.
func (r *crashRun) newOp(bill bool) any {
	n := r.seq.Add(1)
	if bill {
		return &billOp{ext: fmt.Sprintf("CR-%06d", n), person: r.billPersons[int(n)%len(r.billPersons)], day: int(n), key: fmt.Sprintf("crash-settle-%06d", n)}
	}
	return &refOp{key: fmt.Sprintf("crash-ref-%06d", n), person: r.refPersons[int(n)%len(r.refPersons)]}
}

// worker runs operations until ctx ends; an operation whose answer is lost
// is parked for the retry after the restart.
func (r *crashRun) worker(ctx context.Context, bill bool) {
	for ctx.Err() == nil {
		op := r.newOp(bill)
		for {
			done, err := r.step(ctx, op)
			if err != nil {
				if !errors.Is(err, errLost) && ctx.Err() == nil {
					r.t.Errorf("%v", err)
				}
				r.mu.Lock()
				r.lost = append(r.lost, op)
				r.mu.Unlock()
				return // the server is (being) killed: stop this worker
			}
			if done {
				r.mu.Lock()
				r.done = append(r.done, op)
				r.mu.Unlock()
				break
			}
		}
	}
}

// recover completes every parked operation with its original keys.
func (r *crashRun) recoverLost(t testing.TB) {
	r.mu.Lock()
	ops := r.lost
	r.lost = nil
	r.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var wg sync.WaitGroup
	for _, op := range ops {
		r.retried.Add(1)
		switch o := op.(type) {
		case *billOp:
			o.retried = true
		case *refOp:
			o.retried = true
		}
		wg.Go(func() {
			for {
				done, err := r.step(ctx, op)
				if err != nil {
					t.Errorf("retry after restart: %v", err)
					return
				}
				if done {
					break
				}
			}
			r.mu.Lock()
			r.done = append(r.done, op)
			r.mu.Unlock()
		})
	}
	wg.Wait()
}

// checkAcknowledged counts acknowledged writes missing from the database.
func (r *crashRun) checkAcknowledged(t testing.TB, owner *pgxpool.Pool) int {
	t.Helper()
	ctx := context.Background()
	r.mu.Lock()
	ops := append(append([]any(nil), r.done...), r.lost...)
	r.mu.Unlock()
	missing := 0
	for _, op := range ops {
		var n int
		switch o := op.(type) {
		case *billOp:
			if o.billID != 0 {
				if err := owner.QueryRow(ctx, `SELECT count(*) FROM bill WHERE id = $1 AND external_no = $2`, o.billID, o.ext).Scan(&n); err != nil {
					t.Fatal(err)
				}
				if n != 1 {
					missing++
					t.Errorf("acknowledged bill %d (%s) is not in the database", o.billID, o.ext)
				}
			}
			if o.settledID != 0 {
				if err := owner.QueryRow(ctx, `SELECT count(*) FROM settlement WHERE id = $1 AND bill_id = $2 AND kind = 'settle'`, o.settledID, o.billID).Scan(&n); err != nil {
					t.Fatal(err)
				}
				if n != 1 {
					missing++
					t.Errorf("acknowledged settlement %d of bill %d is not in the database", o.settledID, o.billID)
				}
			}
		case *refOp:
			if o.refID != 0 {
				if err := owner.QueryRow(ctx, `SELECT count(*) FROM referral WHERE id = $1`, o.refID).Scan(&n); err != nil {
					t.Fatal(err)
				}
				if n != 1 {
					missing++
					t.Errorf("acknowledged referral %d is not in the database", o.refID)
				}
			}
			if o.accepted {
				var state string
				if err := owner.QueryRow(ctx, `SELECT state FROM referral WHERE id = $1`, o.refID).Scan(&state); err != nil || state != "accepted" {
					missing++
					t.Errorf("acknowledged accept of referral %d: state %q (%v)", o.refID, state, err)
				}
			}
		}
	}
	return missing
}

// checkNoDuplicates proves that no key made two of anything.
func (r *crashRun) checkNoDuplicates(t testing.TB, owner *pgxpool.Pool) (dups, settlements, referrals int) {
	t.Helper()
	ctx := context.Background()
	q := func(sql string, args ...any) int {
		var n int
		if err := owner.QueryRow(ctx, sql, args...).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	nBills, nRefs := 0, 0
	for _, op := range r.done {
		switch op.(type) {
		case *billOp:
			nBills++
		case *refOp:
			nRefs++
		}
	}
	if n := q(`SELECT count(*) FROM (SELECT bill_id FROM settlement WHERE kind = 'settle' GROUP BY bill_id HAVING count(*) > 1) d`); n > 0 {
		dups += n
		t.Errorf("%d bills settled more than once", n)
	}
	if n := q(`SELECT count(*) FROM bill WHERE external_no LIKE 'CR-%'`); n != nBills {
		dups += abs(n - nBills)
		t.Errorf("%d bills in the database, %d bill operations", n, nBills)
	}
	// The run's settlements (the demo seed settled a year of its own).
	settlements = q(`SELECT count(*) FROM settlement s JOIN bill b ON b.id = s.bill_id WHERE s.kind = 'settle' AND b.external_no LIKE 'CR-%'`)
	if settlements != nBills {
		dups += abs(settlements - nBills)
		t.Errorf("%d settlements in the database, %d settle operations", settlements, nBills)
	}
	referrals = q(`SELECT count(*) FROM referral WHERE summary LIKE '%crash-ref-%'`)
	if referrals != nRefs {
		dups += abs(referrals - nRefs)
		t.Errorf("%d referrals in the database, %d referral operations", referrals, nRefs)
	}
	if n := q(`SELECT count(*) FROM referral WHERE summary LIKE '%crash-ref-%' AND state <> 'accepted'`); n != 0 {
		t.Errorf("%d referrals not accepted after every accept completed", n)
	}
	return dups, settlements, referrals
}

func abs(n int) int {
	if n < 0 {
		return -n
	}
	return n
}

// runCrashTest is the crash run shared by the short and the soak tests.
func runCrashTest(t *testing.T, cfg crashConfig) crashFigures {
	t.Helper()
	ctx := context.Background()
	bin := qinbaBinary(t)
	url := dbtest.NewURL(t)
	if out, err := runBinary(t, bin, "seed", "--demo", "--database-url", url); err != nil {
		t.Fatalf("seed: %v\n%s", err, out)
	}
	owner, err := db.Open(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(owner.Close)
	// The demo roster is of the current year; the reference policy is
	// 2019's: enrol everyone in 2019 too.
	if _, err := owner.Exec(ctx, `INSERT INTO person_insurance (person_id, year, insured) SELECT id, 2019, true FROM person ON CONFLICT DO NOTHING`); err != nil {
		t.Fatal(err)
	}
	run := &crashRun{t: t}
	ids := func(sql string) []int64 {
		rows, err := owner.Query(ctx, sql)
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		var out []int64
		for rows.Next() {
			var id int64
			if err := rows.Scan(&id); err != nil {
				t.Fatal(err)
			}
			out = append(out, id)
		}
		if err := rows.Err(); err != nil || len(out) == 0 {
			t.Fatalf("persons: %v (%d)", err, len(out))
		}
		return out
	}
	run.billPersons = ids(`SELECT id FROM person ORDER BY id`)
	run.refPersons = ids(`SELECT p.id FROM person p JOIN household h ON h.id = p.household_id WHERE h.village_code = '` + facVillage + `' ORDER BY p.id`)

	serveArgs := []string{"serve", "--addr", "127.0.0.1:0", "--database-url", dbtest.AppURL(url), "--shutdown-timeout", "2s"}
	srv := startServerProc(t, bin, nil, serveArgs...)
	run.api = newAPIClient(srv.Base)
	run.clerk = run.api.loginAs(t, "demo.billing", demoPassword)
	run.village = run.api.loginAs(t, "demo.village", demoPassword)
	run.townDr = run.api.loginAs(t, "demo.township", demoPassword)

	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 42))
	var fig crashFigures
	for k := range cfg.Kills {
		loadCtx, stopLoad := context.WithCancel(ctx)
		var wg sync.WaitGroup
		for i := range cfg.BillWorkers + cfg.RefWorkers {
			wg.Go(func() { run.worker(loadCtx, i < cfg.BillWorkers) })
		}
		up := cfg.MinUp + time.Duration(rng.Int64N(int64(cfg.MaxUp-cfg.MinUp)+1))
		time.Sleep(up)
		srv.Kill()
		stopLoad()
		wg.Wait()
		if t.Failed() {
			t.Fatalf("kill %d: stderr of the server:\n%s", k+1, tail(srv.Stderr.String(), 4000))
		}

		// What the crash left: every acknowledged write is there and the
		// books verify.
		fig.Lost += run.checkAcknowledged(t, owner)
		if out, err := runBinary(t, bin, "verify", "--database-url", url); err != nil || !strings.HasPrefix(out, "ok:") {
			t.Fatalf("verify after kill %d: %v\n%s", k+1, err, out)
		}

		srv = startServerProc(t, bin, nil, serveArgs...)
		run.api.setBase(srv.Base)
		run.recoverLost(t)
		if t.Failed() {
			t.Fatalf("after restart %d: stderr of the server:\n%s", k+1, tail(srv.Stderr.String(), 4000))
		}
		fig.Kills++
		t.Logf("kill %d after %s: %d acknowledged so far, %d retried", k+1, up.Round(time.Millisecond), run.acked.Load(), run.retried.Load())
	}
	// A last load phase ends gracefully.
	fig.Lost += run.checkAcknowledged(t, owner)
	dups, settlements, referrals := run.checkNoDuplicates(t, owner)
	if out, err := runBinary(t, bin, "verify", "--database-url", url); err != nil || !strings.HasPrefix(out, "ok:") {
		t.Fatalf("final verify: %v\n%s", err, out)
	} else {
		t.Logf("final %s", strings.TrimSpace(out))
	}
	if s := srv.Stderr.String(); strings.Contains(s, "level=ERROR") {
		t.Errorf("server logged errors:\n%s", tail(s, 4000))
	}
	fig.Acknowledged, fig.Retried = run.acked.Load(), run.retried.Load()
	fig.Settlements, fig.Referrals, fig.Duplicates = settlements, referrals, dups
	var idem int
	if err := owner.QueryRow(ctx, `SELECT count(*) FROM settlement_idempotency WHERE key LIKE 'crash-settle-%'`).Scan(&idem); err != nil || idem != settlements {
		t.Errorf("%d settle idempotency records, %d settlements (%v)", idem, settlements, err)
	}
	if fig.Lost != 0 || fig.Duplicates != 0 {
		t.Errorf("crash run: %s", fig)
	}
	if fig.Kills < cfg.Kills {
		t.Errorf("survived %d of %d kills", fig.Kills, cfg.Kills)
	}
	return fig
}

func tail(s string, n int) string {
	if len(s) > n {
		return "…" + s[len(s)-n:]
	}
	return s
}

// writeSoakFigures records the figures the README quotes in var/soak-figures.txt.
func writeSoakFigures(t *testing.T, name string, fig crashFigures, took time.Duration) {
	t.Helper()
	root, err := dbtest.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	line := fmt.Sprintf("%s %s: %s (%s)\n", time.Now().UTC().Format(time.RFC3339), name, fig, took.Round(time.Second))
	path := filepath.Join(root, "var", "soak-figures.txt")
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(line), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("figures written to %s", path)
}

// TestCrashSafetyShort: 5 SIGKILLs of the real server under concurrent
// settlements and referral changes. Nothing acknowledged is lost, no retry
// makes a second settlement, and the books verify after every kill.
func TestCrashSafetyShort(t *testing.T) {
	t.Parallel()
	start := time.Now()
	fig := runCrashTest(t, crashConfig{Kills: 5, MinUp: 300 * time.Millisecond, MaxUp: 1200 * time.Millisecond, BillWorkers: 6, RefWorkers: 3})
	t.Logf("crash safety (short): %s in %s", fig, time.Since(start).Round(time.Millisecond))
}
