// Package auth owns users, roles and facility scope, access and refresh
// tokens, signing keys, login protection and the append-only audit log.
//
// Authorisation lives here in one place: a route declares the roles it
// allows with Allow, and a handler checks the facility of the record it
// touches with Scope.Check (own facility; both ends of a referral; an
// admin's region). Every read or write of a patient's or household's record
// is written to the audit log with Audit.
package auth
