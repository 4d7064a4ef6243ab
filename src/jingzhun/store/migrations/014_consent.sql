-- 014: the consent model (issue 18). Consents were read, until now, from the newest consents
-- row or, without one, from the users file's marketing_opt_in attribute. Users files now write
-- their consents as rows (jingzhun.ingest.consent); the attribute of users ingested before is
-- written here once, for users with no marketing row, so nobody's consent changes.
INSERT INTO consents
SELECT user_id, 'marketing', 'any',
       CASE WHEN lower(trim(json_extract_string(attributes, '$.marketing_opt_in')))
                 IN ('true', '1', 'yes', 'y', 't', 'granted') THEN 'GRANTED' ELSE 'DENIED' END,
       coalesce(updated_at, created_at, TIMESTAMP '1970-01-01'), 'users-file'
FROM users
WHERE json_extract_string(attributes, '$.marketing_opt_in') IS NOT NULL
  AND user_id NOT IN (SELECT user_id FROM consents WHERE purpose = 'marketing');

