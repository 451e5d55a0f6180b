package main

// The shared test harness: the real App on a fresh database, served on a
// loopback port, with helpers to create users, log in and call the API.
//
//	ts := newTestServer(t)
//	doc := ts.as(t, auth.RoleDoctor, facTownship)      // a new user's token (minted)
//	st, body := ts.do(t, "GET", "/api/v1/auth/me", doc, nil)
//
//	name, pw := ts.user(t, auth.RoleAdmin, facCounty)  // a new user
//	tok := ts.login(t, name, pw)                       // a real login (argon2, throttled)
//
// The database holds the demo county (facility.DemoCSV, region 420626) and
// a second county in region 420625 (otherRegionCSV), so tests can check
// "own facility", "other facility of the same region" and "other region".
// Every route's authorisation is listed in routeAccess (auth_matrix_test.go):
// add an entry for each route you add.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/qinba/qinba/auth"
	"github.com/qinba/qinba/facility"
	"github.com/qinba/qinba/internal/db"
	"github.com/qinba/qinba/internal/dbtest"
)

// Facilities of the test database. The demo county (region 420626):
// village V420626-001 under township T420626-01 under county K420626-01.
// A second county (region 420625) gives admins an "other region".
const (
	testRegion      = "420626"
	facCounty       = "K420626-01"
	facCounty2      = "K420626-02" // same region, another county hospital
	facTownship     = "T420626-01"
	facTownship2    = "T420626-02" // same region, another township
	facVillage      = "V420626-001"
	facVillage2     = "V420626-002" // same township, another village
	otherRegion     = "420625"
	facOtherCounty  = "K420625-01"
	facOtherTown    = "T420625-01"
	facOtherVillage = "V420625-001"
)

// otherRegionCSV adds the second county to the demo network.
const otherRegionCSV = `code,name,tier,parent_code,region_code
K420625-01,测试县人民医院,county,C4206-01,420625
T420625-01,测试镇卫生院,township,K420625-01,420625
V420625-001,测试镇第01村卫生室,village,T420625-01,420625
`

// testServer is the real App (NewApp, every mount) served on 127.0.0.1:0
// against a fresh database, stopped when the test ends.
type testServer struct {
	// URL is the server's base URL, e.g. http://127.0.0.1:41234.
	URL string
	// Pool connects as the least-privileged application role, as the
	// server does. Owner connects as the schema owner (superuser): use it
	// for fixtures the application may not write.
	Pool  *pgxpool.Pool
	Owner *pgxpool.Pool
	// DBURL is the owner's URL, for CLI commands (--database-url).
	DBURL string
	App   *App

	client   *http.Client
	password string // every user made by user() has it
	hash     string // its argon2id hash
	seq      atomic.Int64
}

// token is what a login returns. The zero token sends no Authorization.
type token struct {
	Access, Refresh string
}

// bearer returns a token that sends raw as the access token (for forged
// or foreign tokens).
func bearer(raw string) token { return token{Access: raw} }

// newTestServer starts the real App on a fresh database. Set
// QINBA_TEST_LOG=1 to see the server's log on stderr.
func newTestServer(t *testing.T) *testServer {
	t.Helper()
	var logw io.Writer = io.Discard
	if os.Getenv("QINBA_TEST_LOG") != "" {
		logw = os.Stderr
	}
	return newTestServerLog(t, slog.New(slog.NewTextHandler(logw, nil)))
}

// newTestServerLog is newTestServer with the server logging to log.
func newTestServerLog(t *testing.T, log *slog.Logger) *testServer {
	t.Helper()
	ctx := context.Background()
	url := dbtest.NewURL(t)
	owner, err := db.Open(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(owner.Close)
	pool, err := db.Open(ctx, dbtest.AppURL(url))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	for _, csv := range [][]byte{facility.DemoCSV, []byte(otherRegionCSV)} {
		if _, err := facility.Import(ctx, owner, bytes.NewReader(csv)); err != nil {
			t.Fatal(err)
		}
	}
	cfg := Config{Addr: "127.0.0.1:0", BodyLimit: "12M", ShutdownTimeout: 10 * time.Second, VarDir: t.TempDir(), Issuer: "qinba-test"}
	// The tests' peers are on this host: loopback candidates only.
	cfg.Consult = ConsultConfig{MediaLoopback: true, RecordDir: filepath.Join(cfg.VarDir, "recordings")}
	app, err := NewApp(cfg, log, pool)
	if err != nil {
		t.Fatal(err)
	}
	if err := app.Listen(); err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- app.Run(runCtx) }()
	ts := &testServer{URL: "http://" + app.Addr(), Pool: pool, Owner: owner, DBURL: url, App: app,
		client: &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{}}}
	t.Cleanup(func() {
		stop()
		if err := <-done; err != nil {
			t.Errorf("server: %v", err)
		}
		ts.client.CloseIdleConnections()
	})
	ts.password, ts.hash = sharedPassword()
	return ts
}

