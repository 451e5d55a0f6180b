// Package household owns the county's poverty-alleviation roster: the
// households (建档立卡户) with their head, members, category and home
// village clinic, the persons with their resident identity number (GB 11643,
// from which sex and birth date are derived), and each person's insurance
// enrolment per year. Nothing else writes the household, person and
// person_insurance tables.
//
// The roster is loaded by Import (`qinba import roster`, POST
// /api/v1/households/import): every row is validated, all or nothing by
// default, through a COPY into a staging table and set-based upserts in one
// transaction. Persons are read through Store (GetPerson, Insured) by the
// settlement and referral packages, and searched through the
// /api/v1/persons and /api/v1/households routes, which mask identity
// numbers (MaskID) and write every read to the audit log.
package household
