-- 015: one vault record a person (issue 18). A person's email, phone, name and address are
-- sealed together: pii.sealed holds nonce ‖ AES-256-GCM of the fields as one JSON object, for
-- the user id (jingzhun.store.vault.sealed_people). The per-field columns stay for the rows
-- written before: the first time the vault opens they are sealed into the record and emptied
-- (jingzhun.store.vault.seal_legacy); nothing writes them after that.
ALTER TABLE pii ADD COLUMN sealed BLOB;
