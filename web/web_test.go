package web

import (
	"bytes"
	"compress/gzip"
	"context"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/qinba/qinba/internal/apperr"
	"github.com/qinba/qinba/internal/httpx"
)

// fakeAuth hands out numbered tokens; refresh tokens rotate once.
type fakeAuth struct {
	n         atomic.Int64
	mu        sync.Mutex
	used      map[string]bool
	refreshN  atomic.Int64
	loggedOut []string
}

func (f *fakeAuth) tokens() Tokens {
	n := f.n.Add(1)
	s := string(rune('a' + n%26))
	return Tokens{Access: "at-" + s, Refresh: "rt-" + s + time.Now().Format("150405.000000000"),
		AccessExpires: time.Now().Add(15 * time.Minute), RefreshExpires: time.Now().Add(time.Hour), User: map[string]string{"username": "u"}}
}

func (f *fakeAuth) Login(_ context.Context, u, p string) (Tokens, error) {
	if p != "right" {
		return Tokens{}, apperr.E(apperr.Unauthenticated, "invalid username or password")
	}
	return f.tokens(), nil
}

func (f *fakeAuth) Refresh(_ context.Context, rt string) (Tokens, error) {
	f.refreshN.Add(1)
	time.Sleep(20 * time.Millisecond) // let concurrent callers pile up
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.used == nil {
		f.used = map[string]bool{}
	}
	if f.used[rt] {
		return Tokens{}, apperr.E(apperr.Unauthenticated, "reused")
	}
	f.used[rt] = true
	return f.tokens(), nil
}

func (f *fakeAuth) Logout(_ context.Context, at, rt string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.loggedOut = append(f.loggedOut, rt)
	return nil
}

func newTestUI(t *testing.T) (*UI, *echo.Echo, *fakeAuth) {
	t.Helper()
	fa := &fakeAuth{}
	ui, err := New(Options{Auth: fa})
	if err != nil {
		t.Fatal(err)
	}
	e := echo.New()
	e.HTTPErrorHandler = httpx.ErrorHandler(slog.New(slog.DiscardHandler))
	e.Pre(CookieAuth())
	ui.Routes(e)
	e.Any("/api/v1/*", func(c echo.Context) error {
		return c.String(http.StatusOK, c.Request().Header.Get("Authorization"))
	})
	return ui, e, fa
}

func serve(e *echo.Echo, r *http.Request) *httptest.ResponseRecorder {
	w := httptest.NewRecorder()
	e.ServeHTTP(w, r)
	return w
}

func cookieOf(w *httptest.ResponseRecorder, name string) *http.Cookie {
	for _, c := range w.Result().Cookies() {
		if c.Name == name {
			return c
		}
	}
	return nil
}

func TestShellAndAssets(t *testing.T) {
	ui, e, _ := newTestUI(t)
	r := httptest.NewRequest("GET", "/", nil)
	r.Header.Set("Accept-Encoding", "gzip")
	w := serve(e, r)
	if w.Code != 200 || !strings.Contains(w.Header().Get("Content-Security-Policy"), "script-src 'self'") {
		t.Fatalf("shell: %d %v", w.Code, w.Header())
	}
	if w.Header().Get("Content-Encoding") != "gzip" {
		t.Errorf("shell not gzipped")
	}
	zr, err := gzip.NewReader(w.Body)
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(zr)
	if !bytes.Contains(page, []byte(`lang="zh-CN"`)) {
		t.Errorf("shell is not Chinese first")
	}
	// No inline script or style: every <script> has a src, no style= or on*=.
	if regexp.MustCompile(`<script(?:(?:\s+[a-z]+="[^"]*")*)\s*>`).Match(page) && !bytes.Contains(page, []byte("src=")) {
		t.Errorf("inline script in the shell")
	}
	if regexp.MustCompile(`\s(style|on[a-z]+)=`).Match(page) {
		t.Errorf("inline style or handler in the shell:\n%s", page)
	}
	// English with the cookie.
	r = httptest.NewRequest("GET", "/", nil)
	r.AddCookie(&http.Cookie{Name: LangCookie, Value: "en"})
	if w := serve(e, r); !strings.Contains(w.Body.String(), `lang="en"`) {
		t.Errorf("english shell: %s", w.Body.String())
	}

	// Every asset URL in the page is served, versioned and cached for a year.
	urls := regexp.MustCompile(`(?:href|src)="(/assets/[^"]+)"`).FindAllSubmatch(page, -1)
	if len(urls) < 4 {
		t.Fatalf("asset urls: %q", urls)
	}
	for _, m := range urls {
		r := httptest.NewRequest("GET", string(m[1]), nil)
		r.Header.Set("Accept-Encoding", "gzip, deflate")
		w := serve(e, r)
		if w.Code != 200 || !strings.Contains(w.Header().Get("Cache-Control"), "immutable") {
			t.Errorf("%s: %d %q", m[1], w.Code, w.Header().Get("Cache-Control"))
		}
		if !strings.Contains(string(m[1]), "/"+ui.Version()+"/") {
			t.Errorf("%s not under version %s", m[1], ui.Version())
		}
	}
	js := serve(e, httptest.NewRequest("GET", "/assets/"+ui.Version()+"/js/app.js", nil))
	if ct := js.Header().Get("Content-Type"); !strings.HasPrefix(ct, "text/javascript") {
		t.Errorf("app.js content type %q", ct)
	}
	if w := serve(e, httptest.NewRequest("GET", "/assets/old/js/app.js", nil)); w.Code != 200 || w.Header().Get("Cache-Control") != "no-cache" {
		t.Errorf("old version: %d %q", w.Code, w.Header().Get("Cache-Control"))
	}
	if w := serve(e, httptest.NewRequest("GET", "/assets/"+ui.Version()+"/nope.js", nil)); w.Code != 404 {
		t.Errorf("missing asset: %d", w.Code)
	}
}

