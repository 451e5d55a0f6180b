package main

import (
	"bytes"
	"context"
	"encoding/json"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/shopspring/decimal"

	"github.com/qinba/qinba/auth"
	"github.com/qinba/qinba/household"
	"github.com/qinba/qinba/settlement"
)

// TestBrowserSettlementSplit renders the settlement engine's own result
// (a poor patient's large county stay, so caps bite) with the billing
// page's explanation module and checks that every amount shown is the
// engine's, every step is explained, and a cap that bit says so. Until the
// settlement service (bills, settle, estimate) exists the result comes
// from the engine directly rather than from the API.
func TestBrowserSettlementSplit(t *testing.T) {
	ts := newTestServer(t)
	p := settlement.ReferencePolicy()
	bill := settlement.Bill{ID: "b1", Kind: settlement.KindInpatient, Tier: settlement.TierCounty,
		Lines: []settlement.Line{
			{Class: settlement.ClassA, Amount: decimal.RequireFromString("180000")},
			{Class: settlement.ClassB, Amount: decimal.RequireFromString("60000.55")},
			{Class: settlement.ClassC, Amount: decimal.RequireFromString("9000")},
		}}
	res, _, err := p.Settle(settlement.Person{Category: settlement.CategoryRegisteredPoor, Insured: true}, settlement.Accumulators{}, bill)
	if err != nil {
		t.Fatal(err)
	}
	js, err := json.Marshal(res)
	if err != nil {
		t.Fatal(err)
	}
	var want map[string]any
	if err := json.Unmarshal(js, &want); err != nil {
		t.Fatal(err)
	}

	name, pw := ts.user(t, auth.RoleBillingClerk, facCounty)
	for _, size := range []struct {
		w, h int64
		tag  string
	}{{360, 740, "phone"}, {1280, 800, "desktop"}} {
		b := newTab(t, ts.URL, "billing-"+size.tag)
		b.viewport(size.w, size.h)
		b.login(name, pw)
		b.hash("#/billing")
		b.waitSel("#bill-form", 30*time.Second)
		b.js(`import(new URL('lib/split.js', document.querySelector('script[type=module]').src).href).then((m) => {
			const main = document.querySelector('main');
			while (main.firstChild) main.firstChild.remove();
			main.append(m.split(` + string(js) + `));
			return true })`)
		b.waitSel("#split-table", 10*time.Second)
		cells := b.js(`JSON.stringify(Object.fromEntries([...document.querySelectorAll('#split-table [data-fund]')].map(td => [td.dataset.fund, td.textContent])))`)
		var got map[string]string
		if err := json.Unmarshal([]byte(cells), &got); err != nil {
			t.Fatal(err)
		}
		for _, f := range []string{"total", "eligible", "basic", "critical", "assistance", "supplementary", "backstop", "hospital", "patient"} {
			if w := "¥" + want[f].(string); got[f] != w {
				t.Errorf("%s: page shows %q, engine says %q", f, got[f], w)
			}
		}
		steps := b.js(`String(document.querySelectorAll('#split-steps > li').length)`)
		if want := len(res.Trace.Steps); steps != strconv.Itoa(want) {
			t.Errorf("%s steps explained, engine has %d", steps, want)
		}
		for _, st := range res.Trace.Steps {
			txt := b.js(`document.querySelector('#split-steps [data-step="` + st.Fund + `"]').textContent`)
			if !strings.Contains(txt, st.Label.ZH) || !strings.Contains(txt, "¥"+settlement.FormatMoney(st.Amount.Decimal)) {
				t.Errorf("step %s explained as %q", st.Fund, txt)
			}
			if st.Capped && !strings.Contains(txt, "已封顶") {
				t.Errorf("step %s was capped, the page does not say so: %q", st.Fund, txt)
			}
		}
		if size.tag == "phone" {
			b.noHorizontalScroll("settlement explanation")
		}
		if size.tag == "desktop" {
			b.screenshotFull("billing-split-desktop")
		}
	}
}