// sharedPassword is the password of every user() and its hash, made once
// per test binary: argon2 is slow under the race detector and fixtures
// need many users.
var sharedPassword = sync.OnceValues(func() (string, string) {
	pw := fmt.Sprintf("test-pass-%d", time.Now().UnixNano())
	h, err := auth.HashPassword(context.Background(), pw, auth.DefaultHashParams)
	if err != nil {
		panic(err)
	}
	return pw, h
})

// user creates an account with role at facility and returns its username
// and password. Usernames are unique within the server.
func (s *testServer) user(t *testing.T, role auth.Role, facility string) (username, password string) {
	t.Helper()
	name := fmt.Sprintf("t%d.%s", s.seq.Add(1), strings.ReplaceAll(string(role), "_", "-"))
	_, err := auth.CreateUser(context.Background(), s.Pool, auth.NewUser{Username: name, Role: role, Facility: facility, PasswordHash: s.hash})
	if err != nil {
		t.Fatalf("create %s at %s: %v", role, facility, err)
	}
	return name, s.password
}

// login logs in through POST /api/v1/auth/login and fails the test unless
// it succeeds. Logins are throttled per IP (30 at once, then one a
// second): for many users, prefer as() or mint().
func (s *testServer) login(t *testing.T, username, password string) token {
	t.Helper()
	st, body := s.do(t, "POST", "/api/v1/auth/login", token{}, map[string]string{"username": username, "password": password})
	if st != http.StatusOK {
		t.Fatalf("login %s: status %d: %v", username, st, body)
	}
	return token{Access: body["access_token"].(string), Refresh: body["refresh_token"].(string)}
}

// mint issues an access token for an existing user with the server's own
// signing key, without a login (no argon2, no throttle, no refresh token).
// The token is verified by the real middleware like any other.
func (s *testServer) mint(t *testing.T, username string) token {
	t.Helper()
	u, err := auth.GetUserByName(context.Background(), s.Pool, username)
	if err != nil {
		t.Fatalf("mint for %s: %v", username, err)
	}
	raw, err := s.App.Auth.IssueAccessToken(u)
	if err != nil {
		t.Fatal(err)
	}
	return token{Access: raw}
}

// as creates a user with role at facility and returns an access token
// for it (minted).
func (s *testServer) as(t *testing.T, role auth.Role, facility string) token {
	t.Helper()
	name, _ := s.user(t, role, facility)
	return s.mint(t, name)
}

// do sends a request and decodes the JSON answer. body may be nil, a
// []byte or string (sent as is, as JSON), or any value (marshalled). The
// answer is decoded into a map; a JSON array comes back under "items",
// a non-JSON body under "raw"; an empty body gives an empty map.
func (s *testServer) do(t *testing.T, method, path string, tok token, body any) (int, map[string]any) {
	t.Helper()
	resp, data := s.raw(t, method, path, tok, "application/json", body)
	_, m := decodeBody(data)
	return resp.StatusCode, m
}

// decodeBody decodes an answer as do does.
func decodeBody(data []byte) (bool, map[string]any) {
	out := map[string]any{}
	if len(bytes.TrimSpace(data)) == 0 {
		return true, out
	}
	var v any
	if err := json.Unmarshal(data, &v); err != nil {
		out["raw"] = string(data)
		return false, out
	}
	if m, ok := v.(map[string]any); ok {
		return true, m
	}
	out["items"] = v
	return true, out
}

// raw sends a request with a content type and returns the response (body
// already read and closed) and its body.
func (s *testServer) raw(t *testing.T, method, path string, tok token, contentType string, body any) (*http.Response, []byte) {
	t.Helper()
	var r io.Reader
	switch b := body.(type) {
	case nil:
	case []byte:
		r = bytes.NewReader(b)
	case string:
		r = strings.NewReader(b)
	default:
		js, err := json.Marshal(b)
		if err != nil {
			t.Fatal(err)
		}
		r = bytes.NewReader(js)
	}
	req, err := http.NewRequest(method, s.URL+path, r)
	if err != nil {
		t.Fatal(err)
	}
	if r != nil && contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if tok.Access != "" {
		req.Header.Set("Authorization", "Bearer "+tok.Access)
	}
	resp, err := s.client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, data
}

// errCode returns the error code of an error body ("" if none).
func errCode(body map[string]any) string {
	e, _ := body["error"].(map[string]any)
	c, _ := e["code"].(string)
	return c
}
