-- What our worker runs in PostgreSQL per turn (issue 15's ceiling for the
-- worker): the claim with turn.started in one statement and transaction
-- (shared/src/db/turns/steps.rs, start), the prompt's reads (the interview,
-- the session's turns), and the reply stored with turn.completed in one
-- statement and transaction (complete_turn, migration 0007). Run by
-- tests/src/bin/bench_answer.rs over the turns its transaction.sql run
-- queued, with the same variables: turn k is ('7' || lpad(to_hex(k), 31,
-- '0'))::uuid in session lpad(to_hex(k), 32, '0').
\set n :n + 1
\set k :base + :client_id * :per_client + :n
BEGIN;
WITH claimed AS (
    UPDATE turns SET status = 'running', attempts = attempts + 1, worker = 'pgbench',
        lease_until = now() + make_interval(secs => 300.0), started_at = coalesce(started_at, now()),
        attempt_errors = CASE WHEN status = 'running' THEN attempt_errors || jsonb_build_array(jsonb_build_object(
            'attempt', attempts, 'at', now(), 'error', 'its worker stopped before it finished (lease expired)'))
            ELSE attempt_errors END
    WHERE id = ('7' || lpad(to_hex(:k::bigint), 31, '0'))::uuid
      AND CASE status WHEN 'queued' THEN true WHEN 'running' THEN lease_until < now() ELSE false END
    RETURNING *)
SELECT id, session_id, number, candidate_message, interviewer_message, status, idempotency_key, request_id, provider,
       model, prompt_tokens, completion_tokens, usage_estimated, cost_usd, latency_ms, attempts, error, created_at,
       completed_at, events, (events[cardinality(events)]::jsonb->>'seq')::bigint + 1 AS first_delta
FROM claimed, LATERAL (SELECT CASE WHEN attempts <= 5
    THEN start_turn_events(session_id, id, number, attempts > 1, 256) ELSE '{}' END AS events) started;
COMMIT;
SELECT id, owner_id, title, position, language, topics, max_turns, duration_minutes, criteria, created_at
FROM interviews WHERE id = (SELECT interview_id FROM sessions WHERE id = lpad(to_hex(:k::bigint), 32, '0')::uuid);
SELECT id, session_id, number, candidate_message, interviewer_message, status, idempotency_key, request_id, provider,
       model, prompt_tokens, completion_tokens, usage_estimated, cost_usd, latency_ms, attempts, error, created_at,
       completed_at
FROM turns WHERE session_id = lpad(to_hex(:k::bigint), 32, '0')::uuid ORDER BY number;
BEGIN;
SELECT complete_turn(('7' || lpad(to_hex(:k::bigint), 31, '0'))::uuid, 1,
    'Thank you. How would you keep the queue from losing a job when a worker dies?', 120, 20, 'scripted',
    'scripted-interviewer-1', 0.0, 1, false,
    jsonb_build_object('type', 'turn.completed', 'turn_id', '7' || lpad(to_hex(:k::bigint), 31, '0'), 'number', 1,
        'message', 'Thank you. How would you keep the queue from losing a job when a worker dies?',
        'usage', jsonb_build_object('prompt_tokens', 120, 'completion_tokens', 20)),
    'req_pgbench', 'job_' || :k);
COMMIT;
