package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/qinba/qinba/auth"
	"github.com/qinba/qinba/facility"
	"github.com/qinba/qinba/internal/dbtest"
	"github.com/qinba/qinba/migrations"
)

// newBareApp builds the real App on a fresh database, with authentication
// replaced by a fixed principal (nil: every API request is unauthenticated).
func newBareApp(t *testing.T, p *auth.Principal) (*App, string) {
	t.Helper()
	pool := dbtest.New(t)
	if _, err := facility.Import(context.Background(), pool, bytes.NewReader(facility.DemoCSV)); err != nil {
		t.Fatal(err)
	}
	app, err := NewApp(Config{Addr: "127.0.0.1:0", BodyLimit: "1M", ShutdownTimeout: 5 * time.Second, VarDir: t.TempDir(), Issuer: "qinba-test"},
		slog.New(slog.NewTextHandler(io.Discard, nil)), pool)
	if err != nil {
		t.Fatal(err)
	}
	if p != nil {
		app.Authn = func(next echo.HandlerFunc) echo.HandlerFunc {
			return func(c echo.Context) error {
				c.SetRequest(c.Request().WithContext(auth.WithPrincipal(c.Request().Context(), p)))
				return next(c)
			}
		}
	}
	srv := httptest.NewServer(app.Echo)
	t.Cleanup(srv.Close)
	return app, srv.URL
}

func TestOpenAPIMatchesRoutes(t *testing.T) {
	t.Parallel()
	app, url := newBareApp(t, nil)
	resp, err := http.Get(url + "/api/openapi.json")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var doc struct {
		OpenAPI string                    `json:"openapi"`
		Paths   map[string]map[string]any `json:"paths"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&doc); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(doc.OpenAPI, "3.") {
		t.Fatalf("openapi version %q", doc.OpenAPI)
	}
	documented := map[string]bool{}
	for p, ops := range doc.Paths {
		for m := range ops {
			documented[strings.ToUpper(m)+" "+p] = true
		}
	}
	served := map[string]bool{}
	for _, r := range app.Echo.Routes() {
		if !strings.HasPrefix(r.Path, "/api/") && !strings.HasPrefix(r.Path, "/.well-known/") &&
			r.Path != "/healthz" && r.Path != "/readyz" && r.Path != "/metrics" {
			continue // the UI's pages are not API
		}
		if r.Method == echo.RouteNotFound || strings.HasSuffix(r.Path, "/*") {
			continue
		}
		served[r.Method+" "+openAPIPath(r.Path)] = true
	}
	var missing, stale []string
	for k := range served {
		if !documented[k] {
			missing = append(missing, k)
		}
	}
	for k := range documented {
		if !served[k] {
			stale = append(stale, k)
		}
	}
	sort.Strings(missing)
	sort.Strings(stale)
	if len(missing) > 0 {
		t.Errorf("routes not in the OpenAPI document:\n  %s", strings.Join(missing, "\n  "))
	}
	if len(stale) > 0 {
		t.Errorf("OpenAPI paths with no route:\n  %s", strings.Join(stale, "\n  "))
	}
}

// errorShape decodes the one JSON error shape, failing if the body is not it.
func errorShape(t *testing.T, resp *http.Response) (code string, fields map[string]string) {
	t.Helper()
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Fatalf("content type %q, want JSON", ct)
	}
	var body struct {
		Error struct {
			Code    string            `json:"code"`
			Message string            `json:"message"`
			Fields  map[string]string `json:"fields"`
		} `json:"error"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		t.Fatalf("error body: %v", err)
	}
	if body.Error.Code == "" || body.Error.Message == "" {
		t.Fatalf("error body without code or message: %+v", body)
	}
	return body.Error.Code, body.Error.Fields
}