// roleModules are the pages each role's navigation reaches (see NAV and
// routes in app.js).
var roleModules = map[string][]string{
	"village_doctor": {"login", "patients", "patient", "referrals", "referral", "referral-new", "consults", "consult", "facilities"},
	"doctor":         {"login", "patients", "patient", "referrals", "referral", "referral-new", "consults", "consult", "facilities"},
	"billing_clerk":  {"login", "billing", "bill", "clearing", "statement", "patients", "patient", "facilities"},
	"admin":          {"login", "stats", "facilities", "users", "referrals", "referral", "roster", "clearing", "statement", "audit", "patient"},
	"auditor":        {"login", "audit", "facilities"},
}

// TestAssetBudget keeps the UI small for slow links. What one user
// downloads (the core, one dictionary, the pages their role reaches and
// what those import) must stay under the budget; the sizes are logged.
func TestAssetBudget(t *testing.T) {
	size := func(p string) int {
		b, err := static.ReadFile("static/" + p)
		if err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		return len(b)
	}
	imp := regexp.MustCompile(`from\s*'(\.{1,2}/[^']+)'`)
	var closure func(p string, seen map[string]bool)
	closure = func(p string, seen map[string]bool) {
		if seen[p] {
			return
		}
		seen[p] = true
		b, _ := static.ReadFile("static/" + p)
		for _, m := range imp.FindAllStringSubmatch(string(b), -1) {
			closure(path.Join(path.Dir(p), m[1]), seen)
		}
	}
	total, all := 0, 0
	_ = fs.WalkDir(static, "static", func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() && (strings.HasSuffix(p, ".js") || strings.HasSuffix(p, ".css")) {
			b, _ := static.ReadFile(p)
			all += len(b)
			var z bytes.Buffer
			zw, _ := gzip.NewWriterLevel(&z, gzip.BestCompression)
			zw.Write(b)
			zw.Close()
			total += z.Len()
		}
		return nil
	})
	t.Logf("whole UI: JS+CSS %d bytes, %d gzipped", all, total)
	dict := max(size("js/zh.js"), size("js/en.js"))
	for role, pages := range roleModules {
		seen := map[string]bool{}
		closure("js/app.js", seen)
		for _, p := range pages {
			closure("js/pages/"+p+".js", seen)
		}
		n := size("app.css") + dict
		for p := range seen {
			n += size(p)
		}
		t.Logf("%s downloads %d bytes of JS+CSS (%d modules)", role, n, len(seen)+2)
		if n > budgetPerRole {
			t.Errorf("%s downloads %d bytes of JS+CSS, over the %d budget", role, n, budgetPerRole)
		}
	}
	if total > budgetGzipped {
		t.Errorf("the whole UI is %d bytes gzipped, over the %d budget", total, budgetGzipped)
	}
}

// budgetPerRole is the most JS+CSS one user may download, uncompressed.
// The aim was 60 KB for the whole UI; with every page built (and no
// minifier: the files are served as written, gzipped) one role downloads
// 40-85 KB, the whole UI about 108 KB (42 KB gzipped). These limits stop
// it from growing unnoticed.
const (
	budgetPerRole = 90 * 1024
	budgetGzipped = 48 * 1024
)

