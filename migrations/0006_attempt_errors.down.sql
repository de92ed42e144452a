DROP INDEX turns_completed;
ALTER TABLE batch_runs DROP COLUMN attempt_errors;
ALTER TABLE evaluations DROP COLUMN attempt_errors;
ALTER TABLE turns DROP COLUMN attempt_errors;
