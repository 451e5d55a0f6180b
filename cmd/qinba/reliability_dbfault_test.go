package main

// Database faults: PostgreSQL stops under load and comes back. While it is
// down the server says it is not ready (/readyz 503) and API requests get
// 503 with the JSON error shape: never a 500, never a wrong answer. When the
// database is back the server recovers by itself.

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/qinba/qinba/internal/db"
	"github.com/qinba/qinba/internal/pgcluster"
	"github.com/qinba/qinba/migrations"
)

// faultPhase is where the database is.
type faultPhase int32

const (
	phaseUp       faultPhase = iota // before the outage
	phaseOutage                     // from Stop until Start returns
	phaseRecovery                   // Start returned; the server may still be reconnecting
	phaseBack                       // /readyz answered 200 again
)

func TestDatabaseRestartUnderLoad(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	// A private cluster: the shared test cluster must not be stopped under
	// the other test binaries.
	cl := pgcluster.New(filepath.Join(t.TempDir(), "pg"))
	cl.Fast = true
	if err := cl.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cl.Stop(context.Background()) })
	if err := cl.CreateDatabase(ctx, "qinba"); err != nil {
		t.Fatal(err)
	}
	ownerURL := cl.URL("qinba")
	var out strings.Builder
	env := &Env{Stdout: &out, Stderr: &out, Getenv: func(string) string { return "" }}
	if err := Run(ctx, env, []string{"seed", "--demo", "--database-url", ownerURL}); err != nil {
		t.Fatalf("seed: %v\n%s", err, out.String())
	}
	pool, err := db.Open(ctx, cl.UserURL(migrations.AppRole, "qinba"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	logs := &syncBuffer{}
	app, err := NewApp(Config{Addr: "127.0.0.1:0", BodyLimit: "12M", ShutdownTimeout: 5 * time.Second, VarDir: t.TempDir(), Issuer: "qinba-test"},
		slog.New(slog.NewTextHandler(logs, nil)), pool)
	if err != nil {
		t.Fatal(err)
	}
	if err := app.Listen(); err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- app.Run(runCtx) }()
	t.Cleanup(func() {
		stop()
		<-done
	})
	api := newAPIClient("http://" + app.Addr())
	clerk := api.loginAs(t, "demo.billing", demoPassword)
	village := api.loginAs(t, "demo.village", demoPassword)
	var person int64
	if err := pool.QueryRow(ctx, `SELECT p.id FROM person p JOIN household h ON h.id = p.household_id WHERE h.village_code = $1 ORDER BY p.id LIMIT 1`, facVillage).Scan(&person); err != nil {
		t.Fatal(err)
	}

	var phase atomic.Int32
	type tally struct{ ok, unavailable int }
	var mu sync.Mutex
	counts := map[faultPhase]*tally{phaseUp: {}, phaseOutage: {}, phaseRecovery: {}, phaseBack: {}}
	var refKeys sync.Map // key -> acknowledged referral id (0 if not yet)
	var seq atomic.Int64

	// check classifies one answer; anything but 2xx, or 503 with the
	// error shape while the database is (or was just) down, fails.
	check := func(what string, ph faultPhase, st int, body []byte, err error) {
		if err != nil {
			t.Errorf("%s in phase %d: transport error %v", what, ph, err)
			return
		}
		mu.Lock()
		defer mu.Unlock()
		switch {
		case st >= 200 && st < 300:
			counts[ph].ok++
		case st == http.StatusServiceUnavailable && (ph == phaseOutage || ph == phaseRecovery):
			var eb struct {
				Error struct{ Code, Message string } `json:"error"`
			}
			if json.Unmarshal(body, &eb) != nil || eb.Error.Code != "unavailable" || eb.Error.Message == "" {
				t.Errorf("%s: 503 without the error shape: %s", what, body)
			}
			counts[ph].unavailable++
		default:
			t.Errorf("%s in phase %d: %d %s", what, ph, st, body)
		}
	}
	loadCtx, stopLoad := context.WithCancel(ctx)
	var wg sync.WaitGroup
	reqs := []struct {
		name          string
		method, path  string
		tok           string
		write         bool
		expectJSONArr bool
	}{
		{"readyz", "GET", "/readyz", "", false, false},
		{"list referrals", "GET", "/api/v1/referrals", village, false, false},
		{"list bills", "GET", "/api/v1/bills", clerk, false, false},
		{"persons", "GET", "/api/v1/persons?q=" + "张", village, false, false},
		{"create referral", "POST", "/api/v1/referrals", village, true, false},
	}
	for _, rq := range reqs {
		for range 2 {
			wg.Go(func() {
				for loadCtx.Err() == nil {
					ph := faultPhase(phase.Load())
					var body any
					hdr := map[string]string{}
					key := ""
					if rq.write {
						key = fmt.Sprintf("fault-%d", seq.Add(1))
						hdr["Idempotency-Key"] = key
						body = map[string]any{"person_id": person, "to_facility": facTownship, "urgency": "routine", "diagnoses": []string{"J18.9"}, "summary": "肺炎复查 " + key}
						refKeys.Store(key, int64(0))
					}
					rctx, cancel := context.WithTimeout(loadCtx, 15*time.Second)
					st, data, err := api.call(rctx, rq.method, rq.path, rq.tok, hdr, body)
					cancel()
					if loadCtx.Err() != nil {
						return
					}
					// A request sent just before the outage may be answered
					// during it: classify it by the later phase in that case.
					if end := faultPhase(phase.Load()); ph == phaseUp && end == phaseOutage {
						ph = end
					}
					check(rq.name, ph, st, data, err)
					if rq.write && st == http.StatusCreated {
						var v struct{ ID int64 }
						_ = json.Unmarshal(data, &v)
						refKeys.Store(key, v.ID)
					}
					time.Sleep(5 * time.Millisecond)
				}
			})
		}
	}

	time.Sleep(800 * time.Millisecond)
	phase.Store(int32(phaseOutage))
	if err := cl.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	time.Sleep(1500 * time.Millisecond)
	// While down: not ready, and the API says unavailable.
	st, body, err := api.call(ctx, "GET", "/readyz", "", nil, nil)
	if err != nil || st != http.StatusServiceUnavailable {
		t.Errorf("readyz during the outage: %d %s %v", st, body, err)
	}
	if err := cl.Start(ctx); err != nil {
		t.Fatal(err)
	}
	phase.Store(int32(phaseRecovery))
	back := time.Now()
	deadline := time.Now().Add(30 * time.Second)
	for {
		st, _, err := api.call(ctx, "GET", "/readyz", "", nil, nil)
		if err == nil && st == http.StatusOK {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("not ready 30s after the database came back")
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("ready again %s after the database came back", time.Since(back).Round(time.Millisecond))
	// Give the pool a moment to replace every dead connection; from here
	// on everything must succeed.
	time.Sleep(200 * time.Millisecond)
	phase.Store(int32(phaseBack))
	time.Sleep(time.Second)
	stopLoad()
	wg.Wait()

	mu.Lock()
	for _, ph := range []faultPhase{phaseUp, phaseOutage, phaseRecovery, phaseBack} {
		t.Logf("phase %d: %d ok, %d unavailable", ph, counts[ph].ok, counts[ph].unavailable)
	}
	if counts[phaseOutage].unavailable == 0 {
		t.Errorf("no 503 during the outage: the load did not reach the database?")
	}
	if counts[phaseBack].ok == 0 || counts[phaseUp].ok == 0 {
		t.Errorf("no successful requests before or after the outage")
	}
	mu.Unlock()

	// Acknowledged writes are there; the unanswered ones are retried with
	// their key and make exactly one referral each.
	refKeys.Range(func(k, v any) bool {
		key, id := k.(string), v.(int64)
		if id == 0 {
			st, data, err := api.call(ctx, "POST", "/api/v1/referrals", village, map[string]string{"Idempotency-Key": key},
				map[string]any{"person_id": person, "to_facility": facTownship, "urgency": "routine", "diagnoses": []string{"J18.9"}, "summary": "肺炎复查 " + key})
			if err != nil || st != http.StatusCreated {
				t.Errorf("retry %s: %d %s %v", key, st, data, err)
			}
			return true
		}
		var n int
		if err := pool.QueryRow(ctx, `SELECT count(*) FROM referral WHERE id = $1`, id).Scan(&n); err != nil || n != 1 {
			t.Errorf("acknowledged referral %d (%s) missing: %v", id, key, err)
		}
		return true
	})
	var nRefs, nKeys int
	if err := pool.QueryRow(ctx, `SELECT count(*), count(DISTINCT summary) FROM referral WHERE summary LIKE '%fault-%'`).Scan(&nRefs, &nKeys); err != nil {
		t.Fatal(err)
	}
	sent := 0
	refKeys.Range(func(any, any) bool { sent++; return true })
	if nRefs != nKeys || nRefs != sent {
		t.Errorf("%d referrals for %d distinct keys, %d keys sent", nRefs, nKeys, sent)
	}
	if s := logs.String(); strings.Contains(s, "status=500") {
		t.Errorf("a request failed with 500:\n%s", tail(s, 4000))
	}
}
