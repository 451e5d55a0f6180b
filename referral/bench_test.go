package referral_test

import (
	"context"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/qinba/qinba/auth"
	"github.com/qinba/qinba/referral"
)

// BenchmarkStreamLatency measures the time from a state change (the start
// of the write that commits it) to its arrival at each of 200 SSE
// subscribers: real HTTP server, real LISTEN/NOTIFY through the hub. Each
// iteration sends a referral and accepts it, two changes each seen by all
// 200 subscribers; it reports the p50, p99 and max over every delivery.
//
//	go test -run '^$' -bench BenchmarkStreamLatency -benchtime 200x ./referral/
func BenchmarkStreamLatency(b *testing.B) {
	const subscribers = 200
	tb := setup(b)
	vdoc := tb.user(b, auth.RoleVillageDoctor, village)
	tdoc := tb.user(b, auth.RoleDoctor, township)
	var watchers []*auth.Principal
	for range subscribers {
		watchers = append(watchers, tb.user(b, auth.RoleDoctor, township))
	}
	pid, _ := tb.person(b, "周八")

	tr := &http.Transport{MaxIdleConnsPerHost: subscribers + 10}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr}
	ctx, cancel := context.WithCancel(context.Background())
	arrivals := make(chan time.Time, subscribers*4)
	var wg sync.WaitGroup
	defer func() { cancel(); wg.Wait() }()
	for _, w := range watchers {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, tb.url+"/api/v1/referrals/stream", nil)
		req.Header.Set("X-Test-User", w.Username)
		resp, err := client.Do(req)
		if err != nil || resp.StatusCode != http.StatusOK {
			b.Fatalf("subscribe: %v", err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer resp.Body.Close()
			readSSE(resp.Body, func(e sseEvent) {
				if e.Event == "referral" {
					select {
					case arrivals <- time.Now():
					case <-ctx.Done():
					}
				}
			})
		}()
	}
	deadline := time.Now().Add(10 * time.Second)
	for tb.svc.Hub().Subscribers() < subscribers {
		if time.Now().After(deadline) {
			b.Fatalf("%d subscribers connected", tb.svc.Hub().Subscribers())
		}
		time.Sleep(5 * time.Millisecond)
	}

	lat := make([]time.Duration, 0, b.N*2*subscribers)
	collect := func(t0 time.Time) {
		timeout := time.After(10 * time.Second)
		for range subscribers {
			select {
			case at := <-arrivals:
				lat = append(lat, at.Sub(t0))
			case <-timeout:
				b.Fatal("a subscriber missed an event")
			}
		}
	}
	req := referral.CreateRequest{PersonID: pid, ToFacility: township, Urgency: referral.Urgent, Diagnoses: []string{"I63.9"}, Summary: "bench"}
	b.ResetTimer()
	for range b.N {
		t0 := time.Now()
		r, _, err := tb.svc.Create(ctxFor(vdoc), vdoc, req, "")
		if err != nil {
			b.Fatal(err)
		}
		collect(t0)
		t0 = time.Now()
		if _, err := tb.svc.Act(ctxFor(tdoc), tdoc, r.ID, referral.Accept, actionBody(referral.Accept, r.Version)); err != nil {
			b.Fatal(err)
		}
		collect(t0)
	}
	b.StopTimer()
	slices.Sort(lat)
	pct := func(p float64) float64 {
		return float64(lat[int(p*float64(len(lat)-1))].Microseconds()) / 1000
	}
	b.ReportMetric(pct(0.50), "p50-ms")
	b.ReportMetric(pct(0.99), "p99-ms")
	b.ReportMetric(pct(1), "max-ms")
	b.ReportMetric(subscribers, "subscribers")
}
