// Package web is Qinba's browser UI, served by the same binary: one app
// shell page at / with hash routes, vanilla ES modules and one style sheet,
// embedded with go:embed and served under a content-hashed URL
// (/assets/<version>/...) with long cache headers and gzip. Nothing comes
// from a CDN, and the strict Content-Security-Policy allows no inline
// script or style.
//
// Tokens never reach scripts. POST /web/session logs in through the auth
// service and sets the access token (qinba_at, HttpOnly, Path=/), the
// refresh token (qinba_rt, HttpOnly, Path=/web/session) and a CSRF token
// (qinba_csrf, readable by scripts). CookieAuth, a pre-routing middleware,
// turns the access cookie into a bearer token for /api/v1 requests once the
// CSRF token echoed in X-CSRF-Token matches the cookie (double submit) on
// every unsafe request. POST /web/session/refresh rotates the tokens and
// DELETE /web/session logs out.
package web
