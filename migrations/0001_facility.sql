-- +goose Up
-- The four-tier facility registry: city > county > township > village.
CREATE TABLE facility (
    code        text PRIMARY KEY CHECK (code ~ '^[A-Za-z0-9-]{1,32}$'),
    name        text NOT NULL CHECK (length(btrim(name)) > 0),
    tier        text NOT NULL CHECK (tier IN ('city', 'county', 'township', 'village')),
    parent_code text REFERENCES facility (code),
    region_code text NOT NULL CHECK (region_code ~ '^[0-9]{6}$'),
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    CHECK ((tier = 'city') = (parent_code IS NULL))
);
CREATE INDEX facility_parent_idx ON facility (parent_code);
CREATE INDEX facility_region_idx ON facility (region_code);

-- +goose Down
DROP TABLE facility;