// TestBrowserSettleBill: a billing clerk (phone) enters a bill, settles it
// and sees the split; the split on the page is the one the API stored.
// Then the clerk reverses it on the bill's page.
func TestBrowserSettleBill(t *testing.T) {
	needBrowser(t)
	ts := newTestServer(t)
	ctx := context.Background()
	var buf bytes.Buffer
	if err := household.GenerateRoster(&buf, 11, 4, []string{facVillage}); err != nil {
		t.Fatal(err)
	}
	if _, err := household.Import(auth.WithMeta(ctx, auth.RequestMeta{IP: "test"}), ts.Owner, &buf, household.Options{Actor: "test", Year: 2019}); err != nil {
		t.Fatal(err)
	}
	var personID int64
	if err := ts.Owner.QueryRow(ctx, `SELECT min(p.id) FROM person p JOIN household h ON h.id = p.household_id WHERE h.village_code = $1`, facVillage).Scan(&personID); err != nil {
		t.Fatal(err)
	}
	name, pw := ts.user(t, auth.RoleBillingClerk, facCounty)
	b := newTab(t, ts.URL, "billing")
	b.viewport(360, 740)
	b.login(name, pw)
	b.hash("#/billing?person=" + strconv.FormatInt(personID, 10))
	b.waitSel("#bill-form .line", 30*time.Second)
	b.setValue("#bill-form [name=admitted_on]", "2019-11-01")
	b.setValue("#bill-form [name=discharged_on]", "2019-11-08")
	b.typeInto("#bill-lines .line [name=name]", "CT 检查")
	b.setValue("#bill-lines .line [name=quantity]", "2")
	b.setValue("#bill-lines .line [name=unit_price]", "1800.50")
	b.click("#bill-add-line")
	b.waitFor("a second line", `document.querySelectorAll('#bill-lines .line').length === 2`, 10*time.Second)
	b.js(`(() => { const l = document.querySelectorAll('#bill-lines .line')[1];
		l.querySelector('[name=name]').value = '进口材料'; l.querySelector('select').value = 'C';
		l.querySelector('[name=quantity]').value = '1'; l.querySelector('[name=unit_price]').value = '950'; return true })()`)
	b.click("#bill-settle")
	b.waitSel("#bill-out #split-table", 30*time.Second)
	b.noHorizontalScroll("settled bill")
	b.screenshotFull("billing-settled-phone")
	billID := b.js(`document.querySelector('#bill-open').getAttribute('href').split('/')[2]`)
	cells := b.js(`JSON.stringify(Object.fromEntries([...document.querySelectorAll('#bill-out [data-fund]')].map(td => [td.dataset.fund, td.textContent])))`)
	var got map[string]string
	if err := json.Unmarshal([]byte(cells), &got); err != nil {
		t.Fatal(err)
	}

	// What the API stored for this bill.
	st, body := ts.do(t, "GET", "/api/v1/bills/"+billID, ts.mint(t, name), nil)
	if st != 200 {
		t.Fatalf("GET bill: %d %v", st, body)
	}
	stl, _ := body["settlement"].(map[string]any)
	res, _ := stl["result"].(map[string]any)
	if res == nil {
		t.Fatalf("bill has no settlement result: %v", body)
	}
	for _, f := range []string{"total", "eligible", "basic", "critical", "assistance", "supplementary", "backstop", "hospital", "patient"} {
		v, ok := res[f].(string)
		if !ok {
			t.Fatalf("the API's settlement result has no %s: %v", f, res)
		}
		if w := "¥" + v; got[f] != w {
			t.Errorf("%s: page shows %q, API says %q", f, got[f], w)
		}
	}
	if got["total"] != "¥4551.00" {
		t.Errorf("total %q, want ¥4551.00", got["total"])
	}

	// The month's clearing shows what the funds owe the county hospital.
	b.hash("#/clearing?month=2019-11")
	b.waitSel("#clear-run", 30*time.Second)
	b.click("#clear-run")
	b.waitSel("#clear-table tbody tr", 60*time.Second)
	if row := b.js(`document.querySelector('#clear-table tbody tr').textContent`); !strings.Contains(row, "¥4551.00") {
		t.Errorf("clearing row %q lacks the bill's total", row)
	}
	if n := b.js(`String(document.querySelectorAll('#clear-chart rect').length)`); n == "0" {
		t.Errorf("no bars in the clearing chart")
	}
	b.noHorizontalScroll("clearing")
	b.screenshotFull("billing-clearing-phone")
	b.viewport(1280, 800)
	b.screenshot("billing-clearing-desktop")
	b.viewport(360, 740)

	// The household's statement for 2019 has the bill.
	var hh string
	if err := ts.Owner.QueryRow(ctx, `SELECT household_id FROM person WHERE id = $1`, personID).Scan(&hh); err != nil {
		t.Fatal(err)
	}
	b.hash("#/statements?household=" + hh + "&year=2019")
	b.waitSel("#stmt-bills tbody tr", 30*time.Second)
	if tot := b.js(`document.querySelector('#stmt-bills tfoot').textContent`); !strings.Contains(tot, "¥4551.00") || !strings.Contains(tot, got["patient"]) {
		t.Errorf("statement totals %q", tot)
	}
	b.noHorizontalScroll("statement")
	b.screenshotFull("billing-statement-phone")

	// Reverse it on the bill's page.
	b.hash("#/billing/" + billID)
	b.waitSel("#reverse-form", 30*time.Second)
	b.typeInto("#reverse-reason", "录入错误")
	b.click("#bill-reverse")
	b.waitSel("main .card.bad", 30*time.Second)
	b.viewport(1280, 800)
	b.screenshotFull("billing-bill-reversed-desktop")
}