// TestScriptsAreSafe checks the rules the strict CSP and escaping rely on:
// no innerHTML/outerHTML/insertAdjacentHTML/document.write, no eval or
// new Function, no inline handlers or style attributes.
func TestScriptsAreSafe(t *testing.T) {
	bad := regexp.MustCompile(`\.(innerHTML|outerHTML)\s*=|insertAdjacentHTML|document\.write|\beval\(|new Function\(|setAttribute\(\s*'style'|setTimeout\(\s*['"]`)
	_ = fs.WalkDir(static, "static", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(p, ".js") {
			return err
		}
		b, _ := static.ReadFile(p)
		for i, line := range strings.Split(string(b), "\n") {
			if bad.MatchString(line) {
				t.Errorf("%s:%d: %s", p, i+1, strings.TrimSpace(line))
			}
		}
		return nil
	})
}

// TestDictionariesMatch checks every literal key the pages use exists in
// both dictionaries, and that both have the same keys.
func TestDictionariesMatch(t *testing.T) {
	keyRe := regexp.MustCompile(`(?m)^\s*'([a-z_.]+)':|,\s*'([a-z_.]+)':`)
	keys := func(name string) map[string]bool {
		b, err := static.ReadFile("static/js/" + name)
		if err != nil {
			t.Fatal(err)
		}
		m := map[string]bool{}
		for _, x := range keyRe.FindAllStringSubmatch(string(b), -1) {
			m[x[1]+x[2]] = true
		}
		return m
	}
	zh, en := keys("zh.js"), keys("en.js")
	for k := range zh {
		if !en[k] {
			t.Errorf("en.js lacks %q", k)
		}
	}
	for k := range en {
		if !zh[k] {
			t.Errorf("zh.js lacks %q", k)
		}
	}
	use := regexp.MustCompile(`\bt\('([a-z_]+\.[a-z_.]*[a-z_])'[,)]`)
	_ = fs.WalkDir(static, "static/js", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, _ := static.ReadFile(p)
		for _, m := range use.FindAllStringSubmatch(string(b), -1) {
			if !zh[m[1]] {
				t.Errorf("%s uses %q, which zh.js lacks", p, m[1])
			}
		}
		return nil
	})
}

