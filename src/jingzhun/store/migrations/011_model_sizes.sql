-- 011: each model's artefact size kept beside it (issue 17): listing the registry computed
-- octet_length(artefact), which reads every blob (0.27 s with a 108 MB popularity model on a
-- 1M-user store, on every page and API call that lists or resolves a model).
ALTER TABLE models ADD COLUMN artefact_bytes BIGINT;
UPDATE models SET artefact_bytes = octet_length(artefact);
