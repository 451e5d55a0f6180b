package main

// The browser harness: one headless Chromium per test binary (started on
// first use, killed with the binary), a fresh incognito browser context per
// test, and helpers to log in, wait for the page and take screenshots.
//
// Tests skip when Chromium is not installed, unless CI is set: in CI a
// missing browser fails. `make test` installs Chromium.

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"

	"github.com/qinba/qinba/internal/dbtest"
)

// chromiumPath is where Debian's chromium package puts the browser.
const chromiumPath = "/usr/lib/chromium/chromium"

var (
	browserOnce sync.Once
	browserRoot context.Context
	browserErr  error
	// browserStarted is how long the browser took to start: a measure of
	// how loaded the machine is, from which the tests' timeouts grow.
	browserStarted time.Duration
)

func inCI() bool {
	v := strings.ToLower(os.Getenv("CI"))
	return v != "" && v != "0" && v != "false"
}

// needBrowser returns the shared browser's root context, starting it on
// first use. Without Chromium the test is skipped, or failed in CI.
func needBrowser(t *testing.T) context.Context {
	t.Helper()
	if _, err := os.Stat(chromiumPath); err != nil {
		if inCI() {
			t.Fatalf("browser tests must run in CI, but Chromium is missing at %s (apt-get install chromium; make test does it)", chromiumPath)
		}
		t.Skipf("SKIP browser test: Chromium is not installed at %s (run `make test`, which installs it, or apt-get install chromium)", chromiumPath)
	}
	browserOnce.Do(func() {
		dir, err := os.MkdirTemp("", "qinba-chromium-")
		if err != nil {
			browserErr = err
			return
		}
		opts := append(chromedp.DefaultExecAllocatorOptions[:],
			chromedp.ExecPath(chromiumPath),
			chromedp.UserDataDir(dir),
			chromedp.NoSandbox,
			chromedp.DisableGPU,
			chromedp.Flag("use-fake-device-for-media-stream", true),
			chromedp.Flag("use-fake-ui-for-media-stream", true),
			chromedp.Flag("allow-loopback-in-peer-connection", true),
			chromedp.Flag("disable-background-networking", true),
			chromedp.Flag("disable-component-update", true),
			chromedp.Flag("disable-sync", true),
			chromedp.Flag("no-first-run", true),
			chromedp.Flag("disable-dev-shm-usage", true),
			// Media must play in background tabs and without a gesture.
			chromedp.Flag("autoplay-policy", "no-user-gesture-required"),
			chromedp.WindowSize(1280, 800),
		)
		// The allocator and browser live as long as the test binary: the
		// first Run's context must have no deadline (it would kill the
		// browser), and Chromium dies with the binary (Pdeathsig).
		alloc, _ := chromedp.NewExecAllocator(context.Background(), opts...)
		ctx, _ := chromedp.NewContext(alloc)
		start := time.Now()
		if err := chromedp.Do(ctx); err != nil {
			browserErr = fmt.Errorf("start Chromium: %w", err)
			return
		}
		browserStarted = time.Since(start)
		browserRoot = ctx
	})
	if browserErr != nil {
		t.Fatal(browserErr)
	}
	return browserRoot
}

// slow scales a timeout by how loaded the machine looked when the browser
// started (a 2-core machine running the whole suite under -race).
func slow(d time.Duration) time.Duration {
	f := 1.0
	if browserStarted > 2*time.Second {
		f = min(4, float64(browserStarted)/float64(2*time.Second))
	}
	if inCI() {
		f *= 1.5
	}
	return time.Duration(float64(d) * f)
}

// tab is one page in its own browser context (own cookies and storage).
type tab struct {
	t    *testing.T
	ctx  context.Context
	base string
	name string
}

// newTab opens a tab in a new incognito browser context; it closes when the
// test ends.
func newTab(t *testing.T, base, name string) *tab {
	t.Helper()
	root := needBrowser(t)
	ctx, cancel := chromedp.NewContext(root, chromedp.WithNewBrowserContext())
	t.Cleanup(cancel)
	// Create the target before any deadline is attached to the context.
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("open tab %s: %v", name, err)
	}
	return &tab{t: t, ctx: ctx, base: base, name: name}
}

// run runs actions with a timeout.
func (b *tab) run(d time.Duration, actions ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, slow(d))
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		b.fatalf("%v", err)
	}
}

func (b *tab) fatalf(format string, args ...any) {
	b.t.Helper()
	loc, _ := b.eval(`location.href + ' | ' + (document.querySelector('main') ? document.querySelector('main').innerText.slice(0, 400) : '') + ' | toast: ' + (document.querySelector('#toast') ? document.querySelector('#toast').textContent : '')`)
	b.t.Fatalf("[%s] %s\n  page: %s", b.name, fmt.Sprintf(format, args...), loc)
}

// eval evaluates a JavaScript expression (awaiting a promise) and returns
// its JSON-ish value as text.
func (b *tab) eval(expr string) (string, error) {
	ctx, cancel := context.WithTimeout(b.ctx, slow(20*time.Second))
	defer cancel()
	obj, err := chromedp.Run(ctx, chromedp.Evaluate[*runtime.RemoteObject](expr, chromedp.EvalAwaitPromise, chromedp.EvalAsValue))
	if err != nil {
		return "", err
	}
	if obj == nil || obj.Value == nil {
		return "", nil
	}
	s := string(obj.Value)
	if u, err := strconv.Unquote(s); err == nil {
		return u, nil
	}
	return s, nil
}

// js evaluates expr and fails the test on an error.
func (b *tab) js(expr string) string {
	b.t.Helper()
	v, err := b.eval(expr)
	if err != nil {
		b.fatalf("eval %s: %v", expr, err)
	}
	return v
}

