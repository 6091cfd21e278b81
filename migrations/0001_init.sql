-- 0001: accounts, groups, collectors, tokens, enrollment, dashboards, audit.
--
-- Deliberate changes from the design document's "Detailed Database Schema":
--  * every TIMESTAMP is timestamptz (the fleet spans time zones; RDS runs in UTC anyway).
--  * ids are UUIDs from gen_random_uuid() (core since PostgreSQL 13: no extension needed).
--  * collectors.jwt_token is gone: no usable token is stored. Tokens live in collector_tokens as
--    a SHA-256 hash and their jti; collectors keep jwt_token_rotated_at / jwt_token_expires_at.
--  * collectors.name is unique among collectors that are not soft-deleted (a partial unique index
--    instead of UNIQUE), so deleting a collector frees its name for reuse.
--  * registered_by is nullable and references users: a collector that enrolled itself with an
--    enrollment secret has no human registrar (enrollment_secret_id says which secret).
--  * ssl_mode uses libpq's names (verify-ca / verify-full); the API maps the design's
--    requireCA / requireFull onto them.
--  * collectors gains config_version (bumped on every config change, reported in heartbeats),
--    last_metric_at (data freshness, shown apart from heartbeat liveness), agent_hostname /
--    agent_version (reported by the agent) and created_at / updated_at.
--  * counters are bigint (metrics_collected overflows int in a busy fleet within months).
--  * collector_dashboards.dashboard_id holds a Grafana dashboard UID, which is a string of up to
--    40 characters, not a UUID.
--  * collector_audit_log.collector_id is nullable (the design declared it NOT NULL together with
--    ON DELETE SET NULL, which cannot both hold) and so is actor_id (failed logins of unknown users,
--    enrollments, system actions); entity_type / entity_id cover group, user and secret changes.

CREATE TABLE users (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    username varchar(64) NOT NULL,
    email varchar(255),
    display_name varchar(255),
    password_hash text NOT NULL,
    role varchar(16) NOT NULL DEFAULT 'viewer',
    disabled boolean NOT NULL DEFAULT false,
    last_login_at timestamptz,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT users_valid_role CHECK (role IN ('admin', 'viewer'))
);
CREATE UNIQUE INDEX users_username_key ON users (lower(username));
CREATE UNIQUE INDEX users_email_key ON users (lower(email)) WHERE email IS NOT NULL;

CREATE TABLE collector_groups (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name varchar(255) NOT NULL,
    description text,
    color varchar(7),
    icon varchar(50),
    display_order integer,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT collector_groups_name_key UNIQUE (name),
    CONSTRAINT collector_groups_valid_color CHECK (color IS NULL OR color ~ '^#[0-9A-Fa-f]{6}$')
);

INSERT INTO collector_groups (name, description, color, icon, display_order) VALUES
    ('AWS RDS', 'AWS Relational Database Service', '#FF9900', 'cloud', 1),
    ('On-Premises', 'Self-managed databases', '#146EB4', 'server', 2),
    ('GCP Cloud SQL', 'Google Cloud Platform', '#4285F4', 'cloud', 3),
    ('Azure Database', 'Microsoft Azure', '#0078D4', 'cloud', 4),
    ('Development', 'Development environment', '#28A745', 'code', 5),
    ('Staging', 'Staging environment', '#FFC107', 'flask', 6),
    ('Production', 'Production environment', '#DC3545', 'shield', 7)
ON CONFLICT (name) DO NOTHING;

CREATE TABLE enrollment_secrets (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name varchar(255) NOT NULL,
    -- SHA-256 hex of the secret; the secret itself is shown once at creation.
    secret_hash char(64) NOT NULL,
    group_id uuid REFERENCES collector_groups(id) ON DELETE SET NULL,
    environment varchar(50) NOT NULL DEFAULT 'production',
    expires_at timestamptz,
    max_uses integer,
    uses integer NOT NULL DEFAULT 0,
    revoked_at timestamptz,
    created_by uuid REFERENCES users(id),
    created_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT enrollment_secrets_secret_hash_key UNIQUE (secret_hash),
    CONSTRAINT enrollment_secrets_valid_environment CHECK (environment IN ('development', 'staging', 'production')),
    CONSTRAINT enrollment_secrets_valid_max_uses CHECK (max_uses IS NULL OR max_uses > 0),
    CONSTRAINT enrollment_secrets_uses_within_max CHECK (max_uses IS NULL OR uses <= max_uses)
);

