-- 004: the recommend stage. Trained models are files in the store's folder
-- (<store>.models/recommend/<model_id>.npz, no pickle); this table versions them.

CREATE TABLE recommend_models (
    model_id     VARCHAR PRIMARY KEY,   -- MODEL-N: the N-th training of MODEL
    model        VARCHAR NOT NULL,      -- popularity | itemknn | userknn | als | bpr | ease | content | hybrid
    params       JSON NOT NULL,
    path         VARCHAR NOT NULL,      -- the .npz, relative to the store's folder
    users        BIGINT NOT NULL,
    items        BIGINT NOT NULL,
    interactions BIGINT NOT NULL,
    as_of        TIMESTAMP NOT NULL,    -- interactions are the events before this
    segment_run  VARCHAR,               -- the run whose segments popularity is split by
    fit_seconds  DOUBLE NOT NULL,
    metrics      JSON,                  -- a holdout evaluation, when one was run
    active       BOOLEAN NOT NULL,      -- the model batch, show and session use
    created_at   TIMESTAMP NOT NULL
);

-- The latest `recommend batch`: top k per user after the business rules.
CREATE TABLE recommendations (
    user_id    VARCHAR NOT NULL,
    rank       INTEGER NOT NULL,        -- 1 = best
    item_id    VARCHAR NOT NULL,
    score      DOUBLE NOT NULL,
    model      VARCHAR NOT NULL,        -- model_id
    reason     VARCHAR NOT NULL,        -- bought:ITEM | viewed:ITEM | interest:CATEGORY | segment:SEGMENT | popular
    created_at TIMESTAMP NOT NULL
);

-- Offline evaluations (`recommend evaluate`) of the store's interactions: one row per run.
CREATE TABLE recommend_evaluations (
    evaluated_at TIMESTAMP NOT NULL,
    source       VARCHAR NOT NULL,      -- "store", or the log file evaluated
    split        VARCHAR NOT NULL,
    k            INTEGER NOT NULL,
    best         VARCHAR,
    result       JSON NOT NULL          -- the --json output: metrics per model, params, timings
);
