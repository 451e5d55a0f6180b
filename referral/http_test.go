package referral_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"image"
	"image/color"
	"image/jpeg"
	"image/png"
	"io"
	"mime/multipart"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/qinba/qinba/auth"
	"github.com/qinba/qinba/referral"
)

func createBody(pid int64, summary string) map[string]any {
	return map[string]any{"person_id": pid, "to_facility": township, "urgency": "routine", "diagnoses": []string{"J18"}, "summary": summary}
}

// A retried create with the same Idempotency-Key makes one referral, even
// when the retries race; the same key with another body is 409; keys are
// per user.
func TestCreateIdempotency(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{noHub: true})
	vdoc := b.user(t, auth.RoleVillageDoctor, village)
	vdoc2 := b.user(t, auth.RoleVillageDoctor, village)
	pid, _ := b.person(t, "王五")

	var wg sync.WaitGroup
	ids := make([]int64, 10)
	for i := range ids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var r referral.Referral
			resp := b.do(t, vdoc, http.MethodPost, "/api/v1/referrals", createBody(pid, "咳嗽"), &r, "Idempotency-Key", "abc")
			if resp.StatusCode != http.StatusCreated {
				t.Errorf("status %d", resp.StatusCode)
			}
			ids[i] = r.ID
		}()
	}
	wg.Wait()
	for _, id := range ids {
		if id != ids[0] || id == 0 {
			t.Fatalf("ids %v", ids)
		}
	}
	var eb errBody
	if resp := b.do(t, vdoc, http.MethodPost, "/api/v1/referrals", createBody(pid, "发热"), &eb, "Idempotency-Key", "abc"); resp.StatusCode != http.StatusConflict {
		t.Fatalf("same key, other body: %d", resp.StatusCode)
	}
	var r2 referral.Referral
	resp := b.do(t, vdoc2, http.MethodPost, "/api/v1/referrals", createBody(pid, "咳嗽"), &r2, "Idempotency-Key", "abc")
	if resp.StatusCode != http.StatusCreated || r2.ID == ids[0] || resp.Header.Get("Idempotent-Replayed") != "" {
		t.Fatalf("other user, same key: %d %d", resp.StatusCode, r2.ID)
	}
	var n int
	if err := b.pool.QueryRow(context.Background(), `SELECT count(*) FROM referral`).Scan(&n); err != nil || n != 2 {
		t.Fatalf("%d referrals", n)
	}
	// Without a key every POST creates.
	b.do(t, vdoc, http.MethodPost, "/api/v1/referrals", createBody(pid, "咳嗽"), nil)
	b.do(t, vdoc, http.MethodPost, "/api/v1/referrals", createBody(pid, "咳嗽"), nil)
	if err := b.pool.QueryRow(context.Background(), `SELECT count(*) FROM referral`).Scan(&n); err != nil || n != 4 {
		t.Fatalf("%d referrals", n)
	}
}

func TestCreateValidation(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{noHub: true})
	vdoc := b.user(t, auth.RoleVillageDoctor, village)
	admin := b.user(t, auth.RoleAdmin, county)
	pid, _ := b.person(t, "赵六")
	strangerPID, _ := b.personIn(t, "郑十一", village2)
	cases := []struct {
		name   string
		who    *auth.Principal
		body   any
		status int
		field  string
	}{
		{"bad icd", vdoc, map[string]any{"person_id": pid, "to_facility": township, "urgency": "routine", "diagnoses": []string{"I6"}, "summary": "x"}, 400, "diagnoses"},
		{"long summary", vdoc, map[string]any{"person_id": pid, "to_facility": township, "urgency": "routine", "diagnoses": []string{"I63.9"}, "summary": strings.Repeat("痛", 4001)}, 400, "summary"},
		{"bad urgency", vdoc, map[string]any{"person_id": pid, "to_facility": township, "urgency": "soon", "diagnoses": []string{"I63.9"}, "summary": "x"}, 400, "urgency"},
		{"unknown field", vdoc, map[string]any{"person_id": pid, "to_facility": township, "urgency": "routine", "diagnoses": []string{"I63.9"}, "summary": "x", "direction": "up"}, 400, "direction"},
		{"unknown person", vdoc, map[string]any{"person_id": 999999, "to_facility": township, "urgency": "routine", "diagnoses": []string{"I63.9"}, "summary": "x"}, 400, "person_id"},
		{"someone else's patient", vdoc, map[string]any{"person_id": strangerPID, "to_facility": township, "urgency": "routine", "diagnoses": []string{"I63.9"}, "summary": "x"}, 400, "person_id"},
		{"unknown facility", vdoc, map[string]any{"person_id": pid, "to_facility": "T000", "urgency": "routine", "diagnoses": []string{"I63.9"}, "summary": "x"}, 400, "to_facility"},
		{"other region", vdoc, map[string]any{"person_id": pid, "to_facility": otherCounty, "urgency": "routine", "diagnoses": []string{"I63.9"}, "summary": "x"}, 400, "to_facility"},
		{"to itself", vdoc, map[string]any{"person_id": pid, "to_facility": village, "urgency": "routine", "diagnoses": []string{"I63.9"}, "summary": "x"}, 400, "to_facility"},
		{"admin may not send", admin, map[string]any{"person_id": pid, "to_facility": township, "urgency": "routine", "diagnoses": []string{"I63.9"}, "summary": "x"}, 403, ""},
	}
	for _, c := range cases {
		var eb errBody
		resp := b.do(t, c.who, http.MethodPost, "/api/v1/referrals", c.body, &eb)
		if resp.StatusCode != c.status {
			t.Errorf("%s: %d %+v", c.name, resp.StatusCode, eb)
			continue
		}
		if c.field != "" && eb.Error.Fields[c.field] == "" {
			t.Errorf("%s: fields %v", c.name, eb.Error.Fields)
		}
	}
}