// waitFor polls expr until it is truthy (it may be a promise). Polling
// from Go survives navigations and reloads.
func (b *tab) waitFor(what, expr string, d time.Duration) {
	b.t.Helper()
	deadline := time.Now().Add(slow(d))
	var last error
	for time.Now().Before(deadline) {
		v, err := b.eval(`(async () => !!(` + expr + `))()`)
		if err == nil && v == "true" {
			return
		}
		last = err
		time.Sleep(100 * time.Millisecond)
	}
	b.fatalf("timed out waiting for %s (%s); last error: %v", what, expr, last)
}

// waitSel waits until a CSS selector matches.
func (b *tab) waitSel(sel string, d time.Duration) {
	b.t.Helper()
	b.waitFor(sel, `document.querySelector(`+strconv.Quote(sel)+`)`, d)
}

// click clicks the element sel (in the page: robust to layout shifts).
func (b *tab) click(sel string) {
	b.t.Helper()
	b.waitSel(sel, 20*time.Second)
	b.js(`document.querySelector(` + strconv.Quote(sel) + `).click(), true`)
}

// typeInto sets an input's value as a user would (input events fire).
func (b *tab) typeInto(sel, value string) {
	b.t.Helper()
	b.waitSel(sel, 20*time.Second)
	b.run(20*time.Second, chromedp.SendKeys(chromedp.CSS(sel), value))
}

// setValue sets a field's value directly (selects, date inputs).
func (b *tab) setValue(sel, value string) {
	b.t.Helper()
	b.waitSel(sel, 20*time.Second)
	b.js(`(() => { const el = document.querySelector(` + strconv.Quote(sel) + `); el.value = ` + strconv.Quote(value) +
		`; el.dispatchEvent(new Event('input', {bubbles: true})); el.dispatchEvent(new Event('change', {bubbles: true})); return true })()`)
}

// goTo loads a path of the server (e.g. "/#/referrals") afresh: a query
// makes every load a real one, not just a change of the hash.
func (b *tab) goTo(path string) {
	b.t.Helper()
	p, frag, _ := strings.Cut(path, "#")
	sep := "?"
	if strings.Contains(p, "?") {
		sep = "&"
	}
	u := b.base + p + sep + "load=" + strconv.FormatInt(loads.Add(1), 10)
	if frag != "" {
		u += "#" + frag
	}
	b.run(30*time.Second, chromedp.Navigate(u))
}

// loads numbers page loads (goTo).
var loads atomic.Int64

// hash switches the hash route without reloading.
func (b *tab) hash(route string) {
	b.t.Helper()
	b.js(`location.hash = ` + strconv.Quote(route) + `, true`)
}

// viewport sets the page's size.
func (b *tab) viewport(w, h int64) {
	b.t.Helper()
	b.run(10*time.Second, chromedp.EmulateViewport(w, h))
}

// login signs in through the login form and waits for the app shell.
func (b *tab) login(username, password string) {
	b.t.Helper()
	b.goTo("/#/login")
	b.waitSel("#login-form #username", 30*time.Second)
	b.js(`document.querySelector('#username').value = ''; document.querySelector('#password').value = ''; true`)
	b.typeInto("#username", username)
	b.typeInto("#password", password)
	b.click("#login-btn")
	b.waitSel("#who", 30*time.Second)
}

// noHorizontalScroll checks the page does not scroll sideways.
func (b *tab) noHorizontalScroll(what string) {
	b.t.Helper()
	v := b.js(`JSON.stringify([document.documentElement.scrollWidth, document.documentElement.clientWidth])`)
	var sw, cw int
	if _, err := fmt.Sscanf(v, "[%d,%d]", &sw, &cw); err != nil {
		b.fatalf("scroll widths %q: %v", v, err)
	}
	if sw > cw {
		wide := b.js(`[...document.querySelectorAll('body *')].filter(e => e.getBoundingClientRect().right > document.documentElement.clientWidth + 1)
			.slice(0, 5).map(e => e.tagName + '#' + e.id + '.' + e.className + ' ' + Math.round(e.getBoundingClientRect().right)).join('; ')`)
		b.t.Errorf("[%s] %s scrolls sideways at %dpx: scrollWidth %d > clientWidth %d; widest: %s", b.name, what, cw, sw, cw, wide)
	}
}

// screenshot writes docs/screenshots/NAME.png (the viewport) when
// QINBA_SCREENSHOTS=1.
func (b *tab) screenshot(name string) { b.t.Helper(); b.shoot(name, false) }

// screenshotFull is screenshot of the whole page, however long.
func (b *tab) screenshotFull(name string) { b.t.Helper(); b.shoot(name, true) }

func (b *tab) shoot(name string, full bool) {
	b.t.Helper()
	if os.Getenv("QINBA_SCREENSHOTS") != "1" {
		return
	}
	// Let fonts and charts settle; no caret or focus ring in the picture.
	b.js(`document.activeElement && document.activeElement.blur(), true`)
	time.Sleep(300 * time.Millisecond)
	ctx, cancel := context.WithTimeout(b.ctx, slow(30*time.Second))
	defer cancel()
	shot := chromedp.CaptureScreenshot()
	if full {
		shot = chromedp.FullScreenshot(100)
	}
	png, err := chromedp.Run(ctx, shot)
	if err != nil {
		b.fatalf("screenshot %s: %v", name, err)
	}
	root, err := dbtest.RepoRoot()
	if err != nil {
		b.t.Fatal(err)
	}
	dir := filepath.Join(root, "docs", "screenshots")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		b.t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, name+".png"), png, 0o644); err != nil {
		b.t.Fatal(err)
	}
}
