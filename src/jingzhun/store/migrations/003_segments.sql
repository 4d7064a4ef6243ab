-- 003: the segment stage. A run is one clustering of the profiles; runs are kept as history and
-- one run per name is active (the one campaigns select on and new users are assigned to).

CREATE TABLE segment_runs (
    run_id      VARCHAR PRIMARY KEY,    -- NAME-N: the N-th run under NAME
    name        VARCHAR NOT NULL,
    method      VARCHAR NOT NULL,       -- rfm | kmeans | minibatch-kmeans | hierarchical | ...
    params      JSON NOT NULL,          -- as asked and as chosen (k, eps, grid …)
    features    JSON NOT NULL,          -- feature names, in model order
    metrics     JSON NOT NULL,          -- silhouette, Calinski-Harabasz, Davies-Bouldin, k scan …
    users       BIGINT NOT NULL,
    segments    BIGINT NOT NULL,
    as_of       TIMESTAMP,              -- the profiles' as_of the run was fitted on
    model       BLOB,                   -- .npz (no pickle): scaling, centroids … for assignment
    active      BOOLEAN NOT NULL,
    created_at  TIMESTAMP NOT NULL
);

CREATE TABLE segment_members (
    run_id      VARCHAR NOT NULL,
    user_id     VARCHAR NOT NULL,
    segment     VARCHAR NOT NULL,       -- the segment's code ('1', '2' …, 'noise', or an RFM name)
    fitted      BOOLEAN NOT NULL,       -- false: assigned after the fit, without refitting
    assigned_at TIMESTAMP NOT NULL
);

-- One row per segment of a run: its readable portrait.
CREATE TABLE segment_portraits (
    run_id          VARCHAR NOT NULL,
    segment         VARCHAR NOT NULL,
    label           VARCHAR NOT NULL,   -- e.g. "High spend · loyal · electronics"
    users           BIGINT NOT NULL,
    share           DOUBLE NOT NULL,
    revenue_share   DOUBLE,
    traits          JSON NOT NULL,      -- trait -> {mean, median, population_mean, z}
    top_categories  JSON NOT NULL       -- [[category, share, lift], …]
);
