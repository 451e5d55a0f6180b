package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"

	"github.com/qinba/qinba/auth"
)

// TestBrowserLoginLogout logs in through the form, checks the shell (role
// navigation, Chinese first, the English switch that is remembered across
// a reload), then logs out: the cookies are gone and the API refuses.
func TestBrowserLoginLogout(t *testing.T) {
	ts := newTestServer(t)
	name, pw := ts.user(t, auth.RoleVillageDoctor, facVillage)
	b := newTab(t, ts.URL, "village")
	b.viewport(360, 740)
	b.goTo("/")
	b.waitSel("#login-form", 30*time.Second)
	if lang := b.js(`document.documentElement.lang`); lang != "zh-CN" {
		t.Errorf("lang %q, want zh-CN", lang)
	}
	if title := b.js(`document.querySelector('#login-form h1').textContent`); title != "登录" {
		t.Errorf("login title %q", title)
	}
	b.noHorizontalScroll("login")
	b.screenshot("login-phone")
	b.viewport(1280, 800)
	b.screenshot("login-desktop")
	b.viewport(360, 740)

	// A wrong password is refused with a message.
	b.typeInto("#username", name)
	b.typeInto("#password", "wrong-password-1")
	b.click("#login-btn")
	b.waitFor("error toast", `!document.querySelector('#toast').hidden && document.querySelector('#toast').textContent.length > 0`, 20*time.Second)

	b.login(name, pw)
	if who := b.js(`document.querySelector('#who').textContent`); who != name+" · 村医" {
		t.Errorf("who %q", who)
	}
	if nav := b.js(`[...document.querySelectorAll('#nav a')].map(a => a.dataset.page).join(',')`); nav != "patients,referrals,consults" {
		t.Errorf("village doctor's navigation %q", nav)
	}
	// The tokens are out of the page's reach; only the CSRF cookie shows.
	if ck := b.js(`document.cookie`); !containsAll(ck, "qinba_csrf=") || containsAny(ck, "qinba_at", "qinba_rt") {
		t.Errorf("document.cookie exposes %q", ck)
	}
	me := b.js(`fetch('/api/v1/auth/me').then(r => r.json()).then(j => j.username)`)
	if me != name {
		t.Errorf("me via cookie = %q, want %q", me, name)
	}

	// English, remembered across a reload.
	b.click("#lang-switch")
	b.waitFor("English", `document.documentElement.lang === 'en' && document.querySelector('#logout').textContent === 'Log out'`, 20*time.Second)
	b.goTo("/")
	b.waitFor("English after reload", `document.documentElement.lang === 'en' && document.querySelector('#who') && document.querySelector('#who').textContent.includes('Village doctor')`, 30*time.Second)
	b.click("#lang-switch")
	b.waitFor("Chinese", `document.documentElement.lang === 'zh-CN'`, 20*time.Second)

	b.click("#logout")
	b.waitSel("#login-form", 30*time.Second)
	if ck := b.js(`document.cookie`); containsAny(ck, "qinba_csrf=") {
		t.Errorf("after logout document.cookie = %q", ck)
	}
	if st := b.js(`fetch('/api/v1/auth/me').then(r => String(r.status))`); st != "401" {
		t.Errorf("after logout /auth/me = %s, want 401", st)
	}
	// A reload stays logged out.
	b.goTo("/")
	b.waitSel("#login-form", 30*time.Second)
}

func containsAll(s string, subs ...string) bool {
	for _, x := range subs {
		if !strings.Contains(s, x) {
			return false
		}
	}
	return true
}

func containsAny(s string, subs ...string) bool {
	for _, x := range subs {
		if strings.Contains(s, x) {
			return true
		}
	}
	return false
}

// setCookie sets a cookie of the server in the tab (HttpOnly ones too).
func (b *tab) setCookie(name, value, path string, httpOnly bool) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, slow(10*time.Second))
	defer cancel()
	if _, err := chromedp.Call(ctx, network.SetCookie, network.SetCookieParams{Name: name, Value: value, URL: b.base + path,
		Path: path, HTTPOnly: &httpOnly, SameSite: network.CookieSameSiteStrict}); err != nil {
		b.fatalf("set cookie %s: %v", name, err)
	}
}

// TestBrowserSilentRefresh: when the access token is refused (expired or
// forged) or missing, the page refreshes the session with the refresh
// cookie and carries on, without showing the login page.
func TestBrowserSilentRefresh(t *testing.T) {
	ts := newTestServer(t)
	requireRoute(t, ts, "GET", "/api/v1/referrals/stream")
	name, pw := ts.user(t, auth.RoleDoctor, facTownship)
	b := newTab(t, ts.URL, "doctor")
	b.login(name, pw)
	b.waitSel("#ref-list", 30*time.Second)

	// A refused access token: the next API call refreshes and retries.
	b.setCookie("qinba_at", "eyJhbGciOiJFZERTQSJ9.e30.AAAA", "/", true)
	b.hash("#/facilities")
	b.waitSel("#fac-tree details", 30*time.Second)
	if b.js(`location.hash`) != "#/facilities" {
		t.Fatalf("sent to %s", b.js(`location.hash`))
	}

	// No access cookie at all on a fresh load: the boot refreshes.
	b.setCookie("qinba_at", "", "/", true)
	b.goTo("/#/referrals")
	b.waitFor("the inbox, live", `document.querySelector('#live') && document.querySelector('#live').dataset.state === 'live'`, 30*time.Second)

	// A refresh token that is no longer valid ends at the login page.
	b.setCookie("qinba_at", "", "/", true)
	b.setCookie("qinba_rt", "spent", "/web/session", true)
	b.goTo("/#/referrals")
	b.waitSel("#login-form", 30*time.Second)
}
