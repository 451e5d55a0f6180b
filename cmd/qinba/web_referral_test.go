package main

import (
	"bytes"
	"context"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/qinba/qinba/auth"
	"github.com/qinba/qinba/household"
)

// requireRoute skips the test until a capability's route is wired (the
// UI's pages land before some of their APIs).
func requireRoute(t *testing.T, ts *testServer, method, path string) {
	t.Helper()
	for _, r := range ts.App.Echo.Routes() {
		if r.Method == method && r.Path == path && r.Method != echo.RouteNotFound {
			return
		}
	}
	t.Skipf("SKIP: %s %s is not wired yet", method, path)
}

// seedPatients loads a small roster into village and returns one person.
func seedPatients(t *testing.T, ts *testServer, village string, households int) (id int64, name string) {
	t.Helper()
	ctx := context.Background()
	var buf bytes.Buffer
	if err := household.GenerateRoster(&buf, 7, households, []string{village}); err != nil {
		t.Fatal(err)
	}
	if _, err := household.Import(auth.WithMeta(ctx, auth.RequestMeta{IP: "test"}), ts.Owner, &buf, household.Options{Actor: "test"}); err != nil {
		t.Fatal(err)
	}
	if err := ts.Owner.QueryRow(ctx, `SELECT p.id, p.name FROM person p JOIN household h ON h.id = p.household_id
		WHERE h.village_code = $1 ORDER BY (SELECT count(*) FROM person q WHERE q.household_id = p.household_id) DESC, p.id LIMIT 1`, village).Scan(&id, &name); err != nil {
		t.Fatal(err)
	}
	return id, name
}

// TestBrowserReferralLive: a village doctor (phone) finds a patient and
// opens a referral to the township; it appears in the township doctor's
// inbox (desktop) without a reload, and every step the township doctor
// takes (accept, schedule, arrive, complete with a counter-referral) shows
// live on the village doctor's page.
func TestBrowserReferralLive(t *testing.T) {
	ts := newTestServer(t)
	requireRoute(t, ts, "POST", "/api/v1/referrals")
	requireRoute(t, ts, "GET", "/api/v1/persons")
	personID, personName := seedPatients(t, ts, facVillage, 4)
	vName, vPW := ts.user(t, auth.RoleVillageDoctor, facVillage)
	dName, dPW := ts.user(t, auth.RoleDoctor, facTownship)

	doc := newTab(t, ts.URL, "township")
	doc.viewport(1280, 800)
	doc.login(dName, dPW)
	doc.hash("#/referrals")
	doc.waitSel("#ref-list", 30*time.Second)
	doc.waitFor("the inbox stream", `document.querySelector('#live').dataset.state === 'live'`, 30*time.Second)
	doc.js(`window.__sameDocument = true`)

	vil := newTab(t, ts.URL, "village")
	vil.viewport(360, 740)
	vil.login(vName, vPW)
	vil.waitSel("#pat-q", 30*time.Second)
	vil.typeInto("#pat-q", personName)
	vil.click("#pat-go")
	sel := fmt.Sprintf(`#pat-list [data-person="%d"] a`, personID)
	vil.waitSel(sel, 30*time.Second)
	vil.noHorizontalScroll("patient search")
	vil.click(sel)
	vil.waitSel("#patient #pat-refer", 30*time.Second)
	vil.waitFor("household", `document.querySelectorAll('#household li').length > 0`, 30*time.Second)
	vil.noHorizontalScroll("patient")
	vil.click("#pat-refer")
	vil.waitSel("#ref-form #to-facility", 30*time.Second)
	vil.setValue("#to-facility", facTownship)
	vil.setValue("#urgency", "urgent")
	vil.typeInto("#diagnoses", "I63.9, E11.9")
	vil.typeInto("#summary", "右侧肢体无力 3 小时，血压 180/100。<b>not bold</b>")
	vil.noHorizontalScroll("new referral")
	vil.click("#ref-send")
	vil.waitFor("the referral page", `/^#\/referrals\/\d+$/.test(location.hash) && document.querySelector('#ref-state')`, 30*time.Second)
	refID := vil.js(`location.hash.split('/')[2]`)
	if _, err := strconv.Atoi(refID); err != nil {
		t.Fatalf("referral id %q", refID)
	}
	// Text stays text: the summary's markup is shown, not rendered.
	if got := vil.js(`document.querySelector('#ref-detail .pre').textContent`); got != "右侧肢体无力 3 小时，血压 180/100。<b>not bold</b>" {
		t.Errorf("summary shown as %q", got)
	}
	if n := vil.js(`String(document.querySelectorAll('#ref-detail b').length)`); n != "0" && vil.js(`[...document.querySelectorAll('#ref-detail .pre b')].length`) != "0" {
		t.Errorf("summary markup was rendered")
	}
	vil.waitFor("detail stream", `document.querySelector('#live').dataset.state === 'live'`, 30*time.Second)

	// The township inbox shows it without a reload.
	item := fmt.Sprintf(`#ref-list [data-id="%s"]`, refID)
	doc.waitSel(item, 30*time.Second)
	if doc.js(`String(window.__sameDocument === true)`) != "true" {
		t.Fatal("the inbox page was reloaded")
	}
	if txt := doc.js(`document.querySelector(` + strconv.Quote(item) + `).textContent`); !containsAll(txt, personName, "加急", "待接收") {
		t.Errorf("inbox item %q", txt)
	}
	doc.screenshot("inbox-desktop")

	// Each step on the township side shows on the village side.
	doc.click(item + " a")
	doc.waitSel("#act-accept", 30*time.Second)
	doc.screenshot("referral-receive-desktop")
	steps := []struct {
		do    func()
		state string
	}{
		{func() { doc.click("#act-accept") }, "accepted"},
		{func() { doc.waitSel("#schedule-at", 20*time.Second); doc.click("#act-schedule") }, "scheduled"},
		{func() { doc.click("#act-arrive") }, "arrived"},
		{func() {
			doc.typeInto("#cr-findings", "CT: 左侧基底节区梗死")
			doc.typeInto("#cr-treatment", "溶栓，住院 10 天")
			doc.typeInto("#cr-advice", "阿司匹林 100mg qd，一个月后复查")
			doc.click("#act-complete")
		}, "completed"},
	}
	for _, s := range steps {
		s.do()
		doc.waitFor("township sees "+s.state, `document.querySelector('#ref-state') && document.querySelector('#ref-state').dataset.state === '`+s.state+`'`, 30*time.Second)
		vil.waitFor("village sees "+s.state, `document.querySelector('#ref-state') && document.querySelector('#ref-state').dataset.state === '`+s.state+`'`, 30*time.Second)
	}
	vil.waitSel("#counter", 20*time.Second)
	if txt := vil.js(`document.querySelector('#counter').textContent`); !containsAll(txt, "阿司匹林 100mg qd") {
		t.Errorf("counter-referral on the village side: %q", txt)
	}
	vil.noHorizontalScroll("completed referral")
	vil.screenshot("referral-completed-phone")
	// The village doctor's list has it, completed.
	vil.hash("#/referrals")
	vil.waitSel(item, 30*time.Second)
	vil.noHorizontalScroll("referral list")
}
