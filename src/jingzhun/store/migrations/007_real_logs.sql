-- 007: real logs in as they are (issue 14).

-- Events outside the vocabulary that a Segment-format source sent (it sends any name): kept
-- under their snake_case name, marked custom, and ignored by analytics until mapped
-- (`jingzhun ingest remap`).
ALTER TABLE events ADD COLUMN custom BOOLEAN DEFAULT FALSE;
UPDATE events SET custom = FALSE WHERE custom IS NULL;

CREATE OR REPLACE VIEW stitched_events AS
SELECT e.* EXCLUDE (event_key, custom) REPLACE (COALESCE(e.user_id, i.user_id) AS user_id)
FROM events AS e
LEFT JOIN identities AS i
       ON e.user_id IS NULL AND i.anonymous_id = e.anonymous_id
WHERE NOT e.custom;

-- Rows a batch did not store because the batch was told to skip their events, and events a
-- re-ingest found among those `clean --remove` moved out.
ALTER TABLE ingest_batches ADD COLUMN skipped BIGINT DEFAULT 0;
ALTER TABLE ingest_batches ADD COLUMN previously_removed BIGINT DEFAULT 0;
UPDATE ingest_batches SET skipped = 0, previously_removed = 0;

-- A quarantined row's content key: md5 of its kind and raw form. A bad row already
-- quarantined from the same content is a duplicate, not quarantined again.
ALTER TABLE quarantine ADD COLUMN raw_key VARCHAR;
UPDATE quarantine SET raw_key = md5(kind || chr(31) || CAST(raw AS VARCHAR));

-- Events `clean --remove` moved to the quarantine: a re-ingest of their file keeps them out
-- (counted as previously_removed); a replay of their quarantine rows brings them back.
CREATE TABLE removed_events (
    event_id      VARCHAR NOT NULL,
    quarantine_id BIGINT NOT NULL,
    removed_at    TIMESTAMP NOT NULL
);
INSERT INTO removed_events
SELECT json_extract_string(raw, '$.event_id'), quarantine_id, received_at
FROM quarantine
WHERE source = 'clean' AND resolved_at IS NULL AND json_extract_string(raw, '$.event_id') IS NOT NULL;