CREATE TABLE collectors (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name varchar(255) NOT NULL,
    type varchar(50) NOT NULL,
    environment varchar(50) NOT NULL,
    group_id uuid REFERENCES collector_groups(id),
    description text,

    -- Target database connection details (secrets encrypted with AES-256-GCM, see @pga/crypto)
    host varchar(255) NOT NULL,
    port integer NOT NULL DEFAULT 5432,
    database varchar(255) NOT NULL,
    username varchar(255) NOT NULL,
    password_encrypted varchar(1024) NOT NULL,
    ssl_mode varchar(50),
    ssl_certificate_encrypted text,

    -- Collector authentication: no usable token here (see collector_tokens)
    jwt_token_rotated_at timestamptz,
    jwt_token_expires_at timestamptz,

    -- Configuration
    collection_interval integer NOT NULL DEFAULT 60,
    query_limit integer NOT NULL DEFAULT 100,
    enabled boolean NOT NULL DEFAULT true,
    tags text[] NOT NULL DEFAULT '{}',
    config_version integer NOT NULL DEFAULT 1,

    -- Status tracking
    status varchar(50) NOT NULL DEFAULT 'pending',
    last_heartbeat timestamptz,
    last_metric_at timestamptz,
    last_error text,
    error_count bigint NOT NULL DEFAULT 0,
    success_count bigint NOT NULL DEFAULT 0,
    metrics_collected bigint NOT NULL DEFAULT 0,
    uptime_percentage numeric(5,2) NOT NULL DEFAULT 0,
    agent_hostname varchar(255),
    agent_version varchar(100),

    -- Metadata
    registered_by uuid REFERENCES users(id),
    enrollment_secret_id uuid REFERENCES enrollment_secrets(id) ON DELETE SET NULL,
    registered_at timestamptz NOT NULL DEFAULT now(),
    last_modified_by uuid REFERENCES users(id),
    last_modified_at timestamptz,
    deleted_at timestamptz,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),

    -- Performance tracking
    avg_collection_time_ms integer,
    max_collection_time_ms integer,
    last_collection_count integer,

    CONSTRAINT valid_environment CHECK (environment IN ('development', 'staging', 'production')),
    CONSTRAINT valid_status CHECK (status IN ('pending', 'active', 'inactive', 'error')),
    CONSTRAINT valid_type CHECK (type IN ('postgresql', 'mysql', 'mongodb', 'oracle')),
    CONSTRAINT valid_port CHECK (port BETWEEN 1 AND 65535),
    CONSTRAINT valid_ssl_mode CHECK (ssl_mode IS NULL OR ssl_mode IN ('disable', 'allow', 'prefer', 'require', 'verify-ca', 'verify-full')),
    CONSTRAINT valid_collection_interval CHECK (collection_interval BETWEEN 10 AND 3600),
    CONSTRAINT valid_query_limit CHECK (query_limit BETWEEN 1 AND 10000)
);

CREATE UNIQUE INDEX collectors_name_key ON collectors (name) WHERE deleted_at IS NULL;
CREATE INDEX idx_collectors_group_id ON collectors (group_id);
CREATE INDEX idx_collectors_environment ON collectors (environment);
CREATE INDEX idx_collectors_status ON collectors (status);
CREATE INDEX idx_collectors_last_heartbeat ON collectors (last_heartbeat DESC);
CREATE INDEX idx_collectors_name ON collectors (name);
CREATE INDEX idx_collectors_tags ON collectors USING gin (tags);
CREATE INDEX idx_collectors_registered_at ON collectors (registered_at DESC);

-- Every token ever issued to a collector (registration, rotation, refresh, enrollment).
-- A token is accepted when its jti is here, not revoked and not expired.
CREATE TABLE collector_tokens (
    jti uuid PRIMARY KEY,
    collector_id uuid NOT NULL REFERENCES collectors(id) ON DELETE CASCADE,
    token_hash char(64) NOT NULL,
    issued_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL,
    revoked_at timestamptz,
    revoked_reason varchar(50),
    CONSTRAINT collector_tokens_token_hash_key UNIQUE (token_hash)
);
CREATE INDEX idx_collector_tokens_collector ON collector_tokens (collector_id);
CREATE INDEX idx_collector_tokens_revoked ON collector_tokens (revoked_at) WHERE revoked_at IS NOT NULL;

CREATE TABLE collector_dashboards (
    id serial PRIMARY KEY,
    collector_id uuid NOT NULL REFERENCES collectors(id) ON DELETE CASCADE,
    dashboard_id varchar(40) NOT NULL,
    dashboard_name varchar(255),
    assigned_at timestamptz NOT NULL DEFAULT now(),
    auto_assign boolean NOT NULL DEFAULT false,
    CONSTRAINT collector_dashboards_collector_dashboard_key UNIQUE (collector_id, dashboard_id)
);
CREATE INDEX idx_collector_dashboards_dashboard_id ON collector_dashboards (dashboard_id);

CREATE TABLE collector_audit_log (
    id bigserial PRIMARY KEY,
    collector_id uuid REFERENCES collectors(id) ON DELETE SET NULL,
    entity_type varchar(50) NOT NULL DEFAULT 'collector',
    entity_id text,
    action varchar(50) NOT NULL,
    details jsonb,
    actor_id uuid,
    actor_name varchar(255),
    ip_address inet,
    user_agent text,
    old_values jsonb,
    new_values jsonb,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX idx_collector_audit_log_collector_id ON collector_audit_log (collector_id);
CREATE INDEX idx_collector_audit_log_created_at ON collector_audit_log (created_at DESC);
CREATE INDEX idx_collector_audit_log_actor ON collector_audit_log (actor_id, created_at DESC);
CREATE INDEX idx_collector_audit_log_action ON collector_audit_log (action, created_at DESC);
