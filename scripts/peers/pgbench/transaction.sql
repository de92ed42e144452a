-- The answer's transaction alone (issue 15): BEGIN; submit_answer (migration
-- 0007); COMMIT, without the token's access check that answer.sql runs
-- first. Variables and sessions as in answer.sql.
\set n :n + 1
\set k :base + :client_id * :per_client + :n
BEGIN;
SELECT outcome, session_status, turn_id, turn_number, turn_status, event::text AS event
FROM submit_answer(lpad(to_hex(:k::bigint), 32, '0')::uuid, :candidate::uuid, 'I would shard the queue by session.',
                   'bench-' || :k, 'req_' || lpad(to_hex(:k::bigint), 32, '0'), lpad(to_hex(:k::bigint), 26, '0'),
                   ('7' || lpad(to_hex(:k::bigint), 31, '0'))::uuid);
COMMIT;
