package referral_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/labstack/echo/v4"

	"github.com/qinba/qinba/auth"
	"github.com/qinba/qinba/facility"
	"github.com/qinba/qinba/household"
	"github.com/qinba/qinba/internal/dbtest"
	"github.com/qinba/qinba/internal/httpx"
	"github.com/qinba/qinba/referral"
)

// Facilities of the demo network used by the tests.
const (
	village  = "V420626-001" // under township
	village2 = "V420626-021" // under township2: unrelated
	township = "T420626-01"
	town2    = "T420626-02"
	county   = "K420626-01"
	city     = "C4206-01"
	// otherCounty is added by setup, in another region (420625).
	otherCounty = "K420625-01"
)

// testBundle is one test's world: a fresh database with the demo network,
// the service on the application role's pool, its hub running, and an HTTP
// server whose API group takes the principal from the X-Test-User header.
type testBundle struct {
	owner *pgxpool.Pool // schema owner: fixtures
	pool  *pgxpool.Pool // application role: the service
	clock *referral.FakeClock
	svc   *referral.Service
	url   string
	mu    sync.Mutex                 // guards users: tests add users while the server reads them
	users map[string]*auth.Principal // by username
	seq   atomic.Int64
}

type setupOpts struct {
	policy    *referral.Policy
	noHub     bool
	bodyLimit string
	// readTimeout is the HTTP server's ReadTimeout (0: none).
	readTimeout time.Duration
}

func setup(t testing.TB, opts ...setupOpts) *testBundle {
	t.Helper()
	var o setupOpts
	if len(opts) > 0 {
		o = opts[0]
	}
	ctx := context.Background()
	owner, pool := dbtest.NewApp(t)
	if _, err := facility.Import(ctx, owner, bytes.NewReader(facility.DemoCSV)); err != nil {
		t.Fatal(err)
	}
	if _, err := owner.Exec(ctx, `INSERT INTO facility (code, name, tier, parent_code, region_code) VALUES ($1, '谷城县人民医院', 'county', $2, '420625')`,
		otherCounty, city); err != nil {
		t.Fatal(err)
	}
	policy := referral.DefaultPolicy()
	if o.policy != nil {
		policy = *o.policy
	}
	clock := referral.NewFakeClock(time.Date(2019, 11, 4, 9, 0, 0, 0, time.UTC))
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	svc, err := referral.NewService(pool, log, policy, clock)
	if err != nil {
		t.Fatal(err)
	}
	b := &testBundle{owner: owner, pool: pool, clock: clock, svc: svc, users: map[string]*auth.Principal{}}
	if !o.noHub {
		hctx, cancel := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() { _ = svc.Hub().Run(hctx); close(done) }()
		t.Cleanup(func() { cancel(); <-done })
		select {
		case <-svc.Hub().Ready():
		case <-time.After(10 * time.Second):
			t.Fatal("hub not listening")
		}
	}
	if o.bodyLimit == "" {
		o.bodyLimit = "12M"
	}
	e := httpx.NewEcho(log, nil, o.bodyLimit)
	g := e.Group("/api/v1", func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			b.mu.Lock()
			p := b.users[c.Request().Header.Get("X-Test-User")]
			b.mu.Unlock()
			if p == nil {
				return &echo.HTTPError{Code: http.StatusUnauthorized, Message: "authentication required"}
			}
			c.SetRequest(c.Request().WithContext(auth.WithPrincipal(c.Request().Context(), p)))
			return next(c)
		}
	})
	referral.NewHandler(svc).Routes(g)
	srv := httptest.NewUnstartedServer(e)
	srv.Config.ReadTimeout = o.readTimeout
	srv.Start()
	t.Cleanup(srv.Close)
	b.url = srv.URL
	return b
}

