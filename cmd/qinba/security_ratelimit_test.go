package main

import (
	"net/http"
	"strings"
	"testing"

	"github.com/qinba/qinba/auth"
)

// Upload routes are rate limited per user: after the burst, 429 with the
// error shape and a Retry-After; another user is not affected.
func TestUploadRoutesAreRateLimited(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t)
	a1 := ts.as(t, auth.RoleAdmin, facCounty)
	a2 := ts.as(t, auth.RoleAdmin, facCounty)
	post := func(tok string) *http.Response {
		req, _ := http.NewRequest("POST", ts.URL+"/api/v1/facilities/import", strings.NewReader("a,b\n"))
		req.Header.Set("Content-Type", "text/csv")
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	for i := range 10 {
		resp := post(a1.Access)
		resp.Body.Close()
		if resp.StatusCode != 400 {
			t.Fatalf("request %d: status %d, want 400 (bad CSV)", i, resp.StatusCode)
		}
	}
	resp := post(a1.Access)
	defer resp.Body.Close()
	if resp.StatusCode != 429 || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("11th request: status %d, Retry-After %q; want 429 with Retry-After", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	if code, _ := errorShape(t, resp); code != "rate_limited" {
		t.Errorf("code %q", code)
	}
	resp2 := post(a2.Access)
	resp2.Body.Close()
	if resp2.StatusCode != 400 {
		t.Errorf("another admin: status %d, want 400", resp2.StatusCode)
	}
}
