-- Revocation that holds and TOTP MFA (issue 13).
--
-- An account an admin disabled: its logins and tokens are refused.
ALTER TABLE users ADD COLUMN disabled_at timestamptz;
-- The TOTP secret, sealed with AES-256-GCM under a key derived from
-- TOTP_SECRET_KEY (nonce ‖ ciphertext ‖ tag, the user id as associated
-- data). Set at setup; `mfa_enabled` once a code confirmed it.
ALTER TABLE users DROP COLUMN totp_secret;
ALTER TABLE users ADD COLUMN totp_secret_sealed bytea;
-- The last TOTP time step accepted (unix time / 30): a code is accepted only
-- for a later step, compared and set in one UPDATE, so no two replicas can
-- both accept one code.
ALTER TABLE users ADD COLUMN totp_last_step bigint;

-- Single-use recovery codes, SHA-256 hashed (they are random, 50+ bits).
CREATE TABLE recovery_codes (
    user_id   uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    code_hash bytea NOT NULL,
    used_at   timestamptz,
    PRIMARY KEY (user_id, code_hash)
);

-- A login waiting for its second factor (the MFA token names it): wrong
-- codes are counted here, and it is spent once completed.
CREATE TABLE mfa_challenges (
    id           uuid PRIMARY KEY,
    user_id      uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    failures     integer NOT NULL DEFAULT 0,
    completed_at timestamptz,
    expires_at   timestamptz NOT NULL
);
CREATE INDEX mfa_challenges_expiry ON mfa_challenges (expires_at);