// user creates a user of role at fac and returns its principal.
func (b *testBundle) user(t testing.TB, role auth.Role, fac string) *auth.Principal {
	t.Helper()
	ctx := context.Background()
	name := fmt.Sprintf("%s.%d", strings.ReplaceAll(string(role), "_", ""), b.seq.Add(1))
	p := &auth.Principal{Username: name, Role: role, Facility: fac}
	if err := b.owner.QueryRow(ctx, `INSERT INTO app_user (username, password_hash, role, facility_code) VALUES ($1, '$argon2id$v=19$m=8,t=1,p=1$c2FsdHNhbHQ$aGFzaA', $2, $3) RETURNING id`,
		name, role, fac).Scan(&p.UserID); err != nil {
		t.Fatal(err)
	}
	if err := b.owner.QueryRow(ctx, `SELECT tier, region_code FROM facility WHERE code = $1`, fac).Scan(&p.Tier, &p.Region); err != nil {
		t.Fatal(err)
	}
	b.mu.Lock()
	b.users[name] = p
	b.mu.Unlock()
	return p
}

// person registers a patient in a household of village and returns the
// person id and the full identity number.
func (b *testBundle) person(t testing.TB, name string) (int64, string) {
	t.Helper()
	return b.personIn(t, name, village)
}

// personIn registers a patient in a household of the village vil.
func (b *testBundle) personIn(t testing.TB, name, vil string) (int64, string) {
	t.Helper()
	ctx := context.Background()
	n := b.seq.Add(1)
	hh := fmt.Sprintf("HH-%d", n)
	if _, err := b.owner.Exec(ctx, `INSERT INTO household (id, village_code, category) VALUES ($1, $2, 'none')`, hh, vil); err != nil {
		t.Fatal(err)
	}
	id17 := fmt.Sprintf("42062619800101%03d", n%1000)
	nid := id17 + string(household.CheckChar(id17))
	var id int64
	if err := b.owner.QueryRow(ctx, `INSERT INTO person (national_id, name, household_id, relation) VALUES ($1, $2, $3, 'head') RETURNING id`,
		nid, name, hh).Scan(&id); err != nil {
		t.Fatal(err)
	}
	return id, nid
}

func ctxFor(p *auth.Principal) context.Context {
	return auth.WithPrincipal(context.Background(), p)
}

