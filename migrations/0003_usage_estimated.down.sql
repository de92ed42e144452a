ALTER TABLE daily_provider_usage DROP COLUMN estimated_requests;
ALTER TABLE evaluations DROP COLUMN usage_estimated;
ALTER TABLE turns DROP COLUMN usage_estimated;