func upload(t *testing.T, b *testBundle, who *auth.Principal, id int64, name string, data []byte) (*http.Response, referral.Attachment) {
	t.Helper()
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	_ = mw.WriteField("note", "x")
	fw, _ := mw.CreateFormFile("file", name)
	_, _ = fw.Write(data)
	_ = mw.Close()
	req, _ := http.NewRequest(http.MethodPost, fmt.Sprintf("%s/api/v1/referrals/%d/attachments", b.url, id), &body)
	req.Header.Set("Content-Type", mw.FormDataContentType())
	req.Header.Set("X-Test-User", who.Username)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var a referral.Attachment
	raw, _ := io.ReadAll(resp.Body)
	_ = json.Unmarshal(raw, &a)
	resp.Body = io.NopCloser(bytes.NewReader(raw))
	return resp, a
}

func pngBytes(t *testing.T) []byte {
	img := image.NewRGBA(image.Rect(0, 0, 8, 8))
	img.Set(1, 1, color.RGBA{255, 0, 0, 255})
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func jpegBytes(t *testing.T) []byte {
	var buf bytes.Buffer
	if err := jpeg.Encode(&buf, image.NewGray(image.Rect(0, 0, 8, 8)), nil); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// Attachments are told by content, limited in size, served as downloads
// that browsers will not sniff, and only to the two ends.
func TestAttachments(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{noHub: true})
	vdoc := b.user(t, auth.RoleVillageDoctor, village)
	tdoc := b.user(t, auth.RoleDoctor, township)
	stranger := b.user(t, auth.RoleDoctor, town2)
	r := b.create(t, vdoc, township, referral.Urgent)

	pdf := []byte("%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n")
	for _, c := range []struct {
		who  *auth.Principal
		name string
		data []byte
		ct   string
	}{
		{vdoc, "胸片.png", pngBytes(t), "image/png"},
		{tdoc, `..\..\etc/"ct".jpg`, jpegBytes(t), "image/jpeg"},
		{vdoc, "report.PDF", pdf, "application/pdf"},
	} {
		resp, a := upload(t, b, c.who, r.ID, c.name, c.data)
		if resp.StatusCode != http.StatusCreated || a.ContentType != c.ct || a.Size != len(c.data) {
			t.Fatalf("%s: %d %+v", c.name, resp.StatusCode, a)
		}
		if strings.ContainsAny(a.Filename, `/\"`) {
			t.Fatalf("filename %q", a.Filename)
		}
		dl, err := http.NewRequest(http.MethodGet, fmt.Sprintf("%s/api/v1/referrals/%d/attachments/%d", b.url, r.ID, a.ID), nil)
		if err != nil {
			t.Fatal(err)
		}
		dl.Header.Set("X-Test-User", tdoc.Username)
		got, err := http.DefaultClient.Do(dl)
		if err != nil {
			t.Fatal(err)
		}
		data, _ := io.ReadAll(got.Body)
		got.Body.Close()
		if got.StatusCode != 200 || !bytes.Equal(data, c.data) || got.Header.Get("Content-Type") != c.ct ||
			got.Header.Get("X-Content-Type-Options") != "nosniff" || !strings.HasPrefix(got.Header.Get("Content-Disposition"), "attachment;") {
			t.Fatalf("download %s: %d %v", c.name, got.StatusCode, got.Header)
		}
	}
	// By content, not by name.
	if resp, _ := upload(t, b, vdoc, r.ID, "fake.png", []byte("<html><script>alert(1)</script></html>")); resp.StatusCode != http.StatusUnsupportedMediaType {
		t.Fatalf("html named .png: %d", resp.StatusCode)
	}
	if resp, _ := upload(t, b, vdoc, r.ID, "big.pdf", append(append([]byte{}, pdf...), make([]byte, 5<<20)...)); resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Fatalf("6 MB: %d", resp.StatusCode)
	}
	if resp, _ := upload(t, b, stranger, r.ID, "x.pdf", pdf); resp.StatusCode != http.StatusNotFound {
		t.Fatalf("stranger upload: %d", resp.StatusCode)
	}
	var eb errBody
	if resp := b.do(t, stranger, http.MethodGet, fmt.Sprintf("/api/v1/referrals/%d/attachments/1", r.ID), nil, &eb); resp.StatusCode != http.StatusNotFound {
		t.Fatalf("stranger download: %d", resp.StatusCode)
	}
	var d referral.Detail
	b.do(t, vdoc, http.MethodGet, fmt.Sprintf("/api/v1/referrals/%d", r.ID), nil, &d)
	if len(d.Attachments) != 3 || d.Events[len(d.Events)-1].Action != referral.EventAttachment {
		t.Fatalf("detail %+v", d)
	}
}

