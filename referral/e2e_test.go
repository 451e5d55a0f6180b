package referral_test

import (
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/qinba/qinba/auth"
	"github.com/qinba/qinba/referral"
)

// A village doctor refers a patient up to the township; the township doctor
// sees it arrive on the stream and takes it through accept, schedule,
// arrive and complete; the village doctor sees every change and the
// counter-referral; a user of an unrelated facility sees nothing.
func TestEndToEndReferralOverHTTP(t *testing.T) {
	t.Parallel()
	b := setup(t)
	vdoc := b.user(t, auth.RoleVillageDoctor, village)
	tdoc := b.user(t, auth.RoleDoctor, township)
	stranger := b.user(t, auth.RoleVillageDoctor, village2)
	admin := b.user(t, auth.RoleAdmin, county)
	otherAdmin := b.user(t, auth.RoleAdmin, otherCounty)
	pid, nid := b.person(t, "李四")

	tStream := b.openStream(t, tdoc, -1)
	vStream := b.openStream(t, vdoc, -1)
	sStream := b.openStream(t, stranger, -1)
	aStream := b.openStream(t, admin, -1)
	oStream := b.openStream(t, otherAdmin, -1)

	// Create.
	var r referral.Referral
	resp := b.do(t, vdoc, http.MethodPost, "/api/v1/referrals", map[string]any{
		"person_id": pid, "to_facility": township, "urgency": "urgent",
		"diagnoses": []string{"j18", "I10"}, "summary": "发热咳嗽 5 天，血氧 92%",
	}, &r, "Idempotency-Key", "k1")
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("create: %d", resp.StatusCode)
	}
	if r.Direction != referral.Up || r.State != referral.Sent || r.FromFacility != village || r.SenderID != vdoc.UserID ||
		r.Diagnoses[0] != "J18" || r.Version != 1 {
		t.Fatalf("created %+v", r)
	}
	if loc := resp.Header.Get("Location"); loc != "/api/v1/referrals/"+strconv.FormatInt(r.ID, 10) {
		t.Errorf("Location %q", loc)
	}

	expect := func(action string, to referral.State) {
		t.Helper()
		for name, s := range map[string]*stream{"township": tStream, "village": vStream, "admin": aStream} {
			it := item(t, s.next(t, "referral", 5*time.Second))
			if it.Event.Action != action || it.Event.ToState != to || it.Referral.ID != r.ID {
				t.Fatalf("%s stream: got %s→%s on %d, want %s→%s", name, it.Event.Action, it.Event.ToState, it.Referral.ID, action, to)
			}
			if it.Referral.Patient.Name != "李四" || strings.Contains(string(s2b(it)), nid) {
				t.Fatalf("%s stream: patient %+v", name, it.Referral.Patient)
			}
		}
	}
	expect("created", referral.Sent)

	// The inbox shows it to the township, masked.
	var inbox referral.ListResponse
	b.do(t, tdoc, http.MethodGet, "/api/v1/referrals?box=inbox", nil, &inbox)
	if len(inbox.Referrals) != 1 || inbox.Referrals[0].ID != r.ID || inbox.Referrals[0].Patient.NationalIDMasked != nid[:6]+"********"+nid[14:] {
		t.Fatalf("inbox %+v", inbox)
	}
	var outbox referral.ListResponse
	b.do(t, tdoc, http.MethodGet, "/api/v1/referrals?box=outbox", nil, &outbox)
	if len(outbox.Referrals) != 0 {
		t.Fatalf("township outbox %+v", outbox)
	}

	step := func(user *auth.Principal, action string, body map[string]any, to referral.State) {
		t.Helper()
		body["version"] = r.Version
		var out referral.Referral
		resp := b.do(t, user, http.MethodPost, "/api/v1/referrals/"+strconv.FormatInt(r.ID, 10)+"/"+action, body, &out)
		if resp.StatusCode != http.StatusOK || out.State != to || out.Version != r.Version+1 {
			data, _ := json.Marshal(out)
			t.Fatalf("%s: %d %s", action, resp.StatusCode, data)
		}
		r = out
		expect(action, to)
	}
	// The village doctor may not accept its own referral.
	var eb errBody
	if resp := b.do(t, vdoc, http.MethodPost, "/api/v1/referrals/"+strconv.FormatInt(r.ID, 10)+"/accept", map[string]any{"version": 1}, &eb); resp.StatusCode != http.StatusForbidden {
		t.Fatalf("village accept: %d %+v", resp.StatusCode, eb)
	}
	step(tdoc, "accept", map[string]any{"note": "请直接到急诊"}, referral.Accepted)
	step(tdoc, "schedule", map[string]any{"scheduled_for": "2019-11-05T08:00:00+08:00"}, referral.Scheduled)
	step(tdoc, "arrive", map[string]any{}, referral.Arrived)
	step(tdoc, "complete", map[string]any{"counter_referral": map[string]any{
		"findings": "社区获得性肺炎", "treatment": "头孢曲松 7 天", "advice": "回村随访，一周复查胸片", "return_down": true}}, referral.Completed)

	// The sending doctor reads the counter-referral and the history.
	var d referral.Detail
	if resp := b.do(t, vdoc, http.MethodGet, "/api/v1/referrals/"+strconv.FormatInt(r.ID, 10), nil, &d); resp.StatusCode != http.StatusOK {
		t.Fatalf("get: %d", resp.StatusCode)
	}
	if d.Counter == nil || d.Counter.Findings != "社区获得性肺炎" || !d.Counter.ReturnDown || d.ReceiverID != tdoc.UserID {
		t.Fatalf("counter-referral %+v", d.Counter)
	}
	var actions []string
	for i, e := range d.Events {
		if e.Seq != i+1 {
			t.Errorf("event %d has seq %d", i, e.Seq)
		}
		actions = append(actions, e.Action)
	}
	if got := strings.Join(actions, ","); got != "created,accept,schedule,arrive,complete" {
		t.Fatalf("events %s", got)
	}
	raw := b.do(t, vdoc, http.MethodGet, "/api/v1/referrals/"+strconv.FormatInt(r.ID, 10), nil, nil)
	if body := readAll(raw); strings.Contains(body, nid) {
		t.Fatal("the full identity number is in the referral JSON")
	}

	// The unrelated facility and the other region's admin see nothing.
	sStream.quiet(t, 300*time.Millisecond)
	oStream.quiet(t, 10*time.Millisecond)
	for _, u := range []*auth.Principal{stranger, otherAdmin} {
		if resp := b.do(t, u, http.MethodGet, "/api/v1/referrals/"+strconv.FormatInt(r.ID, 10), nil, &eb); resp.StatusCode != http.StatusNotFound {
			t.Fatalf("%s get: %d", u.Username, resp.StatusCode)
		}
		var l referral.ListResponse
		b.do(t, u, http.MethodGet, "/api/v1/referrals", nil, &l)
		if len(l.Referrals) != 0 {
			t.Fatalf("%s list: %+v", u.Username, l.Referrals)
		}
	}
	// A village doctor elsewhere may send referrals, but this one does not
	// exist for them.
	if resp := b.do(t, stranger, http.MethodPost, "/api/v1/referrals/"+strconv.FormatInt(r.ID, 10)+"/cancel", map[string]any{"version": r.Version}, &eb); resp.StatusCode != http.StatusNotFound {
		t.Fatalf("stranger cancel: %d", resp.StatusCode)
	}

	// A reconnect with Last-Event-ID replays what came after it, in order.
	first := d.Events[0].ID
	re := b.openStream(t, vdoc, first)
	for _, want := range []string{"accept", "schedule", "arrive", "complete"} {
		it := item(t, re.next(t, "referral", 5*time.Second))
		if it.Event.Action != want {
			t.Fatalf("replay: %s, want %s", it.Event.Action, want)
		}
	}
	re.quiet(t, 200*time.Millisecond)
}

func s2b(it referral.StreamItem) []byte {
	b, _ := json.Marshal(it)
	return b
}

func readAll(resp *http.Response) string {
	var sb strings.Builder
	buf := make([]byte, 4096)
	for {
		n, err := resp.Body.Read(buf)
		sb.Write(buf[:n])
		if err != nil {
			return sb.String()
		}
	}
}
