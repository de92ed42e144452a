-- What the admin page shows (issue 14).
--
-- Every failed attempt of a turn, an evaluation or a batch run, not only
-- the last: `{"attempt", "at", "error"}` appended where an attempt ends
-- without a result (released for a retry, failed for good, or taken over
-- after its worker stopped), cleared with the attempt count when an
-- operator retries the dead job. A dead job's detail lists them.
ALTER TABLE turns ADD COLUMN attempt_errors jsonb NOT NULL DEFAULT '[]';
ALTER TABLE evaluations ADD COLUMN attempt_errors jsonb NOT NULL DEFAULT '[]';
ALTER TABLE batch_runs ADD COLUMN attempt_errors jsonb NOT NULL DEFAULT '[]';

-- Turns finished per minute and their latency over the last hour
-- (GET /admin/history).
CREATE INDEX turns_completed ON turns (completed_at) WHERE completed_at IS NOT NULL;
