-- 010: the shop's activity as of the last profile build (issue 17): what the dashboard's
-- overview reads, so that it answers in milliseconds on a store of millions of users. Written
-- by the profile build from the same definitions as `jingzhun profile analyze trends|funnel|cohorts`
-- (jingzhun.profile.activity); the days after the build are computed when asked.

-- One row per complete calendar day before the build's as_of day.
CREATE TABLE activity_daily (
    day      DATE PRIMARY KEY,
    actives  BIGINT NOT NULL,   -- visitors with an event of their own that day
    buyers   BIGINT NOT NULL,   -- known users who ordered that day
    orders   BIGINT NOT NULL,   -- orders whose first line fell that day
    revenue  DOUBLE NOT NULL
);

-- Retention by first-order month: customers of a cohort who ordered `age` months later.
CREATE TABLE activity_cohorts (
    cohort     DATE NOT NULL,
    age        INTEGER NOT NULL,
    customers  BIGINT NOT NULL,
    PRIMARY KEY (cohort, age)
);

-- The funnel over the `days` days before the build's as_of (the periods the overview offers).
CREATE TABLE activity_funnel (
    days      INTEGER NOT NULL,
    position  INTEGER NOT NULL,
    step      VARCHAR NOT NULL,
    visitors  BIGINT NOT NULL,
    as_of     TIMESTAMP NOT NULL,
    PRIMARY KEY (days, position)
);

-- When the activity was last kept: the next build recomputes only the days that changed since
-- (new days, days that got late events or newly linked devices); a removal recomputes all.
CREATE TABLE activity_kept (
    as_of       TIMESTAMP NOT NULL,
    written_at  TIMESTAMP NOT NULL
);
