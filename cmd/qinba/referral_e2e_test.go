package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/qinba/qinba/auth"
)

// The referral loop on the real server with real tokens: a village doctor
// refers a patient up to the township; the township doctor sees it arrive
// on the stream, accepts, schedules, marks the arrival and completes with a
// counter-referral; the village doctor sees every change on their stream
// and reads the counter-referral; a doctor of an unrelated facility sees
// nothing on the stream and gets 404 on the referral.
func TestReferralEndToEnd(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t)
	vdoc := ts.as(t, auth.RoleVillageDoctor, facVillage)
	tdoc := ts.as(t, auth.RoleDoctor, facTownship)
	stranger := ts.as(t, auth.RoleDoctor, facTownship2)
	pid := refPerson(t, ts, facVillage)

	// Resume from 0: whatever happens from here on arrives, even if the
	// server's listener is still starting.
	tStream := openRefStream(t, ts, tdoc, 0)
	vStream := openRefStream(t, ts, vdoc, 0)
	sStream := openRefStream(t, ts, stranger, 0)

	st, b := ts.do(t, "POST", "/api/v1/referrals", vdoc, map[string]any{"person_id": pid, "to_facility": facTownship,
		"urgency": "emergency", "diagnoses": []string{"I63.9"}, "summary": "突发言语不清 1 小时"})
	if st != http.StatusCreated || b["direction"] != "up" || b["state"] != "sent" {
		t.Fatalf("create: %d %v", st, b)
	}
	id := int64(b["id"].(float64))

	type item struct {
		Event struct {
			Action  string `json:"action"`
			ToState string `json:"to_state"`
		} `json:"event"`
		Referral struct {
			ID    int64  `json:"id"`
			State string `json:"state"`
		} `json:"referral"`
	}
	expect := func(s *refStream, who, action, state string) {
		t.Helper()
		e := s.next(t, 10*time.Second)
		var it item
		if e.Event != "referral" || json.Unmarshal([]byte(e.Data), &it) != nil || e.ID == 0 {
			t.Fatalf("%s: event %+v", who, e)
		}
		if it.Referral.ID != id || it.Event.Action != action || it.Event.ToState != state {
			t.Fatalf("%s: got %s→%s on %d, want %s→%s on %d", who, it.Event.Action, it.Event.ToState, it.Referral.ID, action, state, id)
		}
	}
	expect(tStream, "township", "created", "sent")
	expect(vStream, "village", "created", "sent")

	version := 1
	for _, step := range []struct{ action, state string }{
		{"accept", "accepted"}, {"schedule", "scheduled"}, {"arrive", "arrived"}, {"complete", "completed"},
	} {
		st, b := ts.do(t, "POST", fmt.Sprintf("/api/v1/referrals/%d/%s", id, step.action), tdoc, refBody(step.action, version))
		if st != http.StatusOK || b["state"] != step.state {
			t.Fatalf("%s: %d %v", step.action, st, b)
		}
		version++
		expect(tStream, "township", step.action, step.state)
		expect(vStream, "village", step.action, step.state)
	}
	// The same accept again: 409 with the current state.
	st, b = ts.do(t, "POST", fmt.Sprintf("/api/v1/referrals/%d/accept", id), tdoc, refBody("accept", version))
	if e, _ := b["error"].(map[string]any); st != http.StatusConflict || e["details"].(map[string]any)["state"] != "completed" {
		t.Fatalf("accept a completed referral: %d %v", st, b)
	}

	st, b = ts.do(t, "GET", fmt.Sprintf("/api/v1/referrals/%d", id), vdoc, nil)
	cr, _ := b["counter_referral"].(map[string]any)
	if st != http.StatusOK || cr["findings"] != "脑梗死" || cr["return_down"] != true || len(b["events"].([]any)) != 5 {
		t.Fatalf("sender reads: %d %v", st, b)
	}
	if raw, _ := json.Marshal(b); strings.Contains(string(raw), "national_id\"") {
		t.Fatalf("identity number in referral JSON: %s", raw)
	}

	sStream.quiet(t, 300*time.Millisecond)
	if st, _ := ts.do(t, "GET", fmt.Sprintf("/api/v1/referrals/%d", id), stranger, nil); st != http.StatusNotFound {
		t.Fatalf("stranger GET: %d", st)
	}
	st, b = ts.do(t, "GET", "/api/v1/referrals", stranger, nil)
	if refs, _ := b["referrals"].([]any); st != http.StatusOK || len(refs) != 0 {
		t.Fatalf("stranger list: %d %v", st, b)
	}
}
