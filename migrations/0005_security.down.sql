DROP TABLE mfa_challenges;
DROP TABLE recovery_codes;
ALTER TABLE users DROP COLUMN totp_last_step;
ALTER TABLE users DROP COLUMN totp_secret_sealed;
ALTER TABLE users ADD COLUMN totp_secret text;
ALTER TABLE users DROP COLUMN disabled_at;
