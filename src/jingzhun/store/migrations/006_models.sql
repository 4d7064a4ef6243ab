-- 006: one registry of trained things. Segment runs, recommenders and predict models were kept
-- in three tables (and the recommenders' and predict models' fitted state in files beside the
-- store, under paths relative to its original name, so a copied or renamed store lost them).
-- `models` holds them all, fitted state included (`artefact`, .npz bytes, no pickle): a store is
-- one file. The old tables become views of it, so SQL written against them keeps working.
-- Files of existing models are read into `artefact` by the store right after this migration
-- (`store.registry.absorb_files`): SQL on a sealed connection cannot read them.

CREATE TABLE models (
    model_id    VARCHAR PRIMARY KEY,    -- SERIES-N: the N-th model of its series (name or target)
    kind        VARCHAR NOT NULL,       -- segment | recommender | propensity | churn | clv | uplift
    name        VARCHAR NOT NULL,       -- the series: a run name, a recommender, a target
    method      VARCHAR NOT NULL,       -- kmeans | hybrid | lightgbm | bgnbd | x-learner …
    params      JSON NOT NULL,          -- as asked and as chosen
    features    JSON NOT NULL,          -- feature names, in the model's column order
    metrics     JSON NOT NULL,          -- fit quality, comparisons, evaluations
    info        JSON NOT NULL,          -- what the kind records beside: users, items, cutoffs …
    as_of       TIMESTAMP,              -- the data the model saw is from before this
    fit_seconds DOUBLE,
    artefact    BLOB,                   -- the fitted state, .npz (no pickle); NULL: nothing fitted
    path        VARCHAR,                -- a pre-006 model file not found when the store upgraded
    active      BOOLEAN NOT NULL,       -- one active model per kind (per name for segment runs)
    created_at  TIMESTAMP NOT NULL
);

-- A segment run named like another kind's model ('als', 'propensity') had an id that is now
-- taken: it becomes segment-ID, everywhere it is referred to.
CREATE TEMP TABLE _jz_taken AS
    SELECT model_id FROM recommend_models UNION SELECT model_id FROM predict_models;
UPDATE segment_members SET run_id = 'segment-' || run_id
    WHERE run_id IN (SELECT model_id FROM _jz_taken);
UPDATE segment_portraits SET run_id = 'segment-' || run_id
    WHERE run_id IN (SELECT model_id FROM _jz_taken);
UPDATE recommend_models SET segment_run = 'segment-' || segment_run
    WHERE segment_run IN (SELECT model_id FROM _jz_taken);

INSERT INTO models
SELECT CASE WHEN run_id IN (SELECT model_id FROM _jz_taken) THEN 'segment-' || run_id
            ELSE run_id END,
       'segment', name, method, params, features, metrics,
       json_object('users', users, 'segments', segments),
       as_of, NULL, model, NULL, active, created_at
FROM segment_runs;

INSERT INTO models
SELECT model_id, 'recommender', model, model, params, '[]', coalesce(metrics, '{}'),
       json_object('users', users, 'items', items, 'interactions', interactions,
                   'segment_run', segment_run),
       as_of, fit_seconds, NULL, path, active, created_at
FROM recommend_models;

INSERT INTO models
SELECT model_id, target, target, model, '{}', features, metrics,
       json_object('horizon_days', horizon_days, 'cutoffs', cutoffs),
       as_of, fit_seconds, NULL, nullif(path, ''), active, created_at
FROM predict_models;

DROP TABLE _jz_taken;
DROP TABLE segment_runs;
DROP TABLE recommend_models;
DROP TABLE predict_models;

-- The three earlier tables, as views with their columns (docs/data-model.md).
CREATE VIEW segment_runs AS
SELECT model_id AS run_id, name, method, params, features, metrics,
       CAST(info->>'users' AS BIGINT) AS users, CAST(info->>'segments' AS BIGINT) AS segments,
       as_of, artefact AS model, active, created_at
FROM models WHERE kind = 'segment';

CREATE VIEW recommend_models AS
SELECT model_id, method AS model, params,
       CAST(info->>'users' AS BIGINT) AS users, CAST(info->>'items' AS BIGINT) AS items,
       CAST(info->>'interactions' AS BIGINT) AS interactions, as_of,
       info->>'segment_run' AS segment_run, fit_seconds,
       CASE WHEN metrics = '{}' THEN NULL ELSE metrics END AS metrics, active, created_at
FROM models WHERE kind = 'recommender';

CREATE VIEW predict_models AS
SELECT model_id, kind AS target, method AS model, CAST(info->>'horizon_days' AS DOUBLE) AS horizon_days,
       as_of, CAST(info->'cutoffs' AS JSON) AS cutoffs, features, metrics,
       fit_seconds, active, created_at
FROM models WHERE kind IN ('propensity', 'churn', 'clv', 'uplift');
