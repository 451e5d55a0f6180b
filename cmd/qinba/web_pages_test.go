package main

import (
	"bytes"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/qinba/qinba/auth"
	"github.com/qinba/qinba/household"
)

// uiPage is one page of the main-pages tour: its route, what shows it has
// loaded, and the API route it needs (skipped until that exists).
type uiPage struct {
	name, route, ready string
	needs              string // "METHOD /path" of the API it calls; "" for none
	noShot             bool   // another test takes a better screenshot of it
}

// TestBrowserMainPages visits every role's main pages at phone width
// (360x740) and desktop width (1280x800): each must load and must not
// scroll sideways on the phone. With QINBA_SCREENSHOTS=1 it saves a
// screenshot of each under docs/screenshots/.
func TestBrowserMainPages(t *testing.T) {
	ts := newTestServer(t)
	personID, personName := seedPatients(t, ts, facVillage, 6)
	var household string
	if err := ts.Owner.QueryRow(t.Context(), `SELECT household_id FROM person WHERE id = $1`, personID).Scan(&household); err != nil {
		t.Fatal(err)
	}
	// Referrals in every state, for the lists, the detail and the charts.
	var refID int64
	hasReferrals := false
	for _, r := range ts.App.Echo.Routes() {
		hasReferrals = hasReferrals || r.Path == "/api/v1/referrals"
	}
	if hasReferrals {
		for _, st := range []string{"sent", "accepted", "scheduled", "arrived"} {
			refID, _ = refInState(t, ts, facVillage, facTownship, st)
		}
		refInState(t, ts, facTownship, facCounty, "accepted")
		id, v := refInState(t, ts, facVillage, facCounty, "arrived")
		doc := ts.as(t, auth.RoleDoctor, facCounty)
		if st, b := ts.do(t, "POST", fmt.Sprintf("/api/v1/referrals/%d/complete", id), doc, refBody("complete", v)); st != http.StatusOK {
			t.Fatalf("complete: %d %v", st, b)
		}
	}

	tours := []struct {
		role     auth.Role
		facility string
		pages    []uiPage
	}{
		{auth.RoleVillageDoctor, facVillage, []uiPage{
			{"village-patients", "#/patients?q=" + personName, "#pat-list li a", "GET /api/v1/persons", false},
			{"village-patient", fmt.Sprintf("#/patients/%d", personID), "#household li", "GET /api/v1/persons/:id", false},
			{"village-referral-new", fmt.Sprintf("#/referrals/new?person=%d", personID), "#ref-form #to-facility option", "POST /api/v1/referrals", false},
			{"village-referrals", "#/referrals", "#ref-list li.ref", "GET /api/v1/referrals", false},
			{"village-consults", "#/consults", "#con-list li", "GET /api/v1/consults", false},
		}},
		{auth.RoleDoctor, facTownship, []uiPage{
			{"doctor-inbox", "#/referrals", "#ref-list li.ref", "GET /api/v1/referrals", false},
			{"doctor-referral", fmt.Sprintf("#/referrals/%d", refID), "#ref-events li", "GET /api/v1/referrals/:id", false},
		}},
		{auth.RoleBillingClerk, facCounty, []uiPage{
			{"billing-bill", "#/billing", "#bill-form .line", "", false},
			{"billing-clearing", "#/clearing", "#clear-out .card", "", true},
			{"billing-statement", "#/statements?household=" + household, "#stmt-out .card", "", true},
		}},
		{auth.RoleAdmin, facCounty, []uiPage{
			{"admin-stats", "#/stats", "#stats .card h2", "GET /api/v1/referrals/stats", false},
			{"admin-facilities", "#/facilities", "#fac-tree details", "GET /api/v1/facilities", false},
			{"admin-users", "#/users", "#users-table tbody tr", "GET /api/v1/users", false},
			{"admin-roster", "#/roster", "#roster-form", "POST /api/v1/households/import", true},
		}},
		{auth.RoleAuditor, facCounty, []uiPage{
			{"auditor-audit", "#/audit", "#audit-table tbody tr", "GET /api/v1/audit", false},
		}},
	}
	wired := map[string]bool{"": true}
	for _, r := range ts.App.Echo.Routes() {
		wired[r.Method+" "+r.Path] = true
	}
	for _, tour := range tours {
		t.Run(string(tour.role), func(t *testing.T) {
			name, pw := ts.user(t, tour.role, tour.facility)
			b := newTab(t, ts.URL, string(tour.role))
			b.viewport(360, 740)
			b.login(name, pw)
			for _, p := range tour.pages {
				if !wired[p.needs] {
					t.Logf("skip %s: %s is not wired yet", p.name, p.needs)
					continue
				}
				b.viewport(360, 740)
				b.hash(p.route)
				b.waitSel(p.ready, 30*time.Second)
				b.noHorizontalScroll(p.name)
				if p.noShot {
					continue
				}
				b.screenshot(p.name + "-phone")
				b.viewport(1280, 800)
				b.waitSel(p.ready, 10*time.Second)
				b.screenshot(p.name + "-desktop")
			}
			if tour.role == auth.RoleAdmin && wired["GET /api/v1/referrals/stats"] {
				// The same page in English.
				b.viewport(1280, 800)
				b.click("#lang-switch")
				b.waitFor("English", `document.documentElement.lang === 'en'`, 20*time.Second)
				b.hash("#/stats")
				b.waitFor("English stats", `document.querySelector('#stats .card h2') && document.querySelector('main h1').textContent === 'Statistics'`, 30*time.Second)
				b.noHorizontalScroll("stats in English")
				b.screenshot("admin-stats-en-desktop")
				b.viewport(360, 740)
				b.noHorizontalScroll("stats in English")
				b.screenshot("admin-stats-en-phone")
			}
		})
	}
}

// TestBrowserRosterImport: an admin uploads a roster CSV; the page shows
// the upload's progress, then the import's report.
func TestBrowserRosterImport(t *testing.T) {
	ts := newTestServer(t)
	requireRoute(t, ts, "POST", "/api/v1/households/import")
	var buf bytes.Buffer
	if err := household.GenerateRoster(&buf, 3, 300, []string{facVillage, facVillage2}); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "roster.csv")
	if err := os.WriteFile(file, buf.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	name, pw := ts.user(t, auth.RoleAdmin, facCounty)
	b := newTab(t, ts.URL, "admin")
	b.viewport(360, 740)
	b.login(name, pw)
	b.hash("#/roster")
	b.waitSel("#roster-file", 30*time.Second)
	// Count the upload's progress events as they fire.
	b.js(`window.__progress = 0; const send = XMLHttpRequest.prototype.send;
		XMLHttpRequest.prototype.send = function (body) { this.upload.addEventListener('progress', () => window.__progress++); return send.call(this, body) }; true`)
	b.run(20*time.Second, chromedp.SetUploadFiles(chromedp.CSS("#roster-file"), []string{file}))
	b.click("#roster-form button[type=submit]")
	b.waitSel("#roster-report", 60*time.Second)
	if n := b.js(`String(window.__progress)`); n == "0" {
		t.Errorf("no upload progress events")
	}
	if v := b.js(`String(document.querySelector('#roster-form progress').value)`); v != "1" {
		t.Errorf("progress bar at %s after the import", v)
	}
	if txt := b.js(`document.querySelector('#roster-report').textContent`); !strings.Contains(txt, "+300") {
		t.Errorf("report %q, want 300 households added", txt)
	}
	b.noHorizontalScroll("roster report")
	b.screenshot("admin-roster-import-phone")
}
