-- +goose Up
-- Users, signing keys, refresh tokens, login failures and the append-only
-- audit log. Owned by package auth; nothing else writes these tables.
CREATE TABLE app_user (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    username      text NOT NULL UNIQUE CHECK (username ~ '^[a-z0-9_.-]{3,64}$'),
    -- argon2id in PHC form: $argon2id$v=19$m=...,t=...,p=...$salt$hash
    password_hash text NOT NULL CHECK (password_hash LIKE '$argon2id$%'),
    role          text NOT NULL CHECK (role IN ('village_doctor', 'doctor', 'billing_clerk', 'admin', 'auditor')),
    facility_code text NOT NULL REFERENCES facility (code),
    display_name  text NOT NULL DEFAULT '' CHECK (length(display_name) <= 100),
    disabled      boolean NOT NULL DEFAULT false,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX app_user_facility_idx ON app_user (facility_code);

-- Ed25519 keys that sign access tokens (and consult tokens). The newest
-- key signs; older keys stay published in the JWKS until every token they
-- signed has expired. private_key is the 32-byte seed: encrypted with
-- AES-256-GCM under a key derived from QINBA_KEY_SECRET when enc =
-- 'a256gcm', or stored in plaintext when enc = 'none' (no secret was
-- configured; the database's own access control is then the only guard).
CREATE TABLE signing_key (
    kid         text PRIMARY KEY CHECK (kid ~ '^[A-Za-z0-9_-]{8,64}$'),
    alg         text NOT NULL DEFAULT 'EdDSA' CHECK (alg = 'EdDSA'),
    public_key  bytea NOT NULL CHECK (length(public_key) = 32),
    private_key bytea NOT NULL,
    enc         text NOT NULL CHECK (enc IN ('none', 'a256gcm')),
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX signing_key_created_idx ON signing_key (created_at);

-- A refresh-token family is one login session. Every refresh rotates the
-- token; presenting an already rotated token revokes the whole family.
CREATE TABLE refresh_family (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id       bigint NOT NULL REFERENCES app_user (id),
    created_at    timestamptz NOT NULL DEFAULT now(),
    expires_at    timestamptz NOT NULL, -- absolute lifetime of the session
    revoked_at    timestamptz,
    revoke_reason text NOT NULL DEFAULT ''
);
CREATE INDEX refresh_family_user_idx ON refresh_family (user_id) WHERE revoked_at IS NULL;

-- Only the SHA-256 of a refresh token is stored.
CREATE TABLE refresh_token (
    token_hash bytea PRIMARY KEY CHECK (length(token_hash) = 32),
    family_id  bigint NOT NULL REFERENCES refresh_family (id) ON DELETE CASCADE,
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL, -- idle lifetime
    used_at    timestamptz           -- set when rotated
);
CREATE INDEX refresh_token_family_idx ON refresh_token (family_id);

-- Failed logins per username (known or not), for the lockout. Old rows are
-- deleted by the server's cleanup; this is not the audit trail.
CREATE TABLE login_failure (
    id       bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    username text NOT NULL,
    ip       text NOT NULL DEFAULT '',
    at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX login_failure_user_idx ON login_failure (username, at);

CREATE TABLE login_lockout (
    username     text PRIMARY KEY,
    locked_until timestamptz NOT NULL
);

CREATE TABLE audit_log (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at            timestamptz NOT NULL DEFAULT now(),
    user_id       bigint,
    username      text NOT NULL DEFAULT '',
    role          text NOT NULL DEFAULT '',
    action        text NOT NULL CHECK (action <> ''),
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
CREATE INDEX audit_log_action_idx ON audit_log (action, at);

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
-- Belt and braces: no role gets UPDATE, DELETE or TRUNCATE through PUBLIC.
-- (The owner keeps them, which is why the triggers above exist; a
-- deployment should run the server as a role that does not own the table.)
REVOKE UPDATE, DELETE, TRUNCATE ON audit_log FROM PUBLIC;

-- +goose Down
DROP TABLE audit_log;
DROP FUNCTION refuse_change();
DROP TABLE login_lockout;
DROP TABLE login_failure;
DROP TABLE refresh_token;
DROP TABLE refresh_family;
DROP TABLE signing_key;
DROP TABLE app_user;
