-- +goose Up
-- Households (建档立卡户), their members and the members' insurance
-- enrolment per year. Written only by package household (the roster import).
CREATE EXTENSION IF NOT EXISTS pg_trgm;

-- Identifiers compare byte-wise (COLLATE "C"): cheaper than the database's
-- locale on every index insert and lookup, and the order digits expect.
CREATE TABLE household (
    id           text COLLATE "C" PRIMARY KEY CHECK (id ~ '^[A-Za-z0-9-]{1,32}$'),
    -- The home village clinic of every member.
    village_code text NOT NULL REFERENCES facility (code),
    category     text NOT NULL CHECK (category IN ('none', 'registered_poor', 'dibao', 'tekun')),
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX household_village_idx ON household (village_code);

CREATE TABLE person (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- GB 11643: 17 digits and a check character. The import checks the
    -- check character and the date; this is the cheap shape check (no
    -- regular expression: it runs on every row of an import).
    national_id  text COLLATE "C" NOT NULL UNIQUE
                 CHECK (length(national_id) = 18 AND left(national_id, 1) <> '0'
                        AND translate(left(national_id, 17), '0123456789', '') = ''
                        AND strpos('0123456789X', right(national_id, 1)) > 0),
    name         text NOT NULL CHECK (length(btrim(name)) > 0 AND length(name) <= 50),
    -- Sex and birth date are read from the identity number, never typed.
    sex          text GENERATED ALWAYS AS (CASE WHEN substr(national_id, 17, 1)::int % 2 = 1 THEN 'M' ELSE 'F' END) STORED,
    birth_date   date GENERATED ALWAYS AS (make_date(substr(national_id, 7, 4)::int, substr(national_id, 11, 2)::int,
                                                     substr(national_id, 13, 2)::int)) STORED,
    household_id text COLLATE "C" NOT NULL REFERENCES household (id),
    relation     text NOT NULL CHECK (relation IN ('head', 'spouse', 'child', 'parent', 'grandchild', 'other')),
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    -- At most one head per household, checked at commit so that an import
    -- may swap the head within a household. (The import checks "exactly one".)
    CONSTRAINT person_one_head EXCLUDE USING btree (household_id WITH =) WHERE (relation = 'head') DEFERRABLE INITIALLY DEFERRED
);
CREATE INDEX person_household_idx ON person (household_id);
-- Name search by substring. A large pending list keeps a full roster
-- import from merging it row by row; autovacuum merges it afterwards.
-- (The identity number's last digits are searched by a scan: the county
-- has under 100,000 persons, and one more index costs every import.)
CREATE INDEX person_name_trgm_idx ON person USING gin (name gin_trgm_ops) WITH (gin_pending_list_limit = 32768);

CREATE TABLE person_insurance (
    person_id  bigint NOT NULL REFERENCES person (id),
    year       int NOT NULL CHECK (year BETWEEN 2000 AND 2100),
    insured    boolean NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (person_id, year)
);

-- +goose Down
DROP TABLE person_insurance;
DROP TABLE person;
DROP TABLE household;
