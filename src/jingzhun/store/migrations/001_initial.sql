-- 001: the collect stage's tables.

-- Facts about the store itself, e.g. the hash canary that guards events.event_key.
CREATE TABLE store_meta (
    key   VARCHAR NOT NULL,
    value VARCHAR NOT NULL
);
-- Timestamps are TIMESTAMP holding UTC (the connection's TimeZone is UTC).
-- No indexes: DuckDB's zone maps serve scans; dedupe uses hash joins at ingest time.

CREATE TABLE ingest_batches (
    batch_id          VARCHAR NOT NULL,   -- b<utc time>-<random>, sortable
    kind              VARCHAR NOT NULL,   -- events | users | items
    sources           JSON NOT NULL,      -- list of file paths ("-" for stdin)
    options           JSON NOT NULL,      -- mapping, constants, formats: what replay needs
    started_at        TIMESTAMP NOT NULL,
    finished_at       TIMESTAMP NOT NULL,
    rows_read         BIGINT NOT NULL,
    inserted          BIGINT NOT NULL,
    duplicates        BIGINT NOT NULL,
    quarantined       BIGINT NOT NULL,
    updated           BIGINT NOT NULL,    -- users/items rows that changed a stored row (counted in inserted)
    identities_linked BIGINT NOT NULL,
    replay_of         VARCHAR             -- set when the batch replays quarantined rows
);

CREATE TABLE events (
    event_id     VARCHAR NOT NULL,        -- unique; derived from content when the source has none
    event_key    UBIGINT NOT NULL,        -- hash(event_id): finds duplicate candidates by integer
    event        VARCHAR NOT NULL,        -- snake_case name, see docs/data-model.md
    user_id      VARCHAR,
    anonymous_id VARCHAR,
    order_id     VARCHAR,
    item_id      VARCHAR,
    quantity     DOUBLE,
    price        DOUBLE,                  -- unit list price
    revenue      DOUBLE,                  -- line amount after discount; quantity * price when not given
    currency     VARCHAR,
    channel      VARCHAR,
    campaign_id  VARCHAR,
    ts           TIMESTAMP NOT NULL,
    received_at  TIMESTAMP NOT NULL,
    properties   JSON,                    -- every source column that is not a field above
    batch_id     VARCHAR NOT NULL
);

CREATE TABLE users (
    user_id        VARCHAR NOT NULL,
    created_at     TIMESTAMP,
    gender         VARCHAR,
    birth_year     INTEGER,
    city           VARCHAR,
    region         VARCHAR,
    signup_channel VARCHAR,
    attributes     JSON,                  -- every other non-PII source column
    updated_at     TIMESTAMP NOT NULL,
    batch_id       VARCHAR NOT NULL
);

-- Personal data lives apart from analytics tables (encrypted once the privacy stage lands).
CREATE TABLE pii (
    user_id    VARCHAR NOT NULL,
    email      VARCHAR,
    phone      VARCHAR,
    name       VARCHAR,
    address    VARCHAR,
    updated_at TIMESTAMP NOT NULL,
    batch_id   VARCHAR NOT NULL
);

CREATE TABLE items (
    item_id     VARCHAR NOT NULL,
    title       VARCHAR,
    description VARCHAR,
    category    VARCHAR,
    brand       VARCHAR,
    price       DOUBLE,
    active      BOOLEAN,
    stock       BIGINT,
    attributes  JSON,
    updated_at  TIMESTAMP NOT NULL,
    batch_id    VARCHAR NOT NULL
);

-- An anonymous visitor linked to a known user; the first link wins.
CREATE TABLE identities (
    anonymous_id VARCHAR NOT NULL,
    user_id      VARCHAR NOT NULL,
    linked_at    TIMESTAMP NOT NULL,      -- event time of the first row that carried both ids
    batch_id     VARCHAR NOT NULL
);

CREATE TABLE quarantine (
    quarantine_id     BIGINT NOT NULL,    -- in file order within a batch, increasing across batches
    batch_id          VARCHAR NOT NULL,
    kind              VARCHAR NOT NULL,
    source            VARCHAR NOT NULL,   -- file path, "-" for stdin
    line_no           BIGINT,             -- record number in the file; the header is 1
    raw               JSON NOT NULL,      -- the row as read, under its original column names
    reason            VARCHAR NOT NULL,
    received_at       TIMESTAMP NOT NULL,
    resolved_at       TIMESTAMP,          -- set when a replay ingested the row
    resolved_batch_id VARCHAR
);

-- Rows the cleaning report flagged; nothing is deleted unless the user asks.
CREATE TABLE event_flags (
    event_id   VARCHAR NOT NULL,
    flag       VARCHAR NOT NULL,          -- outlier_order | bot_burst | content_duplicate
    detail     VARCHAR,
    flagged_at TIMESTAMP NOT NULL
);

-- Every later stage reads events through this view: anonymous history appears under the
-- user_id its anonymous_id was linked to.
CREATE VIEW stitched_events AS
SELECT e.* EXCLUDE (event_key) REPLACE (COALESCE(e.user_id, i.user_id) AS user_id)
FROM events AS e
LEFT JOIN identities AS i
       ON e.user_id IS NULL AND i.anonymous_id = e.anonymous_id;
