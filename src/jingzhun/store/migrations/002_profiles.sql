-- 002: the profile stage. `profiles` and `profile_affinity` are rebuilt by every build (their
-- columns follow the configured traits); these tables keep what builds produced over time.

-- Tags: rule tags, RFM scores and segments, quantile bins; later stages add model tags.
CREATE TABLE tags (
    user_id     VARCHAR NOT NULL,
    tag         VARCHAR NOT NULL,
    value       VARCHAR NOT NULL,
    source      VARCHAR NOT NULL,       -- rule | rfm | bin | model
    computed_at TIMESTAMP NOT NULL
);

-- One row per profile build.
CREATE TABLE profile_builds (
    as_of     TIMESTAMP NOT NULL,       -- traits see events strictly before this
    built_at  TIMESTAMP NOT NULL,
    users     BIGINT NOT NULL,
    traits    JSON NOT NULL,            -- the profile columns
    tags      JSON NOT NULL,            -- tag -> users tagged
    seconds   DOUBLE NOT NULL
);
