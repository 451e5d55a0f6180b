package main

import (
	"fmt"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/qinba/qinba/auth"
)

// TestBrowserConsultVideo runs a consult end to end on the real API and
// media server (pion, loopback candidates only): a village doctor (phone)
// requests a consult for a patient of their village from the county
// hospital through the UI, joins it with Chromium's fake camera; a county
// doctor (desktop) finds it among the consults addressed to them and joins;
// each sees the other's video playing (a picture, and frames advancing).
// Both consent to recording; the county doctor writes notes and advice;
// the village doctor switches to audio only (the server confirms it no
// longer sends video) and leaves; the county doctor ends the consult (a
// fee line exists); the village doctor opens a referral from it.
func TestBrowserConsultVideo(t *testing.T) {
	needBrowser(t)
	ts := newTestServer(t)
	personID, personName := seedPatients(t, ts, facVillage, 2)
	vName, vPW := ts.user(t, auth.RoleVillageDoctor, facVillage)
	dName, dPW := ts.user(t, auth.RoleDoctor, facCounty)

	// The village doctor requests the consult from the patient's page link.
	vil := newTab(t, ts.URL, "village")
	vil.viewport(360, 740)
	vil.login(vName, vPW)
	vil.hash("#/consults?person=" + strconv.FormatInt(personID, 10))
	vil.waitSel(`#con-form #con-to option[value="`+facCounty+`"]`, 30*time.Second)
	vil.setValue("#con-to", facCounty)
	vil.typeInto("#con-reason", "胸闷气短两天，请上级会诊")
	vil.click("#con-start")
	vil.waitFor("the consult's page", `/^#\/consults\/\d+$/.test(location.hash) && document.querySelector('#con-state .chip-requested')`, 30*time.Second)
	id := strings.TrimPrefix(vil.js(`location.hash`), "#/consults/")
	vil.waitFor("camera preview", `(() => { const v = document.querySelector('#con-self'); return v && v.videoWidth > 0 })()`, 30*time.Second)
	vil.noHorizontalScroll("consult")
	if vil.js(`String(document.querySelector('#con-cancel').hidden)`) != "false" {
		vil.fatalf("the requester cannot cancel a requested consult")
	}
	vil.click("#con-join")
	vil.waitFor("the consult went live", `document.querySelector('#con-state .chip-live')`, 30*time.Second)

	// The county doctor finds it among the consults addressed to the county.
	spec := newTab(t, ts.URL, "specialist")
	spec.viewport(1280, 800)
	spec.login(dName, dPW)
	spec.hash("#/consults?box=incoming")
	spec.waitSel(`#con-list li[data-id="`+id+`"] a`, 30*time.Second)
	if row := spec.js(`document.querySelector('#con-list li[data-id="` + id + `"]').textContent`); !strings.Contains(row, personName) {
		spec.fatalf("the incoming consult %s does not name the patient %s: %q", id, personName, row)
	}
	spec.click(`#con-list li[data-id="` + id + `"] a`)
	spec.waitFor("camera preview", `(() => { const v = document.querySelector('#con-self'); return v && v.videoWidth > 0 })()`, 30*time.Second)
	spec.click("#con-join")

	// Each side: the other's video has a picture and its frames advance.
	playing := func(b *tab, other string) {
		t.Helper()
		sel := `#con-remotes video[data-uid="` + other + `"]`
		b.waitFor("the other's video", `(() => { const v = document.querySelector('`+sel+`'); return v && v.videoWidth > 0 && v.readyState >= 2 })()`, 60*time.Second)
		frames := b.js(`new Promise((ok) => { const v = document.querySelector('` + sel + `'); let n = 0;
			const t0 = v.currentTime;
			const tick = () => { if (++n >= 10) ok(JSON.stringify([n, v.currentTime - t0])); else v.requestVideoFrameCallback(tick) };
			v.requestVideoFrameCallback(tick); setTimeout(() => ok(JSON.stringify([n, v.currentTime - t0])), 15000) })`)
		var n int
		var dt float64
		if _, err := fmtSscan(frames, &n, &dt); err != nil || n < 10 || dt <= 0 {
			b.fatalf("the other's video is not playing: %d frames, currentTime advanced %.3fs (%s)", n, dt, frames)
		}
		if w := b.js(`String(document.querySelector('` + sel + `').videoWidth)`); w == "0" {
			b.fatalf("videoWidth 0")
		}
	}
	playing(spec, vName)
	playing(vil, dName)
	spec.waitFor("connected", `document.querySelector('#con-status').dataset.state === 'connected'`, 30*time.Second)
	vil.waitFor("connected", `document.querySelector('#con-status').dataset.state === 'connected'`, 30*time.Second)
	vil.noHorizontalScroll("consult in a call")

	// Recording starts once both have consented.
	vil.click("#con-record")
	vil.waitFor("consent recorded", `document.querySelector('#con-record-state').dataset.recording === 'false'`, 30*time.Second)
	spec.click("#con-record")
	spec.waitFor("recording", `document.querySelector('#con-record-state').dataset.recording === 'true'`, 30*time.Second)

	// The county doctor's notes and advice.
	spec.typeInto("#con-notes", "心电图未见急性改变")
	spec.typeInto("#con-advice", "建议转县医院进一步检查")
	spec.click("#con-save-advice")
	docTok := ts.mint(t, dName)
	deadline := time.Now().Add(slow(30 * time.Second))
	for {
		st, body := ts.do(t, "GET", "/api/v1/consults/"+id, docTok, nil)
		if st == http.StatusOK && body["advice"] == "建议转县医院进一步检查" && body["notes"] == "心电图未见急性改变" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("notes not saved: %d %v", st, body)
		}
		time.Sleep(200 * time.Millisecond)
	}
	vil.screenshot("consult-phone")
	if os.Getenv("QINBA_SCREENSHOTS") == "1" {
		// The whole page: both videos, the actions and the saved notes.
		spec.waitFor("the toast gone", `document.querySelector('#toast').hidden`, 10*time.Second)
		spec.js(`window.scrollTo(0, 0), true`)
		spec.screenshotFull("consult-desktop")
	}

	// Audio only: the server stops video to the village doctor and says so.
	vil.click("#con-audio-only")
	vil.waitFor("video paused notice", `document.querySelector('#con-notice').textContent.length > 0`, 30*time.Second)
	spec.waitFor("the roster shows audio only", `[...document.querySelectorAll('#con-people li')].some(li => li.dataset.uid === '`+vName+`' && li.textContent.includes('🎙'))`, 30*time.Second)

	vil.click("#con-leave")
	spec.waitFor("the village doctor left", `!document.querySelector('#con-remotes video[data-uid="`+vName+`"]')`, 30*time.Second)

	// The county doctor ends it: the consult is ended and has a fee line.
	spec.click("#con-end")
	spec.waitFor("ended", `document.querySelector('#con-state .chip-ended') && document.querySelector('#con-end').hidden && document.querySelector('#con-join').hidden`, 30*time.Second)
	if st, body := ts.do(t, "GET", "/api/v1/consults/"+id+"/fee", docTok, nil); st != http.StatusOK || body["amount"] == nil {
		t.Errorf("fee of the ended consult: %d %v", st, body)
	}

	// The village doctor opens a referral from it.
	vil.hash("#/consults")
	vil.waitSel(`#con-list li[data-id="`+id+`"] .chip-ended`, 30*time.Second)
	vil.hash("#/consults/" + id)
	vil.waitFor("the referral link", `document.querySelector('#con-state .chip-ended') && !document.querySelector('#con-refer').hidden`, 30*time.Second)
	vil.click("#con-refer")
	vil.waitSel(`#ref-form #to-facility option[value="`+facCounty+`"]`, 30*time.Second)
	if to := vil.js(`document.querySelector('#to-facility').value`); to != facCounty {
		vil.fatalf("the referral is not addressed to the consult's facility: %s", to)
	}
	vil.typeInto("#diagnoses", "I20.0")
	vil.click("#ref-send")
	vil.waitFor("the referral's page", `/^#\/referrals\/\d+$/.test(location.hash)`, 30*time.Second)
	refID := strings.TrimPrefix(vil.js(`location.hash`), "#/referrals/")
	st, body := ts.do(t, "GET", "/api/v1/referrals/"+refID, ts.mint(t, vName), nil)
	if st != http.StatusOK || fmt.Sprint(body["consult_id"]) != id || !strings.Contains(fmt.Sprint(body["summary"]), "建议转县医院进一步检查") {
		t.Errorf("referral from the consult: %d consult_id %v summary %v", st, body["consult_id"], body["summary"])
	}
}

// fmtSscan reads "[n, dt]".
func fmtSscan(s string, n *int, dt *float64) (int, error) {
	var a, b string
	for i, c := range s {
		if c == ',' {
			a, b = s[1:i], s[i+1:len(s)-1]
			break
		}
	}
	var err error
	if *n, err = strconv.Atoi(a); err != nil {
		return 0, err
	}
	if *dt, err = strconv.ParseFloat(b, 64); err != nil {
		return 1, err
	}
	return 2, nil
}
