-- 009: campaigns (issue 16): what was planned, who was in it, what happened to each member.

-- One row per campaign. `spec` is the validated spec as created, with each variant's template
-- text inlined, so the store alone says what was sent (a store is one file to copy).
CREATE TABLE campaigns (
    name        VARCHAR PRIMARY KEY,   -- lower-case letters, digits, - and _
    channel     VARCHAR NOT NULL,      -- email | webhook | ads
    spec        JSON NOT NULL,
    state       VARCHAR NOT NULL,      -- draft | sending | sent
    created_at  TIMESTAMP NOT NULL,
    snapshot_at TIMESTAMP,             -- when the audience was drawn and the members written
    sent_at     TIMESTAMP              -- when the last send run finished
);

-- The audience snapshot, written once at the first send: each member's arm and variant and
-- what the content used for them, so the report and the next uplift model know who got what.
CREATE TABLE campaign_members (
    campaign        VARCHAR NOT NULL,
    user_id         VARCHAR NOT NULL,
    arm             VARCHAR NOT NULL,  -- treatment | control
    variant         VARCHAR,           -- the variant drawn (control members too: what they would have got)
    stratum         VARCHAR,           -- the segment the control draw was stratified by, if any
    segment         VARCHAR,           -- the member's segment in the audience's run, if any
    score           DOUBLE,            -- the [audience] top score's value, if any
    recommendations JSON,              -- the item ids the content showed, best first
    assigned_at     TIMESTAMP NOT NULL,
    PRIMARY KEY (campaign, user_id)
);

-- One row per campaign × user × channel for everyone the audience conditions matched: the
-- delivery key. A send moves treatment rows queued → sending → sent | failed; excluded and
-- suppressed users and the control group get their row at the snapshot and keep it.
-- message_id is derived from the key, so a message sent again after a crash carries the same
-- id (the receiver's idempotency key).
CREATE TABLE deliveries (
    campaign   VARCHAR NOT NULL,
    user_id    VARCHAR NOT NULL,
    channel    VARCHAR NOT NULL,
    state      VARCHAR NOT NULL,       -- queued | sending | sent | failed | suppressed | excluded | control
    reason     VARCHAR,                -- why failed, suppressed or excluded
    tries      INTEGER NOT NULL,
    message_id VARCHAR,
    answer     VARCHAR,                -- the provider's last answer (SMTP reply, HTTP status)
    sent_at    TIMESTAMP,              -- when the provider accepted it (frequency caps count these)
    updated_at TIMESTAMP NOT NULL,
    PRIMARY KEY (campaign, user_id, channel)
);

-- Addresses no campaign may message: hard bounces, complaints, unsubscribes. The address is
-- kept only as the SHA-256 of its normalized form (lower-cased, trimmed), never in clear.
CREATE TABLE suppressions (
    channel      VARCHAR NOT NULL,     -- email | webhook (phone)
    address_hash VARCHAR NOT NULL,
    user_id      VARCHAR,
    reason       VARCHAR NOT NULL,     -- hard_bounce | unsubscribed | complaint | manual
    source       VARCHAR,              -- the campaign or request that caused it
    created_at   TIMESTAMP NOT NULL,
    PRIMARY KEY (channel, address_hash)
);

-- Consent history: one row per change, the newest per (user, purpose, channel) is in force.
-- Until the privacy stage's consent model lands, only unsubscribes write here (REVOKED email
-- marketing); a user with no row falls back to their marketing_opt_in attribute.
CREATE TABLE consents (
    user_id     VARCHAR NOT NULL,
    purpose     VARCHAR NOT NULL,      -- marketing | analytics | personalization
    channel     VARCHAR NOT NULL,      -- email | sms | push | any
    status      VARCHAR NOT NULL,      -- GRANTED | DENIED | REVOKED
    ts          TIMESTAMP NOT NULL,
    source      VARCHAR NOT NULL       -- e.g. unsubscribe:CAMPAIGN, users-file, api
);
