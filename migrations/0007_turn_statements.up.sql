-- The writes of a turn as one statement each (issue 15): the answer, the
-- worker's start of the reply and its completion each used to be five to
-- seven round trips inside one transaction. Each is now one call, still in
-- a transaction of its own, because its events are published before the
-- commit (the session row stays locked, so publish order is seq order; see
-- shared/src/events.rs). The events built here have the shapes of SPEC §5,
-- as shared::events::EventKind serializes them (tests/tests/turn_statements.rs
-- reads them back into that type).
--
-- Locks are taken as everywhere else: the session row first, then the turn.
-- A turn taken by id has its status tested inside a CASE, which the planner
-- cannot match to the partial index turns_unfinished (shared/src/db/turns).
-- These functions are VOLATILE: under READ COMMITTED each statement in them
-- sees what committed before it ran, so a check made after the session lock
-- sees every answer that held the lock before.

-- Gives `event` the session's next seq, reserving `reserve` more numbers
-- (for the deltas that follow it), stores it, and returns it as published.
-- `touch` records activity (an answer or a reply) in the same row version:
-- `last_activity_at` is indexed, so each separate update of it would be a
-- new tuple with new index entries rather than a HOT update.
CREATE FUNCTION append_session_event(p_session uuid, p_event jsonb, p_reserve bigint DEFAULT 0,
    p_touch boolean DEFAULT false)
RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    v_seq bigint;
    v_event jsonb;
BEGIN
    UPDATE sessions SET last_seq = last_seq + 1 + p_reserve,
        last_activity_at = CASE WHEN p_touch THEN now() ELSE last_activity_at END
    WHERE id = p_session
    RETURNING last_seq - p_reserve INTO v_seq;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'session % not found', p_session USING ERRCODE = 'no_data_found';
    END IF;
    v_event := p_event || jsonb_build_object('seq', v_seq, 'session_id', p_session);
    INSERT INTO session_events (session_id, seq, event) VALUES (p_session, v_seq, v_event);
    RETURN v_event;
END $$;

-- Ends an active session with `status` for `reason`: `session.completed`
-- stored and returned, and its pending evaluation created under job
-- `job_id`. NULL if the session was not active. The caller holds the
-- session row.
CREATE FUNCTION finish_session(p_session uuid, p_status text, p_reason text, p_request_id text, p_job_id text)
RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    v_event jsonb;
BEGIN
    UPDATE sessions SET status = p_status, ended_at = now(), last_activity_at = now()
    WHERE id = p_session AND status = 'active';
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    v_event := append_session_event(p_session,
        jsonb_build_object('type', 'session.completed', 'status', p_status, 'reason', p_reason));
    INSERT INTO evaluations (session_id, request_id, job_id) VALUES (p_session, p_request_id, p_job_id)
    ON CONFLICT DO NOTHING;
    RETURN v_event;
END $$;

