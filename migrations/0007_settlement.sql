-- +goose Up
-- One-stop settlement (package settlement): bills and their lines, the
-- settlements (and reversals) of bills with the engine's input and result,
-- each person's annual accumulators, the double-entry journal, the monthly
-- clearing of the funds, and the idempotency keys of settle and reverse.
-- Nothing else writes these tables.
--
-- Append-only (refuse_change trigger; the application role has no UPDATE or
-- DELETE on them): settlement_policy, settlement, ledger_account,
-- journal_entry, journal_line, clearing_run, clearing_facility, clearing_line.
-- A reversal is a new settlement row pointing at the one it reverses.

-- Every policy a settlement was computed under, verbatim, keyed by the
-- SHA-256 of its source: `qinba verify` replays settlements with exactly the
-- figures they were settled with, whatever policy files are loaded today.
CREATE TABLE settlement_policy (
    sha256      bytea PRIMARY KEY CHECK (length(sha256) = 32),
    policy_id   text NOT NULL,
    region_code text NOT NULL,
    valid_from  date NOT NULL,
    valid_to    date NOT NULL,
    source      text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- A bill: one outpatient visit or inpatient stay at one facility. Its date
-- (bill_date) is the discharge date of a stay and the visit date of a visit;
-- it picks the policy, the insurance year and the accumulators. The tier
-- and region are the facility's when the bill was recorded. A referral, when
-- given, is a referral of the same person to this facility; its direction
-- and sending facility are copied here (both are fixed once a referral is
-- sent). A bill may be corrected (lines replaced, version + 1) only while it
-- is open or reversed, never while settled.
CREATE TABLE bill (
    id                 bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    person_id          bigint NOT NULL REFERENCES person (id),
    facility_code      text NOT NULL REFERENCES facility (code),
    tier               text NOT NULL CHECK (tier IN ('village', 'township', 'county', 'city')),
    region_code        text NOT NULL,
    kind               text NOT NULL CHECK (kind IN ('outpatient', 'inpatient')),
    admitted_on        date,
    discharged_on      date,
    visit_on           date,
    bill_date          date NOT NULL,
    emergency          boolean NOT NULL DEFAULT false,
    referral_id        bigint REFERENCES referral (id),
    referral_direction text CHECK (referral_direction IN ('up', 'down')),
    referral_from      text REFERENCES facility (code),
    external_no        text CHECK (external_no ~ '^[A-Za-z0-9_./-]{1,64}$'),
    total              numeric(14,2) NOT NULL CHECK (total >= 0),
    line_count         int NOT NULL CHECK (line_count >= 1),
    -- SHA-256 of the bill's content (everything the clerk enters): a
    -- re-import of the same bill is recognised as unchanged.
    content_sha256     bytea NOT NULL CHECK (length(content_sha256) = 32),
    version            int NOT NULL DEFAULT 1 CHECK (version >= 1),
    source             text NOT NULL CHECK (source IN ('api', 'import')),
    created_by         bigint REFERENCES app_user (id),
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now(),
    UNIQUE (facility_code, external_no),
    CHECK (kind = 'inpatient' AND admitted_on IS NOT NULL AND discharged_on IS NOT NULL AND visit_on IS NULL
               AND admitted_on <= discharged_on AND bill_date = discharged_on
        OR kind = 'outpatient' AND visit_on IS NOT NULL AND admitted_on IS NULL AND discharged_on IS NULL
               AND bill_date = visit_on AND NOT emergency AND referral_id IS NULL),
    CHECK ((referral_id IS NULL) = (referral_direction IS NULL) AND (referral_id IS NULL) = (referral_from IS NULL))
);
CREATE INDEX bill_person_idx ON bill (person_id, bill_date);
CREATE INDEX bill_facility_idx ON bill (facility_code, bill_date);

-- Where a bill stands: open (never settled), settled (settlement_id in
-- force) or reversed (its last settlement was reversed; it may be corrected
-- and settled again). Kept apart from the bill, whose many checks would
-- otherwise run again on every settlement; updated in place (no index
-- covers its columns, and pages keep room: HOT updates).
CREATE TABLE bill_state (
    bill_id       bigint PRIMARY KEY REFERENCES bill (id),
    status        text NOT NULL DEFAULT 'open',
    settlement_id bigint, -- a settlement row, written by the statement that sets it
    updated_at    timestamptz NOT NULL DEFAULT now(),
    CHECK (status IN ('open', 'settled', 'reversed') AND (status = 'settled') = (settlement_id IS NOT NULL))
) WITH (fillfactor = 80);

-- amount = round2(quantity × unit_price), checked on entry.
CREATE TABLE bill_line (
    bill_id    bigint NOT NULL REFERENCES bill (id),
    line_no    int NOT NULL CHECK (line_no >= 1),
    item_code  text NOT NULL CHECK (char_length(item_code) BETWEEN 1 AND 64),
    item_name  text NOT NULL CHECK (char_length(item_name) BETWEEN 1 AND 100),
    class      text NOT NULL CHECK (class IN ('A', 'B', 'C')),
    quantity   numeric(12,3) NOT NULL CHECK (quantity > 0),
    unit_price numeric(14,4) NOT NULL CHECK (unit_price >= 0),
    amount     numeric(14,2) NOT NULL CHECK (amount >= 0),
    PRIMARY KEY (bill_id, line_no)
);

-- Hot parents: the settlement tables do not reference the rows that every
-- concurrent settlement would share (the facility, the ledger accounts, the
-- policy, the clerk's user) with foreign keys. Each such check share-locks
-- the parent row, and many transactions share-locking one row turn its lock
-- into a MultiXact, rewritten on every settlement: it was the largest cost
-- of settling under concurrency. Those values are copied from rows that do
-- reference them (the bill's facility), constrained by CHECK (accounts), or
-- proved by `qinba verify` (every settlement's policy is stored). For the
-- same reason (a foreign key check locks the parent row, which writes it)
-- the person of a settlement or accumulator row is not checked again (it
-- is the bill's, checked when the bill was written); and a row written by
-- the same statement as the settlement it belongs to does not check that
-- the settlement exists (it does, and settlements are never deleted): the
-- journal entry and its lines, the bill's state, the idempotency record.
-- qinba verify proves all of these relations.
--
-- One settlement (kind settle) or reversal (kind reverse) of a bill. The
-- split is kept in columns, one per payer, and the database checks that the
-- payers add up to the total (the engine's invariant, enforced again here);
-- a reversal holds the original's amounts negated. d_* is what the row added
-- to the person's accumulators of year (negative for a reversal). input is
-- the engine's input (person, bill in the conformance-case form, policy),
-- result the engine's result with its trace. Ids are handed out while the
-- person-year's accumulator row is locked, so within a person and year they
-- give the order the rows were applied in.
CREATE TABLE settlement (
    id                   bigint GENERATED BY DEFAULT AS IDENTITY (SEQUENCE NAME settlement_id_seq) PRIMARY KEY,
    kind                 text NOT NULL,
    bill_id              bigint NOT NULL REFERENCES bill (id),
    bill_version         int NOT NULL,
    person_id            bigint NOT NULL, -- the bill's when it was settled
    facility_code        text NOT NULL, -- the bill's (see "hot parents" below)
    year                 int NOT NULL,
    bill_date            date NOT NULL,
    -- The accounting date: the bill's date (a reversal: the day it was
    -- reversed), moved to the first day of the next month not yet cleared
    -- for the facility when its own month already is.
    posted_on            date NOT NULL,
    reverses_id          bigint REFERENCES settlement (id),
    reason               text,
    policy_sha256        bytea NOT NULL, -- a settlement_policy row (checked by qinba verify)
    policy_id            text NOT NULL,
    bill_kind            text NOT NULL,
    tier                 text NOT NULL,
    category             text NOT NULL,
    insured              boolean NOT NULL,
    total                numeric(14,2) NOT NULL,
    eligible             numeric(14,2) NOT NULL,
    deductible           numeric(14,2) NOT NULL,
    basic                numeric(14,2) NOT NULL,
    critical             numeric(14,2) NOT NULL,
    assistance           numeric(14,2) NOT NULL,
    supplementary        numeric(14,2) NOT NULL,
    backstop             numeric(14,2) NOT NULL,
    hospital             numeric(14,2) NOT NULL,
    patient              numeric(14,2) NOT NULL,
    d_admissions         int NOT NULL,
    d_outpatient_paid    numeric(14,2) NOT NULL,
    d_basic_paid         numeric(14,2) NOT NULL,
    d_critical_base      numeric(14,2) NOT NULL,
    d_critical_paid      numeric(14,2) NOT NULL,
    d_assistance_paid    numeric(14,2) NOT NULL,
    d_supplementary_paid numeric(14,2) NOT NULL,
    d_backstop_paid      numeric(14,2) NOT NULL,
    d_patient_in_policy  numeric(14,2) NOT NULL,
    input                jsonb,
    result               jsonb NOT NULL,
    created_by           bigint, -- app_user.id
    created_at           timestamptz NOT NULL DEFAULT now(),
    -- One check (each is prepared again by every insert statement): the
    -- payers add up to the total; a settlement's amounts are >= 0, a
    -- reversal's <= 0; the kinds; the year is the bill's.
    CHECK (basic + critical + assistance + supplementary + backstop + hospital + patient = total
        AND year = extract(year FROM bill_date) AND bill_kind IN ('outpatient', 'inpatient')
        AND (kind = 'settle' AND reverses_id IS NULL AND input IS NOT NULL AND reason IS NULL
               AND least(total, eligible, deductible, basic, critical, assistance, supplementary, backstop, hospital, patient) >= 0
          OR kind = 'reverse' AND reverses_id IS NOT NULL AND input IS NULL AND char_length(reason) BETWEEN 1 AND 500
               AND greatest(total, eligible, deductible, basic, critical, assistance, supplementary, backstop, hospital, patient) <= 0))
);
CREATE INDEX settlement_person_idx ON settlement (person_id, year, id);
CREATE INDEX settlement_bill_idx ON settlement (bill_id);
-- A settlement is reversed at most once.
CREATE UNIQUE INDEX settlement_reverses_idx ON settlement (reverses_id) WHERE reverses_id IS NOT NULL;

-- Each person's running totals per calendar year (SPEC.md "Annual
-- accumulators"). The row is the lock that serialises the settlements of
-- one person and year.
CREATE TABLE accumulator (
    person_id          bigint NOT NULL, -- a person of a bill
    year               int NOT NULL,
    admissions         int NOT NULL DEFAULT 0,
    outpatient_paid    numeric(14,2) NOT NULL DEFAULT 0,
    basic_paid         numeric(14,2) NOT NULL DEFAULT 0,
    critical_base      numeric(14,2) NOT NULL DEFAULT 0,
    critical_paid      numeric(14,2) NOT NULL DEFAULT 0,
    assistance_paid    numeric(14,2) NOT NULL DEFAULT 0,
    supplementary_paid numeric(14,2) NOT NULL DEFAULT 0,
    backstop_paid      numeric(14,2) NOT NULL DEFAULT 0,
    patient_in_policy  numeric(14,2) NOT NULL DEFAULT 0,
    last_settlement_id bigint,
    updated_at         timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (person_id, year),
    -- Sums of amounts >= 0 (one check: see settlement).
    CHECK (year BETWEEN 2000 AND 2100 AND admissions >= 0 AND least(outpatient_paid, basic_paid, critical_base, critical_paid,
        assistance_paid, supplementary_paid, backstop_paid, patient_in_policy) >= 0)
) WITH (fillfactor = 80);

-- The chart of accounts (see settlement/ledger.go).
CREATE TABLE ledger_account (
    code    text PRIMARY KEY,
    kind    text NOT NULL CHECK (kind IN ('asset', 'revenue', 'expense')),
    fund    text NOT NULL UNIQUE,
    name_zh text NOT NULL,
    name_en text NOT NULL
);
INSERT INTO ledger_account (code, kind, fund, name_zh, name_en) VALUES
    ('1221', 'asset',   'basic',         '应收基本医保基金',   'Receivable: basic medical insurance fund'),
    ('1222', 'asset',   'critical',      '应收大病保险',       'Receivable: critical illness insurance'),
    ('1223', 'asset',   'assistance',    '应收医疗救助资金',   'Receivable: medical assistance fund'),
    ('1224', 'asset',   'supplementary', '应收补充医疗保险',   'Receivable: supplementary insurance'),
    ('1225', 'asset',   'backstop',      '应收政府兜底资金',   'Receivable: government backstop fund'),
    ('1231', 'asset',   'patient',       '应收患者自付',       'Receivable: patient''s own share'),
    ('5301', 'expense', 'hospital',      '医院承担目录外费用', 'Write-off: out-of-policy cost borne by the hospital'),
    ('4101', 'revenue', 'revenue',       '医疗收入',           'Medical service revenue');

-- One journal entry per settlement or reversal (keyed by it), balanced
-- (Σ debit = Σ credit over its lines).
CREATE TABLE journal_entry (
    settlement_id bigint PRIMARY KEY, -- the settlement's, written with it
    facility_code text NOT NULL, -- the settlement's
    posted_on     date NOT NULL,
    memo          text NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX journal_entry_facility_idx ON journal_entry (facility_code, posted_on);

CREATE TABLE journal_line (
    settlement_id bigint NOT NULL, -- its entry, written with it in one statement
    line_no  smallint NOT NULL,
    account  text NOT NULL,
    debit    numeric(14,2) NOT NULL DEFAULT 0,
    credit   numeric(14,2) NOT NULL DEFAULT 0,
    PRIMARY KEY (settlement_id, line_no),
    -- An account of the chart; exactly one side positive (one check).
    CHECK (account IN ('1221', '1222', '1223', '1224', '1225', '1231', '5301', '4101')
        AND least(debit, credit) = 0 AND greatest(debit, credit) > 0 AND line_no >= 1)
);

-- A monthly clearing run: for each facility it covers, what each fund owes
-- for the month. A facility is cleared at most once per month (the primary
-- key of clearing_facility).
CREATE TABLE clearing_run (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    period     date NOT NULL CHECK (period = date_trunc('month', period)::date),
    scope      text NOT NULL,
    created_by bigint REFERENCES app_user (id),
    actor      text NOT NULL DEFAULT '',
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE clearing_facility (
    run_id        bigint NOT NULL REFERENCES clearing_run (id),
    period        date NOT NULL,
    facility_code text NOT NULL REFERENCES facility (code),
    settlements   int NOT NULL,
    reversals     int NOT NULL,
    total         numeric(14,2) NOT NULL,
    patient       numeric(14,2) NOT NULL,
    hospital      numeric(14,2) NOT NULL,
    PRIMARY KEY (period, facility_code)
);
CREATE INDEX clearing_facility_run_idx ON clearing_facility (run_id);

CREATE TABLE clearing_line (
    run_id        bigint NOT NULL REFERENCES clearing_run (id),
    facility_code text NOT NULL REFERENCES facility (code),
    fund          text NOT NULL,
    account       text NOT NULL REFERENCES ledger_account (code),
    amount        numeric(14,2) NOT NULL,
    settlements   int NOT NULL,
    reversals     int NOT NULL,
    PRIMARY KEY (run_id, facility_code, fund)
);

-- Idempotency-Key of POST /bills/{id}/settle and /settlements/{id}/reverse,
-- per user: the request's hash and its response, which is the settlement
-- (or reversal) the request wrote. That row never changes, and the answer
-- is rendered from it exactly as it was first sent (see settlement/service.go).
CREATE TABLE settlement_idempotency (
    user_id        bigint NOT NULL, -- app_user.id
    key            text NOT NULL CHECK (char_length(key) BETWEEN 1 AND 200 AND operation IN ('settle', 'reverse')),
    operation      text NOT NULL,
    target_id      bigint NOT NULL,
    request_sha256 bytea NOT NULL,
    settlement_id  bigint NOT NULL, -- written with it
    created_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, key)
);

-- The trace is a few kB of JSON per settlement: lz4 compresses it several
-- times faster than the default pglz (when the server is built with lz4).
-- +goose StatementBegin
DO $$ BEGIN
    ALTER TABLE settlement ALTER COLUMN result SET COMPRESSION lz4;
    ALTER TABLE settlement ALTER COLUMN input SET COMPRESSION lz4;
EXCEPTION WHEN feature_not_supported OR invalid_parameter_value THEN NULL;
END $$;
-- +goose StatementEnd
-- Compressed, a trace fits in the row: keep it there rather than in the
-- TOAST table (one insert into a second table and its index less).
ALTER TABLE settlement SET (toast_tuple_target = 8160);

CREATE TRIGGER settlement_policy_append_only BEFORE UPDATE OR DELETE ON settlement_policy
    FOR EACH ROW EXECUTE FUNCTION refuse_change();
CREATE TRIGGER settlement_append_only BEFORE UPDATE OR DELETE ON settlement
    FOR EACH ROW EXECUTE FUNCTION refuse_change();
CREATE TRIGGER ledger_account_append_only BEFORE UPDATE OR DELETE ON ledger_account
    FOR EACH ROW EXECUTE FUNCTION refuse_change();
CREATE TRIGGER journal_entry_append_only BEFORE UPDATE OR DELETE ON journal_entry
    FOR EACH ROW EXECUTE FUNCTION refuse_change();
CREATE TRIGGER journal_line_append_only BEFORE UPDATE OR DELETE ON journal_line
    FOR EACH ROW EXECUTE FUNCTION refuse_change();
CREATE TRIGGER clearing_run_append_only BEFORE UPDATE OR DELETE ON clearing_run
    FOR EACH ROW EXECUTE FUNCTION refuse_change();
CREATE TRIGGER clearing_facility_append_only BEFORE UPDATE OR DELETE ON clearing_facility
    FOR EACH ROW EXECUTE FUNCTION refuse_change();
CREATE TRIGGER clearing_line_append_only BEFORE UPDATE OR DELETE ON clearing_line
    FOR EACH ROW EXECUTE FUNCTION refuse_change();
CREATE TRIGGER settlement_no_truncate BEFORE TRUNCATE ON settlement
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_change();
CREATE TRIGGER journal_entry_no_truncate BEFORE TRUNCATE ON journal_entry
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_change();
CREATE TRIGGER journal_line_no_truncate BEFORE TRUNCATE ON journal_line
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_change();

-- +goose Down
DROP TABLE settlement_idempotency;
DROP TABLE clearing_line;
DROP TABLE clearing_facility;
DROP TABLE clearing_run;
DROP TABLE journal_line;
DROP TABLE journal_entry;
DROP TABLE ledger_account;
DROP TABLE accumulator;
DROP TABLE settlement;
DROP TABLE bill_line;
DROP TABLE bill_state;
DROP TABLE bill;
DROP TABLE settlement_policy;
