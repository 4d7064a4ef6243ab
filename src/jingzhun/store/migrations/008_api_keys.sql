-- 008: API keys for the server (issue 15).

-- One row per key ever made; revoking a key sets revoked_at and keeps the row, so its key_id
-- is never handed out again and `jingzhun apikey list` shows when it was revoked.
--
-- A key reads `jz_<scope>_<key_id>_<secret>`. key_id (8 hex characters) is public: it finds
-- the row without a scan and names the key in logs. The secret is never stored: key_hash is
-- the hex SHA-256 of the whole key. A plain fast hash is right here, unlike for passwords:
-- the secret is 32 random bytes (256 bits), so no dictionary or brute-force search of a
-- leaked hash is feasible however fast the hash is, and a slow hash (bcrypt, scrypt) would
-- only cost every API request its time. Hashing the whole key ties the scope and key_id in
-- it to the row as well.
--
-- A name is unique among keys not revoked; jingzhun.store.apikeys enforces it (DuckDB has
-- no partial unique index).
CREATE TABLE api_keys (
    key_id       VARCHAR PRIMARY KEY,   -- 8 hex characters, part of the key
    name         VARCHAR NOT NULL,      -- 1-64 of letters, digits, - _ .
    scope        VARCHAR NOT NULL,      -- ingest | read | admin
    key_hash     VARCHAR NOT NULL,      -- hex SHA-256 of the whole key
    created_at   TIMESTAMP NOT NULL,
    revoked_at   TIMESTAMP,             -- NULL: in use
    last_used_at TIMESTAMP              -- set by the server's writer, at most once a minute
);
