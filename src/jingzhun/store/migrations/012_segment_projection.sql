-- 012: a sample of each run's members on the first two principal components of the space the
-- run was fitted in (issue 17), written with the run: the segments page drew it from today's
-- profiles on every view (0.8 s on a 1M-user store: a join of every member with the profiles
-- to sample 4,000 of them, and the model's artefact loaded to transform them).
CREATE TABLE segment_projection (
    run_id   VARCHAR NOT NULL,
    user_id  VARCHAR NOT NULL,
    segment  VARCHAR NOT NULL,
    x        DOUBLE NOT NULL,
    y        DOUBLE NOT NULL
);
