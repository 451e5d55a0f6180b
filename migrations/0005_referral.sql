-- +goose Up
-- Referrals between facilities, their append-only event log, attachments,
-- create idempotency keys, and the notifications escalation raises.
CREATE TABLE referral (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- The patient: household's person (0003).
    person_id        bigint NOT NULL REFERENCES person (id),
    from_facility    text NOT NULL REFERENCES facility (code),
    to_facility      text NOT NULL REFERENCES facility (code),
    direction        text NOT NULL CHECK (direction IN ('up', 'down', 'lateral')),
    urgency          text NOT NULL CHECK (urgency IN ('emergency', 'urgent', 'routine')),
    state            text NOT NULL CHECK (state IN ('sent', 'accepted', 'declined', 'cancelled', 'scheduled', 'arrived', 'completed')),
    version          integer NOT NULL DEFAULT 1 CHECK (version > 0),
    sender_id        bigint NOT NULL REFERENCES app_user (id),
    receiver_id      bigint REFERENCES app_user (id),
    diagnoses        text[] NOT NULL CHECK (cardinality(diagnoses) BETWEEN 1 AND 20),
    summary          text NOT NULL CHECK (char_length(summary) BETWEEN 1 AND 4000),
    consult_id       bigint,
    created_at       timestamptz NOT NULL,
    updated_at       timestamptz NOT NULL,
    due_at           timestamptz NOT NULL,
    accepted_at      timestamptz,
    scheduled_for    timestamptz,
    arrived_at       timestamptz,
    closed_at        timestamptz,
    overdue_at       timestamptz,
    counter_referral jsonb,
    CHECK (from_facility <> to_facility),
    CHECK ((state = 'completed') = (counter_referral IS NOT NULL))
);
CREATE INDEX referral_from_idx ON referral (from_facility, created_at);
CREATE INDEX referral_to_idx ON referral (to_facility, created_at);
CREATE INDEX referral_person_idx ON referral (person_id, from_facility);
-- The escalator's scan: referrals still waiting, by deadline.
CREATE INDEX referral_due_idx ON referral (due_at) WHERE state = 'sent' AND overdue_at IS NULL;

-- Every change of a referral, in commit order (see package referral).
CREATE TABLE referral_event (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    referral_id bigint NOT NULL REFERENCES referral (id),
    seq         integer NOT NULL CHECK (seq > 0),
    at          timestamptz NOT NULL,
    actor_id    bigint REFERENCES app_user (id), -- NULL: the system (escalation)
    action      text NOT NULL,
    from_state  text,
    to_state    text NOT NULL,
    detail      jsonb,
    UNIQUE (referral_id, seq)
);
CREATE TRIGGER referral_event_append_only BEFORE UPDATE OR DELETE ON referral_event
    FOR EACH ROW EXECUTE FUNCTION refuse_change();
CREATE TRIGGER referral_event_no_truncate BEFORE TRUNCATE ON referral_event
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_change();

-- Images and PDFs, checked by content; immutable once stored.
CREATE TABLE referral_attachment (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    referral_id  bigint NOT NULL REFERENCES referral (id),
    filename     text NOT NULL CHECK (char_length(filename) BETWEEN 1 AND 200),
    content_type text NOT NULL CHECK (content_type IN ('image/jpeg', 'image/png', 'application/pdf')),
    size         integer NOT NULL CHECK (size BETWEEN 1 AND 5242880),
    sha256       bytea NOT NULL,
    data         bytea NOT NULL,
    uploaded_by  bigint NOT NULL REFERENCES app_user (id),
    created_at   timestamptz NOT NULL
);
-- JPEG, PNG and PDF are compressed already: store out of line, uncompressed.
ALTER TABLE referral_attachment ALTER COLUMN data SET STORAGE EXTERNAL;
CREATE INDEX referral_attachment_referral_idx ON referral_attachment (referral_id);
CREATE TRIGGER referral_attachment_append_only BEFORE UPDATE OR DELETE ON referral_attachment
    FOR EACH ROW EXECUTE FUNCTION refuse_change();

-- Idempotency-Key of POST /referrals, per user, with a hash of the body.
CREATE TABLE referral_idempotency (
    user_id     bigint NOT NULL REFERENCES app_user (id),
    key         text NOT NULL CHECK (char_length(key) BETWEEN 1 AND 200),
    body_sha256 bytea NOT NULL,
    referral_id bigint REFERENCES referral (id),
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, key)
);

-- Messages to a user (overdue referrals so far); kind + referral makes
-- raising one idempotent.
CREATE TABLE notification (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id     bigint NOT NULL REFERENCES app_user (id),
    at          timestamptz NOT NULL,
    kind        text NOT NULL,
    referral_id bigint REFERENCES referral (id),
    body        jsonb NOT NULL,
    read_at     timestamptz
);
CREATE INDEX notification_user_idx ON notification (user_id, id DESC);
CREATE UNIQUE INDEX notification_once_idx ON notification (user_id, kind, referral_id);

-- +goose Down
DROP TABLE notification;
DROP TABLE referral_idempotency;
DROP TABLE referral_attachment;
DROP TABLE referral_event;
DROP TABLE referral;
