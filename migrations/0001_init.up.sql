-- Users, refresh tokens, interviews, sessions, turns, evaluations and the
-- per-session event log that WebSocket resume reads.

CREATE TABLE users (
    id            uuid PRIMARY KEY,
    email         text NOT NULL,
    password_hash text NOT NULL,
    role          text NOT NULL CHECK (role IN ('candidate', 'recruiter', 'admin')),
    totp_secret   text,
    mfa_enabled   boolean NOT NULL DEFAULT false,
    created_at    timestamptz NOT NULL DEFAULT now()
);
-- Emails are unique whatever their case.
CREATE UNIQUE INDEX users_email_key ON users (lower(email));

CREATE TABLE refresh_tokens (
    id          uuid PRIMARY KEY,
    user_id     uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    -- Every token rotated from one login shares its family: reuse of a
    -- revoked member revokes them all.
    family_id   uuid NOT NULL,
    token_hash  bytea NOT NULL UNIQUE,
    expires_at  timestamptz NOT NULL,
    revoked_at  timestamptz,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX refresh_tokens_family ON refresh_tokens (family_id);
CREATE INDEX refresh_tokens_expiry ON refresh_tokens (expires_at);

CREATE TABLE interviews (
    id               uuid PRIMARY KEY,
    owner_id         uuid NOT NULL REFERENCES users (id),
    title            text NOT NULL,
    position         text NOT NULL,
    language         text NOT NULL CHECK (language IN ('ja', 'en')),
    topics           jsonb NOT NULL,
    max_turns        integer NOT NULL CHECK (max_turns BETWEEN 1 AND 100),
    duration_minutes integer NOT NULL CHECK (duration_minutes BETWEEN 1 AND 1440),
    created_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX interviews_owner ON interviews (owner_id, created_at DESC);

CREATE TABLE sessions (
    id               uuid PRIMARY KEY,
    interview_id     uuid NOT NULL REFERENCES interviews (id),
    candidate_id     uuid NOT NULL REFERENCES users (id),
    status           text NOT NULL DEFAULT 'active'
                     CHECK (status IN ('active', 'completed', 'expired', 'abandoned')),
    started_at       timestamptz NOT NULL DEFAULT now(),
    last_activity_at timestamptz NOT NULL DEFAULT now(),
    expires_at       timestamptz NOT NULL,
    ended_at         timestamptz,
    -- Set when the session is asked to end while a turn is in flight: the
    -- worker completes the session when that turn finishes.
    end_requested_at timestamptz,
    -- The last event sequence number handed out for this session.
    last_seq         bigint NOT NULL DEFAULT 0
);
CREATE INDEX sessions_candidate ON sessions (candidate_id);
CREATE INDEX sessions_interview ON sessions (interview_id);
CREATE INDEX sessions_active_activity ON sessions (last_activity_at) WHERE status = 'active';

CREATE TABLE turns (
    id                  uuid PRIMARY KEY,
    session_id          uuid NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    -- 0 is the opening turn (no candidate message); answers are 1, 2, ...
    number              integer NOT NULL,
    candidate_message   text,
    interviewer_message text,
    status              text NOT NULL DEFAULT 'queued'
                        CHECK (status IN ('queued', 'running', 'completed', 'failed')),
    idempotency_key     text,
    request_id          text,
    provider            text,
    model               text,
    prompt_tokens       integer,
    completion_tokens   integer,
    cost_usd            double precision,
    latency_ms          integer,
    attempts            integer NOT NULL DEFAULT 0,
    error               text,
    -- The worker holding a running turn renews this; past it, another may take over.
    lease_until         timestamptz,
    worker              text,
    -- The queue job currently carrying this turn: lets the reconciler tell a
    -- lost job (Redis flushed) from one that is merely waiting.
    job_id              text,
    created_at          timestamptz NOT NULL DEFAULT now(),
    enqueued_at         timestamptz NOT NULL DEFAULT now(),
    started_at          timestamptz,
    completed_at        timestamptz,
    UNIQUE (session_id, number),
    UNIQUE (session_id, idempotency_key)
);
CREATE INDEX turns_unfinished ON turns (enqueued_at) WHERE status IN ('queued', 'running');

CREATE TABLE evaluations (
    session_id        uuid PRIMARY KEY REFERENCES sessions (id) ON DELETE CASCADE,
    status            text NOT NULL DEFAULT 'pending'
                      CHECK (status IN ('pending', 'running', 'completed', 'failed')),
    scores            jsonb,
    summary           text,
    recommendation    text,
    provider          text,
    model             text,
    prompt_tokens     integer,
    completion_tokens integer,
    cost_usd          double precision,
    latency_ms        integer,
    attempts          integer NOT NULL DEFAULT 0,
    error             text,
    request_id        text,
    lease_until       timestamptz,
    job_id            text,
    created_at        timestamptz NOT NULL DEFAULT now(),
    enqueued_at       timestamptz NOT NULL DEFAULT now(),
    completed_at      timestamptz
);
CREATE INDEX evaluations_unfinished ON evaluations (enqueued_at) WHERE status IN ('pending', 'running');

-- Every event a client must not miss (all but token deltas), as published.
-- A reconnecting WebSocket replays the rows after its last seen `seq`.
CREATE TABLE session_events (
    session_id uuid NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    seq        bigint NOT NULL,
    event      jsonb NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (session_id, seq)
);