func TestSessionCookiesAndCSRF(t *testing.T) {
	_, e, fa := newTestUI(t)
	// Bad password: 401, no cookies.
	r := httptest.NewRequest("POST", "/web/session", strings.NewReader(`{"username":"u","password":"wrong"}`))
	r.Header.Set("Content-Type", "application/json")
	if w := serve(e, r); w.Code != 401 || cookieOf(w, AccessCookie) != nil {
		t.Fatalf("bad login: %d %v", w.Code, w.Result().Cookies())
	}
	// Cross-origin login is refused.
	r = httptest.NewRequest("POST", "/web/session", strings.NewReader(`{"username":"u","password":"right"}`))
	r.Header.Set("Content-Type", "application/json")
	r.Header.Set("Origin", "http://evil.example")
	if w := serve(e, r); w.Code != 403 {
		t.Fatalf("cross-origin login: %d", w.Code)
	}
	// Form login redirects home.
	r = httptest.NewRequest("POST", "/web/session", strings.NewReader("username=u&password=right"))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if w := serve(e, r); w.Code != 303 || cookieOf(w, AccessCookie) == nil {
		t.Fatalf("form login: %d", w.Code)
	}

	r = httptest.NewRequest("POST", "/web/session", strings.NewReader(`{"username":"u","password":"right"}`))
	r.Header.Set("Content-Type", "application/json")
	w := serve(e, r)
	at, rt, csrf := cookieOf(w, AccessCookie), cookieOf(w, RefreshCookie), cookieOf(w, CSRFCookie)
	if w.Code != 200 || at == nil || rt == nil || csrf == nil {
		t.Fatalf("login: %d %v", w.Code, w.Result().Cookies())
	}
	if !at.HttpOnly || at.Path != "/" || at.SameSite != http.SameSiteStrictMode || at.Secure {
		t.Errorf("access cookie %+v", at)
	}
	if !rt.HttpOnly || rt.Path != SessionPath || rt.SameSite != http.SameSiteStrictMode {
		t.Errorf("refresh cookie %+v", rt)
	}
	if csrf.HttpOnly || csrf.Path != "/" || len(csrf.Value) < 40 {
		t.Errorf("csrf cookie %+v", csrf)
	}

	api := func(method, path string, hdr map[string]string, cks ...*http.Cookie) *httptest.ResponseRecorder {
		r := httptest.NewRequest(method, path, nil)
		for k, v := range hdr {
			r.Header.Set(k, v)
		}
		for _, c := range cks {
			r.AddCookie(c)
		}
		return serve(e, r)
	}
	if w := api("GET", "/api/v1/x", nil, at); w.Body.String() != "Bearer "+at.Value {
		t.Errorf("GET with cookie: %q", w.Body.String())
	}
	if w := api("POST", "/api/v1/x", nil, at, csrf); w.Code != 403 {
		t.Errorf("POST without CSRF header: %d", w.Code)
	}
	if w := api("POST", "/api/v1/x", map[string]string{CSRFHeader: csrf.Value + "x"}, at, csrf); w.Code != 403 {
		t.Errorf("POST with wrong CSRF: %d", w.Code)
	}
	if w := api("DELETE", "/api/v1/x", map[string]string{CSRFHeader: csrf.Value}, at); w.Code != 403 {
		t.Errorf("DELETE with header but no CSRF cookie: %d", w.Code)
	}
	if w := api("POST", "/api/v1/x", map[string]string{CSRFHeader: csrf.Value}, at, csrf); w.Body.String() != "Bearer "+at.Value {
		t.Errorf("POST with CSRF: %d %q", w.Code, w.Body.String())
	}
	if w := api("POST", "/api/v1/x", map[string]string{CSRFHeader: csrf.Value, "Origin": "http://evil.example"}, at, csrf); w.Code != 403 {
		t.Errorf("cross-origin POST: %d", w.Code)
	}
	if w := api("GET", "/api/v1/x", map[string]string{"Upgrade": "websocket", "Origin": "http://evil.example"}, at); w.Code != 403 {
		t.Errorf("cross-origin WebSocket handshake: %d", w.Code)
	}
	// An explicit Authorization header wins; the cookie is not looked at.
	if w := api("POST", "/api/v1/x", map[string]string{"Authorization": "Bearer other"}, at); w.Body.String() != "Bearer other" {
		t.Errorf("explicit bearer: %q", w.Body.String())
	}

	// Refresh needs the CSRF header; concurrent refreshes share one rotation.
	if w := api("POST", "/web/session/refresh", nil, rt, csrf); w.Code != 403 {
		t.Errorf("refresh without CSRF: %d", w.Code)
	}
	var wg sync.WaitGroup
	res := make([]*httptest.ResponseRecorder, 4)
	for i := range res {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res[i] = api("POST", "/web/session/refresh", map[string]string{CSRFHeader: csrf.Value}, rt, csrf)
		}()
	}
	wg.Wait()
	first := cookieOf(res[0], RefreshCookie)
	for i, w := range res {
		got := cookieOf(w, RefreshCookie)
		if w.Code != 200 || got == nil || got.Value != first.Value || got.Value == rt.Value {
			t.Fatalf("refresh %d: %d %v", i, w.Code, got)
		}
	}
	if n := fa.refreshN.Load(); n != 1 {
		t.Errorf("%d rotations for one token, want 1", n)
	}
	if c := cookieOf(res[0], CSRFCookie); c == nil || c.Value != csrf.Value {
		t.Errorf("refresh changed the CSRF token: %v", c)
	}

	// Logout revokes and clears every cookie.
	w = api("DELETE", "/web/session", map[string]string{CSRFHeader: csrf.Value}, at, first, csrf)
	if w.Code != 204 || len(fa.loggedOut) != 1 || fa.loggedOut[0] != first.Value {
		t.Fatalf("logout: %d %v", w.Code, fa.loggedOut)
	}
	for _, n := range []string{AccessCookie, RefreshCookie, CSRFCookie} {
		if c := cookieOf(w, n); c == nil || c.MaxAge >= 0 {
			t.Errorf("logout left %s: %+v", n, c)
		}
	}
	// Without a refresh cookie, refresh is 401 and clears cookies.
	if w := api("POST", "/web/session/refresh", map[string]string{CSRFHeader: csrf.Value}, csrf); w.Code != 401 {
		t.Errorf("refresh without cookie: %d", w.Code)
	}
}

func TestSecureCookiesOverTLS(t *testing.T) {
	fa := &fakeAuth{}
	ui, err := New(Options{Auth: fa, Secure: true})
	if err != nil {
		t.Fatal(err)
	}
	e := echo.New()
	ui.Routes(e)
	r := httptest.NewRequest("POST", "/web/session", strings.NewReader(`{"username":"u","password":"right"}`))
	r.Header.Set("Content-Type", "application/json")
	w := serve(e, r)
	for _, c := range w.Result().Cookies() {
		if !c.Secure {
			t.Errorf("cookie %s not Secure", c.Name)
		}
	}
}

// TestImportsResolve checks every static import names an embedded file
// (go:embed leaves out names starting with _ or .).
func TestImportsResolve(t *testing.T) {
	imp := regexp.MustCompile(`(?:from|import\()\s*'(\.{1,2}/[^']+)'`)
	_ = fs.WalkDir(static, "static/js", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, _ := static.ReadFile(p)
		for _, m := range imp.FindAllStringSubmatch(string(b), -1) {
			target := path.Join(path.Dir(p), m[1])
			if _, err := static.ReadFile(target); err != nil {
				t.Errorf("%s imports %s: %v", p, m[1], err)
			}
		}
		return nil
	})
}
