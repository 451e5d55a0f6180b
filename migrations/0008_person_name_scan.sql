-- +goose Up
-- Name search reads the person table instead of a trigram index. Chinese
-- names are two or three characters and clerks type one or two of them: a
-- LIKE '%..%' pattern that short yields no trigram, so the index was not
-- used for most searches (a scan of the county's ~83,000 persons takes a
-- few milliseconds), while every roster import paid for it: about 400 ms
-- of a full-county import, 15-25% of it.
DROP INDEX person_name_trgm_idx;

-- +goose Down
CREATE INDEX person_name_trgm_idx ON person USING gin (name gin_trgm_ops) WITH (gin_pending_list_limit = 32768);
