-- +goose Up
-- Users, signing keys, refresh tokens and the append-only audit log.
CREATE TABLE app_user (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    username      text NOT NULL UNIQUE CHECK (username ~ '^[a-z0-9_.-]{3,64}$'),
    password_hash text NOT NULL,
    role          text NOT NULL CHECK (role IN ('village_doctor', 'doctor', 'billing_clerk', 'admin', 'auditor')),
    facility_code text NOT NULL REFERENCES facility (code),
    display_name  text NOT NULL DEFAULT '',
    disabled      boolean NOT NULL DEFAULT false,
    created_at    timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE audit_log (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at            timestamptz NOT NULL DEFAULT now(),
    user_id       bigint,
    username      text NOT NULL DEFAULT '',
    role          text NOT NULL DEFAULT '',
    action        text NOT NULL,
    record_type   text NOT NULL DEFAULT '',
    record_id     text NOT NULL DEFAULT '',
    facility_code text NOT NULL DEFAULT '',
    ip            text NOT NULL DEFAULT '',
    request_id    text NOT NULL DEFAULT '',
    detail        jsonb
);
CREATE INDEX audit_log_at_idx ON audit_log (at);
CREATE INDEX audit_log_user_idx ON audit_log (username, at);
CREATE INDEX audit_log_record_idx ON audit_log (record_type, record_id, at);

-- +goose StatementBegin
CREATE FUNCTION refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% is append-only: % refused', TG_TABLE_NAME, TG_OP USING ERRCODE = 'insufficient_privilege';
END;
$$;
-- +goose StatementEnd
CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION refuse_change();
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_change();

-- +goose Down
DROP TABLE audit_log;
DROP FUNCTION refuse_change();
DROP TABLE app_user;