// The month's figures: counts, acceptance time percentiles, overdue,
// loop closure, and the tier flows; admins see their region, others their
// facility.
func TestStats(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{noHub: true})
	ctx := context.Background()
	vdoc := b.user(t, auth.RoleVillageDoctor, village)
	tdoc := b.user(t, auth.RoleDoctor, township)
	admin := b.user(t, auth.RoleAdmin, county)

	var rs []referral.Referral
	for _, wait := range []time.Duration{10 * time.Minute, 20 * time.Minute, 60 * time.Minute} {
		r := b.create(t, vdoc, township, referral.Routine)
		b.clock.Advance(wait)
		rs = append(rs, b.act(t, tdoc, r, referral.Accept))
	}
	late := b.create(t, vdoc, township, referral.Emergency)
	b.clock.Advance(31 * time.Minute)
	if n, err := b.svc.Escalate(ctx); err != nil || n != 1 {
		t.Fatal(n, err)
	}
	b.act(t, tdoc, late, referral.Decline)
	r := b.act(t, tdoc, rs[0], referral.Schedule)
	r = b.act(t, tdoc, r, referral.Arrive)
	b.act(t, tdoc, r, referral.Complete)
	// Township refers up to the county: another flow.
	b.create(t, tdoc, county, referral.Urgent)

	var st referral.Stats
	if resp := b.do(t, admin, http.MethodGet, "/api/v1/referrals/stats?month=2019-11", nil, &st); resp.StatusCode != 200 {
		t.Fatalf("stats: %d", resp.StatusCode)
	}
	by := map[string]referral.FacilityStats{}
	for _, f := range st.Facilities {
		by[f.Facility.Code] = f
	}
	v, tw, k := by[village], by[township], by[county]
	if v.Sent != 4 || v.LoopClosed != 1 || v.LoopClosureRate == nil || *v.LoopClosureRate != 0.25 {
		t.Errorf("village %+v", v)
	}
	if tw.Received != 4 || tw.Accepted != 3 || tw.Overdue != 1 || tw.Sent != 1 ||
		tw.AcceptMedianSeconds == nil || *tw.AcceptMedianSeconds != 1200 || tw.AcceptP90Seconds == nil || *tw.AcceptP90Seconds != 3120 {
		t.Errorf("township %+v", tw)
	}
	if k.Received != 1 || k.AcceptMedianSeconds != nil {
		t.Errorf("county %+v", k)
	}
	flows := map[string]int{}
	for _, f := range st.Flows {
		flows[string(f.FromTier)+">"+string(f.ToTier)] = f.Count
	}
	if flows["village>township"] != 4 || flows["township>county"] != 1 || len(flows) != 2 {
		t.Errorf("flows %+v", st.Flows)
	}
	// The village doctor sees only the village.
	var vst referral.Stats
	b.do(t, vdoc, http.MethodGet, "/api/v1/referrals/stats?month=2019-11", nil, &vst)
	if len(vst.Facilities) != 1 || vst.Facilities[0].Facility.Code != village || len(vst.Flows) != 1 {
		t.Errorf("village stats %+v", vst)
	}
	// Another month is empty; a bad month is 400.
	var dec referral.Stats
	b.do(t, admin, http.MethodGet, "/api/v1/referrals/stats?month=2019-12", nil, &dec)
	if len(dec.Facilities) != 0 || len(dec.Flows) != 0 {
		t.Errorf("december %+v", dec)
	}
	var eb errBody
	if resp := b.do(t, admin, http.MethodGet, "/api/v1/referrals/stats?month=2019-13", nil, &eb); resp.StatusCode != 400 {
		t.Errorf("bad month: %d", resp.StatusCode)
	}
}