-- The candidate's answer: locks the session, then refuses it
-- (outcome `not_found`, `forbidden`, `not_active` with the session's
-- status, `end_requested`, `expired`, `in_progress` with the turn in
-- flight's number, `key_reused`), returns the turn an earlier answer with
-- the same idempotency key created (`replayed`), or stores the turn
-- `p_turn_id` under job `p_job_id` with its `turn.queued` event
-- (`created`), touching the session. The caller commits only `created`.
CREATE FUNCTION submit_answer(
    p_session uuid, p_candidate uuid, p_text text, p_key text, p_request_id text, p_job_id text, p_turn_id uuid,
    OUT outcome text, OUT session_status text, OUT turn_id uuid, OUT turn_number integer, OUT turn_status text,
    OUT event jsonb)
LANGUAGE plpgsql AS $$
DECLARE
    v_session record;
    v_turn record;
BEGIN
    SELECT s.candidate_id, s.status, s.expires_at, s.end_requested_at INTO v_session
    FROM sessions s WHERE s.id = p_session FOR UPDATE;
    IF NOT FOUND THEN
        outcome := 'not_found';
        RETURN;
    END IF;
    session_status := v_session.status;
    IF v_session.candidate_id <> p_candidate THEN
        outcome := 'forbidden';
        RETURN;
    END IF;
    IF p_key IS NOT NULL THEN
        SELECT t.id, t.number, t.status, t.candidate_message INTO v_turn
        FROM turns t WHERE t.session_id = p_session AND t.idempotency_key = p_key;
        IF FOUND THEN
            outcome := CASE WHEN v_turn.candidate_message IS NOT DISTINCT FROM p_text THEN 'replayed' ELSE 'key_reused' END;
            turn_id := v_turn.id;
            turn_number := v_turn.number;
            turn_status := v_turn.status;
            RETURN;
        END IF;
    END IF;
    IF v_session.status <> 'active' THEN
        outcome := 'not_active';
        RETURN;
    END IF;
    IF v_session.end_requested_at IS NOT NULL THEN
        outcome := 'end_requested';
        RETURN;
    END IF;
    IF v_session.expires_at <= now() THEN
        outcome := 'expired';
        RETURN;
    END IF;
    SELECT t.number, t.status INTO v_turn FROM turns t WHERE t.session_id = p_session ORDER BY t.number DESC LIMIT 1;
    IF FOUND AND v_turn.status IN ('queued', 'running') THEN
        outcome := 'in_progress';
        turn_number := v_turn.number;
        RETURN;
    END IF;
    turn_number := CASE WHEN FOUND THEN v_turn.number + 1 ELSE 0 END;
    INSERT INTO turns (id, session_id, number, candidate_message, idempotency_key, request_id, job_id)
    VALUES (p_turn_id, p_session, turn_number, p_text, p_key, p_request_id, p_job_id);
    turn_id := p_turn_id;
    turn_status := 'queued';
    event := append_session_event(p_session,
        jsonb_build_object('type', 'turn.queued', 'turn_id', p_turn_id, 'number', turn_number), 0, true);
    outcome := 'created';
END $$;

-- A worker's claimed turn starts its reply: `turn.reset` first when an
-- earlier attempt had started (it may have streamed text), then
-- `turn.started` with `block` numbers reserved for the deltas. Called in
-- the statement that claims the turn; returns the events in order.
CREATE FUNCTION start_turn_events(p_session uuid, p_turn uuid, p_number integer, p_restarted boolean, p_block bigint)
RETURNS text[] LANGUAGE plpgsql AS $$
DECLARE
    v_events text[] := '{}';
BEGIN
    IF p_restarted THEN
        v_events := v_events || append_session_event(p_session, jsonb_build_object('type', 'turn.reset',
            'turn_id', p_turn, 'reason', 'the previous attempt did not finish; the reply restarts'))::text;
    END IF;
    RETURN v_events || append_session_event(p_session,
        jsonb_build_object('type', 'turn.started', 'turn_id', p_turn, 'number', p_number), p_block)::text;
END $$;

-- Stores a reply if attempt `p_attempt` still holds the turn, with its
-- `turn.completed` (`p_event`, its seq and session added here), and ends
-- the session when that was its last turn (`max_turns`) or an end was
-- asked for meanwhile (`ended`). Returns the events to publish, in order;
-- NULL if the attempt lost the turn (the caller rolls back).
CREATE FUNCTION complete_turn(
    p_turn uuid, p_attempt integer, p_message text, p_prompt_tokens integer, p_completion_tokens integer,
    p_provider text, p_model text, p_cost_usd double precision, p_latency_ms integer, p_usage_estimated boolean,
    p_event jsonb, p_request_id text, p_evaluation_job_id text)
RETURNS text[] LANGUAGE plpgsql AS $$
DECLARE
    v_session uuid;
    v_number integer;
    v_state record;
    v_reason text;
    v_events text[];
    v_finished jsonb;
BEGIN
    SELECT t.session_id INTO v_session FROM turns t WHERE t.id = p_turn;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    SELECT s.status, s.end_requested_at, i.max_turns INTO v_state
    FROM sessions s JOIN interviews i ON i.id = s.interview_id WHERE s.id = v_session FOR UPDATE OF s;
    UPDATE turns t SET status = 'completed', interviewer_message = p_message, prompt_tokens = p_prompt_tokens,
        completion_tokens = p_completion_tokens, provider = p_provider, model = p_model, cost_usd = p_cost_usd,
        latency_ms = p_latency_ms, usage_estimated = p_usage_estimated, error = NULL, lease_until = NULL,
        completed_at = now()
    WHERE t.id = p_turn AND t.attempts = p_attempt AND CASE t.status WHEN 'running' THEN true ELSE false END
    RETURNING t.number INTO v_number;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    v_events := ARRAY[append_session_event(v_session, p_event, 0, true)::text];
    v_reason := CASE WHEN v_number >= v_state.max_turns THEN 'max_turns'
                     WHEN v_state.end_requested_at IS NOT NULL THEN 'ended' END;
    IF v_reason IS NOT NULL AND v_state.status = 'active' THEN
        v_finished := finish_session(v_session, 'completed', v_reason, p_request_id, p_evaluation_job_id);
        IF v_finished IS NOT NULL THEN
            v_events := v_events || v_finished::text;
        END IF;
    END IF;
    RETURN v_events;
END $$;
