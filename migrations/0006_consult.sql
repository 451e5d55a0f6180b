-- +goose Up
-- Video consults (package consult): the consult record and its state
-- machine, the participants seen by the media server, recording consents
-- and files, create idempotency keys and the teleconsultation fee line of
-- each ended consult. Nothing else writes these tables.
CREATE TABLE consult (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    person_id     bigint NOT NULL REFERENCES person (id),
    requester_id  bigint NOT NULL REFERENCES app_user (id),
    from_facility text NOT NULL REFERENCES facility (code),
    to_facility   text NOT NULL REFERENCES facility (code),
    -- A named doctor of to_facility; NULL: any doctor there.
    to_user_id    bigint REFERENCES app_user (id),
    reason        text NOT NULL CHECK (char_length(reason) BETWEEN 1 AND 2000),
    scheduled_at  timestamptz,
    state         text NOT NULL CHECK (state IN ('requested', 'live', 'ended', 'cancelled')),
    created_at    timestamptz NOT NULL,
    updated_at    timestamptz NOT NULL,
    started_at    timestamptz,
    ended_at      timestamptz,
    ended_by      bigint REFERENCES app_user (id),
    notes         text NOT NULL DEFAULT '' CHECK (char_length(notes) <= 8000),
    advice        text NOT NULL DEFAULT '' CHECK (char_length(advice) <= 8000),
    notes_by      bigint REFERENCES app_user (id),
    notes_at      timestamptz,
    CHECK (from_facility <> to_facility),
    CHECK ((state IN ('live', 'ended')) = (started_at IS NOT NULL) OR state = 'cancelled'),
    CHECK ((state IN ('ended', 'cancelled')) = (ended_at IS NOT NULL))
);
CREATE INDEX consult_from_idx ON consult (from_facility, created_at);
CREATE INDEX consult_to_idx ON consult (to_facility, created_at);

-- Everyone who joined the consult's room (from the SFU's hooks).
CREATE TABLE consult_participant (
    consult_id      bigint NOT NULL REFERENCES consult (id),
    user_id         bigint NOT NULL REFERENCES app_user (id),
    first_joined_at timestamptz NOT NULL,
    last_joined_at  timestamptz NOT NULL,
    left_at         timestamptz,
    joins           integer NOT NULL DEFAULT 1 CHECK (joins > 0),
    PRIMARY KEY (consult_id, user_id)
);

-- Recording consent, one row per participant; never changed.
CREATE TABLE consult_consent (
    consult_id   bigint NOT NULL REFERENCES consult (id),
    user_id      bigint NOT NULL REFERENCES app_user (id),
    consented_at timestamptz NOT NULL,
    PRIMARY KEY (consult_id, user_id)
);
CREATE TRIGGER consult_consent_append_only BEFORE UPDATE OR DELETE ON consult_consent
    FOR EACH ROW EXECUTE FUNCTION refuse_change();
CREATE TRIGGER consult_consent_no_truncate BEFORE TRUNCATE ON consult_consent
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_change();

-- Recorded tracks (IVF video, Ogg audio) written by the media server.
CREATE TABLE consult_recording (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    consult_id bigint NOT NULL REFERENCES consult (id),
    user_id    bigint REFERENCES app_user (id),
    kind       text NOT NULL CHECK (kind IN ('audio', 'video')),
    mime_type  text NOT NULL,
    path       text NOT NULL,
    started_at timestamptz NOT NULL,
    ended_at   timestamptz NOT NULL,
    frames     bigint NOT NULL,
    dropped    bigint NOT NULL,
    error      text NOT NULL DEFAULT ''
);
CREATE INDEX consult_recording_consult_idx ON consult_recording (consult_id);
CREATE TRIGGER consult_recording_append_only BEFORE UPDATE OR DELETE ON consult_recording
    FOR EACH ROW EXECUTE FUNCTION refuse_change();

-- Idempotency-Key of POST /consults, per user, with a hash of the body.
CREATE TABLE consult_idempotency (
    user_id     bigint NOT NULL REFERENCES app_user (id),
    key         text NOT NULL CHECK (char_length(key) BETWEEN 1 AND 200),
    body_sha256 bytea NOT NULL,
    consult_id  bigint NOT NULL REFERENCES consult (id),
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, key)
);

-- The teleconsultation fee line of an ended consult, priced from the fee
-- table (consult/fees.json) and charged by the addressed facility; billing
-- adds it to the patient's bill. Never changed once written.
CREATE TABLE consult_fee (
    consult_id    bigint PRIMARY KEY REFERENCES consult (id),
    person_id     bigint NOT NULL REFERENCES person (id),
    facility_code text NOT NULL REFERENCES facility (code),
    item_code     text NOT NULL CHECK (char_length(item_code) BETWEEN 1 AND 64),
    item_name     text NOT NULL CHECK (char_length(item_name) BETWEEN 1 AND 100),
    class         text NOT NULL CHECK (class IN ('A', 'B', 'C')),
    quantity      numeric(12,3) NOT NULL CHECK (quantity > 0),
    unit_price    numeric(14,4) NOT NULL CHECK (unit_price >= 0),
    amount        numeric(14,2) NOT NULL CHECK (amount >= 0),
    fee_table     text NOT NULL,
    created_at    timestamptz NOT NULL
);
CREATE TRIGGER consult_fee_append_only BEFORE UPDATE OR DELETE ON consult_fee
    FOR EACH ROW EXECUTE FUNCTION refuse_change();
CREATE TRIGGER consult_fee_no_truncate BEFORE TRUNCATE ON consult_fee
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_change();

-- +goose Down
DROP TABLE consult_fee;
DROP TABLE consult_idempotency;
DROP TABLE consult_recording;
DROP TABLE consult_consent;
DROP TABLE consult_participant;
DROP TABLE consult;
