-- 013: the PII vault (issue 18). pii's email, phone, name and address now hold AES-256-GCM
-- ciphertexts (jzv1:...); the keyed blind index of the normalized email and phone finds a
-- user without decrypting. Values stored before the vault are encrypted the first time the
-- vault opens with its key (jingzhun.store.vault.vault_for).
ALTER TABLE pii ADD COLUMN email_index VARCHAR;
ALTER TABLE pii ADD COLUMN phone_index VARCHAR;

-- Suppressions matched through the same blind index (the unkeyed address_hash stays for the
-- rows written before, and for hashed ad audiences' own format).
ALTER TABLE suppressions ADD COLUMN address_index VARCHAR;

-- Who did what to whom: admin actions and data-subject requests. Never personal data: a
-- user appears as a keyed token (vault.subject_token), not as their id or address.
CREATE TABLE audit_log (
    ts       TIMESTAMP NOT NULL,
    actor    VARCHAR NOT NULL,     -- cli:<os user> | api:<key name>
    action   VARCHAR NOT NULL,     -- privacy.erase | privacy.export | privacy.find | ...
    subject  VARCHAR,              -- keyed token of the user concerned, if any
    detail   JSON
);

-- Users erased, by the same token: models trained before an erasure still hold them until
-- retrained (jingzhun models list says which).
CREATE TABLE erasures (
    subject   VARCHAR NOT NULL,
    erased_at TIMESTAMP NOT NULL
);

-- A quarantined row's raw form is encrypted in a store with a vault (it may hold personal
-- data, kept for replay): text, no longer JSON.
ALTER TABLE quarantine ALTER raw TYPE VARCHAR;
-- The keyed tokens (Vault.subject) of the ids a quarantined row names, written when its raw
-- form is encrypted: a person's rows are found for export and erasure without decrypting
-- every row (145,000 of them took 4.3 s of a 1M-user store's export).
ALTER TABLE quarantine ADD COLUMN subjects VARCHAR[];
