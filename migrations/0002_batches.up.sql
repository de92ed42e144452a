-- The scheduler's batches: every run, the daily aggregates and the monthly
-- reports built from them.

CREATE TABLE batch_runs (
    id            uuid PRIMARY KEY,
    batch         text NOT NULL,
    -- The cron tick this run is for; NULL for a run asked for by hand.
    scheduled_for timestamptz,
    trigger       text NOT NULL CHECK (trigger IN ('schedule', 'catch_up', 'manual')),
    status        text NOT NULL DEFAULT 'queued'
                  CHECK (status IN ('queued', 'running', 'succeeded', 'failed')),
    -- What the batch was asked to do, e.g. {"date": "2026-02-15"}.
    params        jsonb NOT NULL DEFAULT '{}',
    -- The queue job carrying it (see turns.job_id).
    job_id        text,
    attempts      integer NOT NULL DEFAULT 0,
    -- The worker running it renews this; past it, the reconciler re-enqueues.
    lease_until   timestamptz,
    enqueued_at   timestamptz NOT NULL DEFAULT now(),
    started_at    timestamptz,
    finished_at   timestamptz,
    -- What it touched, e.g. {"expired": 3, "evaluations_enqueued": 3}.
    counts        jsonb,
    error         text,
    -- Exactly once per tick, whatever the number of scheduler replicas.
    UNIQUE (batch, scheduled_for)
);
CREATE INDEX batch_runs_recent ON batch_runs (batch, enqueued_at DESC);
CREATE INDEX batch_runs_unfinished ON batch_runs (enqueued_at) WHERE status IN ('queued', 'running');

-- One row per day (in SCHEDULER_TIMEZONE); re-running a day replaces it.
CREATE TABLE daily_analytics (
    day                date PRIMARY KEY,
    sessions_started   integer NOT NULL,
    sessions_completed integer NOT NULL,
    -- completed / started; NULL on a day without sessions.
    completion_rate    double precision,
    turns              integer NOT NULL,
    ai_latency_p50_ms  integer,
    ai_latency_p95_ms  integer,
    computed_at        timestamptz NOT NULL DEFAULT now()
);

-- Tokens and cost per provider and day (turns and evaluations).
CREATE TABLE daily_provider_usage (
    day               date NOT NULL REFERENCES daily_analytics (day) ON DELETE CASCADE,
    provider          text NOT NULL,
    requests          integer NOT NULL,
    prompt_tokens     bigint NOT NULL,
    completion_tokens bigint NOT NULL,
    cost_usd          double precision NOT NULL,
    PRIMARY KEY (day, provider)
);

CREATE TABLE monthly_reports (
    -- The first day of the month.
    month      date PRIMARY KEY,
    report     jsonb NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
