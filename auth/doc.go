// Package auth owns users, roles and facility scope, access and refresh
// tokens, signing keys, login protection and the append-only audit log
// (tables app_user, signing_key, refresh_family, refresh_token,
// login_failure, login_lockout, audit_log; migration 0002).
//
// Authorisation lives here in one place: a route declares the roles it
// allows with Allow, and a handler checks the facility of the record it
// touches with Scope.Check (own facility; both ends of a referral; an
// admin's region; auditors see no records). Lists filter with ScopeFilter.
// Every read or write of a patient's or household's record is written to
// the audit log with Audit, in the transaction that does it.
//
// Tokens: Service.Login checks an argon2id password hash (always running
// argon2, with a dummy hash for unknown users), throttles per client IP and
// per username, and locks a username after repeated failures. It returns a
// 15-minute EdDSA access JWT (typ at+jwt, aud qinba-api) and an opaque
// refresh token stored only as its SHA-256, rotated on every use; a reused
// refresh token revokes its whole family. Service.Authenticate verifies
// access tokens (alg pinned, typ, kid, iss, aud, exp, nbf, iat) and re-reads
// the user on every request, so a disabled user is refused at once.
//
// Keys: KeyStore holds the Ed25519 signing keys in the database (encrypted
// at rest with QINBA_KEY_SECRET when set), creates the first on start,
// rotates on `qinba keys rotate`, publishes them at /.well-known/jwks.json
// and keeps several servers in agreement (LISTEN/NOTIFY, periodic reload,
// reload on an unknown kid). Its SigningKey and PublicKey methods are what
// package consult's KeySource needs.
package auth
