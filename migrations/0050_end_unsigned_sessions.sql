-- 0050: ends the admin sessions of before signed session cookies.
--
-- From this version the session cookie is `<keyId>.<sessionId>.<mac>`, an HMAC under a key derived
-- from ENCRYPTION_KEY (services/admin-api/src/auth/session-signer.ts), checked before any lookup so a
-- made-up cookie costs no query. A cookie of before is the bare id: no MAC, so it reads as signed out.
-- Its row is deleted here rather than left to expire (up to SESSION_TTL_HOURS, at most 30 days): its
-- open live feeds end at their next session check, and no admin process keeps a session that no
-- cookie can reach. Accepting bare ids until they expire would have kept the lookup this removes open
-- to every made-up id for that long. Everyone signs in again once.

DELETE FROM admin_sessions;
