-- 0047: the key of the audit log's markers for sign-ins as a username no account has
-- (`unknown user #<12 hex>`, services/admin-api/src/audit/marker-key.ts): 32 random bytes, created
-- by the admin service on first use, stored encrypted with ENCRYPTION_KEY (the secret box, as the
-- collectors' passwords: a database dump alone cannot test guesses against the markers). Until now
-- the key was derived from JWT_SECRET's whole text, so every step of a JWT_SECRET rotation changed
-- every marker. One row.
CREATE TABLE audit_marker_key (
    singleton     boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    key_encrypted text NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now()
);