func TestAPIBadInputIs4xxWithErrorShape(t *testing.T) {
	t.Parallel()
	admin := &auth.Principal{UserID: 1, Username: "admin", Role: auth.RoleAdmin, Facility: "K420626-01", Tier: "county", Region: "420626"}
	_, url := newBareApp(t, admin)
	tests := []struct {
		name, method, path, ctype, body string
		status                          int
		code, field                     string
	}{
		{"unknown filter", "GET", "/api/v1/facilities?colour=red", "", "", 400, "invalid", "colour"},
		{"bad tier", "GET", "/api/v1/facilities?tier=hamlet", "", "", 400, "invalid", "tier"},
		{"bad limit", "GET", "/api/v1/facilities?limit=-3", "", "", 400, "invalid", "limit"},
		{"missing facility", "GET", "/api/v1/facilities/NOPE-1", "", "", 404, "not_found", ""},
		{"missing subtree", "GET", "/api/v1/facilities/NOPE-1/subtree", "", "", 404, "not_found", ""},
		{"no such route", "GET", "/api/v1/nothing-here", "", "", 404, "not_found", ""},
		{"import without file", "POST", "/api/v1/facilities/import", "application/json", `{"file": 1}`, 415, "unsupported", ""},
		{"import bad csv", "POST", "/api/v1/facilities/import", "text/csv", "code,name,tier,parent_code,region_code\nX1,,village,T9,1\n", 400, "invalid", ""},
		{"import bad header", "POST", "/api/v1/facilities/import", "text/csv", "a,b\n", 400, "invalid", ""},
		{"oversized body", "POST", "/api/v1/facilities/import", "text/csv", strings.Repeat("x", 2<<20), 413, "too_large", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, _ := http.NewRequest(tt.method, url+tt.path, strings.NewReader(tt.body))
			if tt.ctype != "" {
				req.Header.Set("Content-Type", tt.ctype)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			if resp.StatusCode != tt.status {
				b, _ := io.ReadAll(resp.Body)
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tt.status, b)
			}
			code, fields := errorShape(t, resp)
			if code != tt.code {
				t.Errorf("code %q, want %q", code, tt.code)
			}
			if tt.field != "" && fields[tt.field] == "" {
				t.Errorf("no message for field %q in %v", tt.field, fields)
			}
		})
	}
}

func TestUnauthenticatedAPIIs401(t *testing.T) {
	t.Parallel()
	_, url := newBareApp(t, nil)
	resp, err := http.Get(url + "/api/v1/facilities")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 401 {
		t.Fatalf("status %d, want 401", resp.StatusCode)
	}
	if code, _ := errorShape(t, resp); code != "unauthenticated" {
		t.Errorf("code %q", code)
	}
	for _, path := range []string{"/healthz", "/readyz", "/api/openapi.json"} {
		resp, err := http.Get(url + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Errorf("%s: status %d, want 200", path, resp.StatusCode)
		}
	}
}

func TestCLIFacilitiesImportRejectsWholeFile(t *testing.T) {
	t.Parallel()
	url := dbtest.NewURL(t)
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.csv")
	good := filepath.Join(dir, "good.csv")
	os.WriteFile(bad, []byte("code,name,tier,parent_code,region_code\nC1,City,city,,420600\nK1,County,county,C9,420626\nK2,County,township,C1,420626\nC1,Again,city,,420600\nK3,,county,C1,420626\n"), 0o644)
	os.WriteFile(good, facility.DemoCSV, 0o644)
	var out, errOut bytes.Buffer
	env := &Env{Stdin: strings.NewReader(""), Stdout: &out, Stderr: &errOut, Getenv: func(string) string { return "" }}
	ctx := context.Background()
	err := Run(ctx, env, []string{"facilities", "import", "--database-url", url, bad})
	if err == nil {
		t.Fatal("bad file imported without error")
	}
	for _, frag := range []string{"line 3", "unknown parent C9", "line 4", "must hang under a county", "line 5", "duplicate code", "line 6", "must not be empty"} {
		if !strings.Contains(errOut.String(), frag) {
			t.Errorf("stderr lacks %q:\n%s", frag, errOut.String())
		}
	}
	out.Reset()
	if err := Run(ctx, env, []string{"facilities", "stats", "--database-url", url}); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "total        0") {
		t.Errorf("something was written:\n%s", out.String())
	}
	out.Reset()
	if err := Run(ctx, env, []string{"facilities", "import", "--database-url", url, good}); err != nil {
		t.Fatal(err)
	}
	if err := Run(ctx, env, []string{"facilities", "import", "--database-url", url, good}); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "299 added") || !strings.Contains(out.String(), "0 added, 0 updated, 299 unchanged") {
		t.Errorf("import output:\n%s", out.String())
	}
}

