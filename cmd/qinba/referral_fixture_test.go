package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"mime/multipart"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/qinba/qinba/auth"
	"github.com/qinba/qinba/household"
)

// Referral fixtures for the harness tests (the matrix and the end-to-end
// test): patients, referrals driven into a state, attachments.

// refPerson registers a patient in a household of village and returns its
// person id.
func refPerson(t *testing.T, ts *testServer, village string) int64 {
	t.Helper()
	ctx := context.Background()
	n := ts.seq.Add(1)
	hh := fmt.Sprintf("RHH-%d", n)
	if _, err := ts.Owner.Exec(ctx, `INSERT INTO household (id, village_code, category) VALUES ($1, $2, 'none')`, hh, village); err != nil {
		t.Fatal(err)
	}
	id17 := fmt.Sprintf("42062619700101%03d", n%1000)
	var id int64
	if err := ts.Owner.QueryRow(ctx, `INSERT INTO person (national_id, name, household_id, relation) VALUES ($1, '钱九', $2, 'head') RETURNING id`,
		id17+string(household.CheckChar(id17)), hh).Scan(&id); err != nil {
		t.Fatal(err)
	}
	return id
}

// senderRole is the role that sends from fac: village doctors in villages.
func senderRole(fac string) auth.Role {
	if strings.HasPrefix(fac, "V") {
		return auth.RoleVillageDoctor
	}
	return auth.RoleDoctor
}

// refCreate sends a referral from → to as a new user of from and returns
// its id.
func refCreate(t *testing.T, ts *testServer, sender token, from, to string) int64 {
	t.Helper()
	village := from
	if !strings.HasPrefix(from, "V") {
		village = facVillage
	}
	st, b := ts.do(t, "POST", "/api/v1/referrals", sender, map[string]any{
		"person_id": refPerson(t, ts, village), "to_facility": to, "urgency": "urgent", "diagnoses": []string{"I63.9"}, "summary": "左侧肢体无力"})
	if st != http.StatusCreated {
		t.Fatalf("create referral %s→%s: %d %v", from, to, st, b)
	}
	return int64(b["id"].(float64))
}

// refBody is a valid body for action at version v.
func refBody(action string, v int) map[string]any {
	b := map[string]any{"version": v}
	switch action {
	case "decline":
		b["reason"] = "no bed"
	case "schedule":
		b["scheduled_for"] = "2019-11-05T08:00:00+08:00"
	case "complete":
		b["counter_referral"] = map[string]any{"findings": "脑梗死", "treatment": "溶栓", "advice": "随访", "return_down": true}
	}
	return b
}

// refInState sends a referral from → to and drives it into state (sent,
// accepted, scheduled or arrived) as a doctor of to; it returns its id and
// version.
func refInState(t *testing.T, ts *testServer, from, to, state string) (int64, int) {
	t.Helper()
	id := refCreate(t, ts, ts.as(t, senderRole(from), from), from, to)
	v := 1
	path := map[string][]string{"sent": nil, "accepted": {"accept"}, "scheduled": {"accept", "schedule"},
		"arrived": {"accept", "schedule", "arrive"}}[state]
	if len(path) > 0 {
		doc := ts.as(t, auth.RoleDoctor, to)
		for _, a := range path {
			st, b := ts.do(t, "POST", fmt.Sprintf("/api/v1/referrals/%d/%s", id, a), doc, refBody(a, v))
			if st != http.StatusOK {
				t.Fatalf("%s: %d %v", a, st, b)
			}
			v++
		}
	}
	return id, v
}

// refPDF is a minimal PDF.
var refPDF = []byte("%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n")

// refMultipart builds an upload body of data as field "file".
func refMultipart(name string, data []byte) (contentType string, body []byte) {
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	fw, _ := mw.CreateFormFile("file", name)
	_, _ = fw.Write(data)
	_ = mw.Close()
	return mw.FormDataContentType(), buf.Bytes()
}

// refAttach uploads a PDF to referral id as tok and returns its id.
func refAttach(t *testing.T, ts *testServer, tok token, id int64) int64 {
	t.Helper()
	ct, body := refMultipart("report.pdf", refPDF)
	resp, raw := ts.raw(t, "POST", fmt.Sprintf("/api/v1/referrals/%d/attachments", id), tok, ct, body)
	_, b := decodeBody(raw)
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("attach: %d %v", resp.StatusCode, b)
	}
	return int64(b["id"].(float64))
}

// refSSEEvent is one event of a referral stream.
type refSSEEvent struct {
	ID    int64
	Event string
	Data  string
}

// refStream is an open GET /api/v1/referrals/stream.
type refStream struct {
	events chan refSSEEvent
	cancel context.CancelFunc
}

// openRefStream opens the stream as tok, resuming after last (>= 0).
func openRefStream(t *testing.T, ts *testServer, tok token, last int64) *refStream {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "GET", ts.URL+"/api/v1/referrals/stream", nil)
	req.Header.Set("Authorization", "Bearer "+tok.Access)
	if last >= 0 {
		req.Header.Set("Last-Event-ID", strconv.FormatInt(last, 10))
	}
	resp, err := (&http.Client{}).Do(req)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		cancel()
		resp.Body.Close()
		t.Fatalf("stream: %d", resp.StatusCode)
	}
	s := &refStream{events: make(chan refSSEEvent, 256), cancel: cancel}
	go func() {
		defer close(s.events)
		defer resp.Body.Close()
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		var e refSSEEvent
		for sc.Scan() {
			line := sc.Text()
			switch {
			case line == "":
				if e.Event != "" {
					s.events <- e
				}
				e = refSSEEvent{}
			case strings.HasPrefix(line, "id: "):
				e.ID, _ = strconv.ParseInt(line[4:], 10, 64)
			case strings.HasPrefix(line, "event: "):
				e.Event = line[7:]
			case strings.HasPrefix(line, "data: "):
				e.Data += line[6:]
			}
		}
	}()
	t.Cleanup(cancel)
	return s
}

// next returns the next event within d.
func (s *refStream) next(t *testing.T, d time.Duration) refSSEEvent {
	t.Helper()
	select {
	case e, ok := <-s.events:
		if !ok {
			t.Fatal("stream closed")
		}
		return e
	case <-time.After(d):
		t.Fatalf("no event within %s", d)
	}
	return refSSEEvent{}
}

// quiet fails when an event arrives within d.
func (s *refStream) quiet(t *testing.T, d time.Duration) {
	t.Helper()
	select {
	case e, ok := <-s.events:
		if ok {
			t.Fatalf("unexpected event %s %d: %s", e.Event, e.ID, e.Data)
		}
	case <-time.After(d):
	}
}
