package main

import "github.com/qinba/qinba/internal/httpx"

// Per-user rate limits on the routes that are expensive or sensitive:
// uploads (imports, attachments) and consult room tokens. Login has its own
// throttling and lockout in package auth.
func init() {
	registerMount(mount{name: "limits", order: 100, fn: func(a *App) error {
		uploads := httpx.NewLimiter(10, 10) // 10 a minute, 10 at once
		for _, p := range []string{"/api/v1/facilities/import", "/api/v1/households/import", "/api/v1/bills/import",
			"/api/v1/referrals/:id/attachments"} {
			a.LimitRoute("POST", p, uploads)
		}
		a.LimitRoute("POST", "/api/v1/consults/:id/token", httpx.NewLimiter(30, 20))
		return nil
	}})
}
