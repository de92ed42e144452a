-- Usage a provider did not report (an old Azure api-version, a stream
-- without a usage event) is our estimate: say so wherever it is stored.
ALTER TABLE turns ADD COLUMN usage_estimated boolean NOT NULL DEFAULT false;
ALTER TABLE evaluations ADD COLUMN usage_estimated boolean NOT NULL DEFAULT false;
ALTER TABLE daily_provider_usage ADD COLUMN estimated_requests integer NOT NULL DEFAULT 0;