func TestHelpExplainsEveryCommand(t *testing.T) {
	t.Parallel()
	var out bytes.Buffer
	env := &Env{Stdout: &out, Stderr: &out, Getenv: func(string) string { return "" }}
	if err := Run(context.Background(), env, []string{"help"}); err != nil {
		t.Fatal(err)
	}
	for name := range commands {
		if !strings.Contains(out.String(), name) {
			t.Errorf("help does not list %q", name)
		}
		out.Reset()
		if err := Run(context.Background(), env, append(strings.Fields(name), "-h")); err != nil {
			t.Errorf("%s -h: %v", name, err)
		}
		if !strings.Contains(out.String(), "usage: qinba "+name) {
			t.Errorf("%s -h printed:\n%s", name, out.String())
		}
		out.Reset()
		_ = Run(context.Background(), env, []string{"help"})
	}
}

func TestSchemaCheckRefusesUnknownVersion(t *testing.T) {
	t.Parallel()
	pool := dbtest.New(t)
	ctx := context.Background()
	if err := migrations.Check(ctx, pool); err != nil {
		t.Fatalf("fresh database: %v", err)
	}
	if _, err := pool.Exec(ctx, `INSERT INTO goose_db_version (version_id, is_applied) VALUES (99999, true)`); err != nil {
		t.Fatal(err)
	}
	if err := migrations.Check(ctx, pool); err == nil {
		t.Fatal("a newer schema was accepted")
	}
	var out bytes.Buffer
	env := &Env{Stdout: &out, Stderr: &out, Getenv: func(string) string { return "" }}
	err := Run(ctx, env, []string{"serve", "--addr", "127.0.0.1:0", "--database-url", pool.Config().ConnString()})
	if err == nil || !strings.Contains(err.Error(), "newer than this binary") {
		t.Fatalf("serve against a newer schema: %v", err)
	}
}

var (
	binOnce sync.Once
	binPath string
	binErr  error
)

// qinbaBinary builds the real binary once per test run.
func qinbaBinary(t *testing.T) string {
	t.Helper()
	binOnce.Do(func() {
		dir, err := os.MkdirTemp("", "qinba-bin")
		if err != nil {
			binErr = err
			return
		}
		binPath = filepath.Join(dir, "qinba")
		out, err := exec.Command("go", "build", "-o", binPath, ".").CombinedOutput()
		if err != nil {
			binErr = err
			t.Logf("%s", out)
		}
	})
	if binErr != nil {
		t.Fatalf("build: %v", binErr)
	}
	return binPath
}

func TestRealBinaryServesAndShutsDown(t *testing.T) {
	t.Parallel()
	url := dbtest.NewURL(t)
	bin := qinbaBinary(t)
	cmd := exec.Command(bin, "serve", "--addr", "127.0.0.1:0", "--database-url", url, "--seed-demo")
	stdout, _ := cmd.StdoutPipe()
	cmd.Stderr = io.Discard
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	addr := ""
	buf := make([]byte, 0, 4096)
	deadline := time.Now().Add(60 * time.Second)
	for addr == "" && time.Now().Before(deadline) {
		chunk := make([]byte, 1024)
		n, err := stdout.Read(chunk)
		buf = append(buf, chunk[:n]...)
		if i := strings.Index(string(buf), "serving on http://"); i >= 0 {
			rest := string(buf[i+len("serving on http://"):])
			if j := strings.Index(rest, "/"); j >= 0 {
				addr = rest[:j]
			}
		}
		if err != nil {
			break
		}
	}
	if addr == "" {
		t.Fatalf("server did not start; output:\n%s", buf)
	}
	go io.Copy(io.Discard, stdout)
	resp, err := http.Get("http://" + addr + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("readyz %d", resp.StatusCode)
	}
	if err := cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("graceful shutdown exited with %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("no shutdown within 20s")
	}
}

// Flags may come before or after a command's arguments; "--" ends them.
func TestFlagsAfterArguments(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		args []string
		dir  string
		pos  []string
	}{
		{[]string{"--dir", "a", "stop"}, "a", []string{"stop"}},
		{[]string{"stop", "--dir", "a"}, "a", []string{"stop"}},
		{[]string{"x", "-dir=b", "y"}, "b", []string{"x", "y"}},
		{[]string{"x", "--", "--dir", "c"}, "", []string{"x", "--dir", "c"}},
		{[]string{"--", "-dir"}, "", []string{"-dir"}},
	} {
		fs := flag.NewFlagSet("t", flag.ContinueOnError)
		dir := fs.String("dir", "", "")
		pos, err := parseInterspersed(fs, c.args)
		if err != nil || *dir != c.dir || !slices.Equal(pos, c.pos) {
			t.Errorf("%q: dir %q args %q %v; want %q %q", c.args, *dir, pos, err, c.dir, c.pos)
		}
	}
}
