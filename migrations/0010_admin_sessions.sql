-- 0010: admin accounts' sessions and login-attempt tracking (issue 3 §1).
--
-- Decisions:
--  * Sessions are opaque random ids in an HttpOnly cookie; only their SHA-256 is stored, so a copy
--    of this table cannot be replayed as a login. An opaque id (rather than a signed JWT) makes
--    logout, user disabling and re-roling take effect on the very next request.
--  * Login attempts live in PostgreSQL (not Redis) so the rate limit survives a Redis flush and
--    is visible to operators with SQL; failures are also written to the audit log.

CREATE TABLE admin_sessions (
    id_hash char(64) PRIMARY KEY,
    user_id uuid NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    created_at timestamptz NOT NULL DEFAULT now(),
    last_seen_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL,
    ip_address inet,
    user_agent text
);
CREATE INDEX idx_admin_sessions_user ON admin_sessions (user_id);
CREATE INDEX idx_admin_sessions_expires ON admin_sessions (expires_at);

CREATE TABLE login_attempts (
    id bigserial PRIMARY KEY,
    -- lower-cased as typed, whether or not such a user exists
    username varchar(255) NOT NULL,
    ip_address inet,
    succeeded boolean NOT NULL,
    attempted_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX idx_login_attempts_username ON login_attempts (username, attempted_at DESC);
CREATE INDEX idx_login_attempts_ip ON login_attempts (ip_address, attempted_at DESC);
