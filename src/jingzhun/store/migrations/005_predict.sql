-- 005: the predict stage. Fitted models are files in the store's folder
-- (<store>.models/predict/<model_id>.npz, no pickle); this table versions them.

CREATE TABLE predict_models (
    model_id     VARCHAR PRIMARY KEY,   -- TARGET-N: the N-th training for TARGET
    target       VARCHAR NOT NULL,      -- propensity | churn | uplift
    model        VARCHAR NOT NULL,      -- the chosen classifier or uplift learner
    horizon_days DOUBLE NOT NULL,       -- the label window after each cutoff
    as_of        TIMESTAMP NOT NULL,    -- the time the split's cutoffs step back from
    cutoffs      JSON NOT NULL,         -- train / validation / test cutoffs (or the campaign)
    features     JSON NOT NULL,         -- feature names, in the model's column order
    metrics      JSON NOT NULL,         -- the comparison: every model on validation and test
    path         VARCHAR NOT NULL,      -- the .npz, relative to the store's folder
    fit_seconds  DOUBLE NOT NULL,
    active       BOOLEAN NOT NULL,      -- the model `predict score` uses for its target
    created_at   TIMESTAMP NOT NULL
);

-- The latest scores per kind: `predict score` replaces one kind in one transaction.
CREATE TABLE scores (
    user_id     VARCHAR NOT NULL,
    score       VARCHAR NOT NULL,       -- propensity | churn | uplift | clv | expected_orders | p_alive
    value       DOUBLE NOT NULL,        -- a calibrated probability, an uplift, or money/orders
    percentile  DOUBLE NOT NULL,        -- the user's rank among those scored, 0-1 (1 = highest)
    model_id    VARCHAR NOT NULL,
    reasons     JSON,                   -- [{"feature", "value", "effect"}], the top reasons
    as_of       TIMESTAMP NOT NULL,     -- features see events before this
    computed_at TIMESTAMP NOT NULL
);
