DROP TABLE monthly_reports;
DROP TABLE daily_provider_usage;
DROP TABLE daily_analytics;
DROP TABLE batch_runs;
