-- What our API runs in PostgreSQL per answer (issue 15's pgbench ceiling):
-- the access check of the caller's token (shared/src/db/users.rs, access),
-- then the answer's transaction (migration 0007, submit_answer). Run by
-- tests/src/bin/bench_answer.rs as
--   pgbench -n -M prepared -c 50 -j 2 -t N -D n=0 -D base=B -D per_client=N
--           -D candidate=UUID -D family=UUID -f answer.sql
-- Each transaction answers a session of its own, prepared beforehand with
-- the id lpad(to_hex(k), 32, '0'): client c takes k = B + c * N + 1 ...
-- (pgbench keeps a client's variables from one transaction to the next),
-- so picking a session costs no statement.
\set n :n + 1
\set k :base + :client_id * :per_client + :n
SELECT role, disabled_at IS NOT NULL,
       EXISTS (SELECT 1 FROM refresh_tokens WHERE family_id = :family::uuid AND user_id = :candidate::uuid AND revoked_at IS NULL),
       mfa_enabled
FROM users WHERE id = :candidate::uuid;
BEGIN;
SELECT outcome, session_status, turn_id, turn_number, turn_status, event::text AS event
FROM submit_answer(lpad(to_hex(:k::bigint), 32, '0')::uuid, :candidate::uuid, 'I would shard the queue by session.',
                   'bench-' || :k, 'req_' || lpad(to_hex(:k::bigint), 32, '0'), lpad(to_hex(:k::bigint), 26, '0'),
                   ('7' || lpad(to_hex(:k::bigint), 31, '0'))::uuid);
COMMIT;