// create sends a referral from p to `to` through the service.
func (b *testBundle) create(t testing.TB, p *auth.Principal, to string, urgency referral.Urgency) referral.Referral {
	t.Helper()
	pid, _ := b.person(t, "张三")
	r, _, err := b.svc.Create(ctxFor(p), p, referral.CreateRequest{PersonID: pid, ToFacility: to, Urgency: urgency,
		Diagnoses: []string{"I63.9"}, Summary: "左侧肢体无力 3 小时"}, "")
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func ptr[T any](v T) *T { return &v }

// act applies a through the service with the referral's current version.
func (b *testBundle) act(t testing.TB, p *auth.Principal, r referral.Referral, a referral.Action) referral.Referral {
	t.Helper()
	out, err := b.svc.Act(ctxFor(p), p, r.ID, a, actionBody(a, r.Version))
	if err != nil {
		t.Fatalf("%s: %v", a, err)
	}
	return out
}

// actionBody is a valid body for a at version v.
func actionBody(a referral.Action, v int) referral.ActionRequest {
	req := referral.ActionRequest{Version: ptr(v)}
	switch a {
	case referral.Decline:
		req.Reason = "no bed"
	case referral.Schedule:
		req.ScheduledFor = ptr(time.Date(2019, 11, 5, 8, 0, 0, 0, time.UTC))
	case referral.Complete:
		req.CounterReferral = &referral.CounterReferral{Findings: "脑梗死", Treatment: "溶栓", Advice: "阿司匹林 100mg qd", ReturnDown: true}
	}
	return req
}

// do sends an API request as user and decodes a JSON answer into out (when
// not nil); it returns the response (body consumed).
func (b *testBundle) do(t testing.TB, user *auth.Principal, method, path string, body any, out any, hdr ...string) *http.Response {
	t.Helper()
	var rd io.Reader
	switch v := body.(type) {
	case nil:
	case []byte:
		rd = bytes.NewReader(v)
	case string:
		rd = strings.NewReader(v)
	default:
		j, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		rd = bytes.NewReader(j)
	}
	req, err := http.NewRequest(method, b.url+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if user != nil {
		req.Header.Set("X-Test-User", user.Username)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if out != nil && len(data) > 0 {
		if err := json.Unmarshal(data, out); err != nil {
			t.Fatalf("%s %s: %d %s: %v", method, path, resp.StatusCode, data, err)
		}
	}
	resp.Body = io.NopCloser(bytes.NewReader(data))
	return resp
}

// errBody is the API's error shape.
type errBody struct {
	Error struct {
		Code    string            `json:"code"`
		Message string            `json:"message"`
		Fields  map[string]string `json:"fields"`
		Details map[string]any    `json:"details"`
	} `json:"error"`
}

// sseEvent is one event read from a stream.
type sseEvent struct {
	ID    int64
	Event string
	Data  []byte
}

// stream is an open SSE connection.
type stream struct {
	resp   *http.Response
	events chan sseEvent
	cancel context.CancelFunc
}

// openStream connects user to the stream (resuming after last when >= 0)
// and returns once the server has subscribed it.
func (b *testBundle) openStream(t testing.TB, user *auth.Principal, last int64) *stream {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, b.url+"/api/v1/referrals/stream", nil)
	req.Header.Set("X-Test-User", user.Username)
	if last >= 0 {
		req.Header.Set("Last-Event-ID", strconv.FormatInt(last, 10))
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		cancel()
		data, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		t.Fatalf("stream: %d %s", resp.StatusCode, data)
	}
	s := &stream{resp: resp, events: make(chan sseEvent, 1024), cancel: cancel}
	go func() {
		defer close(s.events)
		readSSE(resp.Body, func(e sseEvent) { s.events <- e })
	}()
	t.Cleanup(s.close)
	return s
}

func (s *stream) close() {
	s.cancel()
	s.resp.Body.Close()
}

// readSSE parses an event stream, calling fn for each event (comments and
// retry lines skipped).
func readSSE(r io.Reader, fn func(sseEvent)) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	var e sseEvent
	has := false
	for sc.Scan() {
		line := sc.Text()
		switch {
		case line == "":
			if has {
				fn(e)
			}
			e, has = sseEvent{}, false
		case strings.HasPrefix(line, ":"), strings.HasPrefix(line, "retry:"):
		case strings.HasPrefix(line, "id: "):
			e.ID, _ = strconv.ParseInt(line[4:], 10, 64)
			has = true
		case strings.HasPrefix(line, "event: "):
			e.Event = line[7:]
			has = true
		case strings.HasPrefix(line, "data: "):
			e.Data = append(e.Data, line[6:]...)
			has = true
		}
	}
}

// next returns the next event of type kind within d, failing otherwise.
func (s *stream) next(t testing.TB, kind string, d time.Duration) sseEvent {
	t.Helper()
	timeout := time.After(d)
	for {
		select {
		case e, ok := <-s.events:
			if !ok {
				t.Fatalf("stream closed while waiting for %s", kind)
			}
			if e.Event == kind {
				return e
			}
		case <-timeout:
			t.Fatalf("no %s event within %s", kind, d)
		}
	}
}

// quiet fails if an event arrives within d.
func (s *stream) quiet(t testing.TB, d time.Duration) {
	t.Helper()
	select {
	case e, ok := <-s.events:
		if ok {
			t.Fatalf("unexpected event %s %d: %s", e.Event, e.ID, e.Data)
		}
	case <-time.After(d):
	}
}

// item decodes a referral stream event.
func item(t testing.TB, e sseEvent) referral.StreamItem {
	t.Helper()
	var it referral.StreamItem
	if err := json.Unmarshal(e.Data, &it); err != nil {
		t.Fatalf("event data %s: %v", e.Data, err)
	}
	if it.Event.ID != e.ID {
		t.Fatalf("event id %d, SSE id %d", it.Event.ID, e.ID)
	}
	return it
}
