-- The catalogue of the zaibei server (SQLite). Integers are 64-bit; times are Unix ms.
CREATE TABLE tenants (
    name TEXT PRIMARY KEY,
    quota_bytes INTEGER,
    created_ms INTEGER NOT NULL
);
CREATE TABLE users (
    name TEXT PRIMARY KEY,
    role TEXT NOT NULL,
    tenant TEXT REFERENCES tenants(name),
    password_hash TEXT NOT NULL,
    disabled INTEGER NOT NULL DEFAULT 0,
    failed_logins INTEGER NOT NULL DEFAULT 0,
    locked_until_ms INTEGER,
    totp_secret TEXT,
    totp_pending TEXT,
    totp_last_step INTEGER,
    created_ms INTEGER NOT NULL
);
CREATE TABLE tokens (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    name TEXT NOT NULL,
    user_name TEXT,
    agent TEXT,
    tenant TEXT,
    secret_hash TEXT NOT NULL,
    privileges TEXT,
    repo TEXT,
    expires_ms INTEGER NOT NULL,
    revoked INTEGER NOT NULL DEFAULT 0,
    used INTEGER NOT NULL DEFAULT 0,
    created_ms INTEGER NOT NULL,
    last_used_ms INTEGER
);
CREATE INDEX tokens_user ON tokens(user_name);
CREATE TABLE settings (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE repos (
    tenant TEXT NOT NULL REFERENCES tenants(name),
    name TEXT NOT NULL,
    used_bytes INTEGER NOT NULL DEFAULT 0,
    objects INTEGER NOT NULL DEFAULT 0,
    created_ms INTEGER NOT NULL,
    PRIMARY KEY (tenant, name)
);
CREATE TABLE agents (
    id TEXT PRIMARY KEY,
    tenant TEXT NOT NULL REFERENCES tenants(name),
    hostname TEXT NOT NULL,
    registered_ms INTEGER NOT NULL,
    last_seen_ms INTEGER
);
CREATE TABLE policies (
    id TEXT PRIMARY KEY,
    tenant TEXT NOT NULL REFERENCES tenants(name),
    name TEXT NOT NULL,
    spec TEXT NOT NULL,
    agent TEXT NOT NULL,
    next_run_ms INTEGER,
    UNIQUE (tenant, name)
);
CREATE TABLE jobs (
    id TEXT PRIMARY KEY,
    tenant TEXT NOT NULL REFERENCES tenants(name),
    kind TEXT NOT NULL,
    state TEXT NOT NULL,
    policy TEXT,
    repo TEXT NOT NULL,
    agent TEXT,
    runner TEXT,
    queued_ms INTEGER NOT NULL,
    started_ms INTEGER,
    heartbeat_ms INTEGER,
    finished_ms INTEGER,
    progress TEXT,
    snapshot TEXT,
    error TEXT,
    summary TEXT
);
CREATE INDEX jobs_queue ON jobs(state, agent, queued_ms);
CREATE INDEX jobs_tenant ON jobs(tenant, queued_ms);
CREATE TABLE audit_log (
    seq INTEGER PRIMARY KEY,
    record TEXT NOT NULL,
    time_ms INTEGER NOT NULL,
    tenant TEXT,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    outcome TEXT NOT NULL
);
CREATE INDEX audit_time ON audit_log(time_ms);
CREATE TABLE audit_head (
    id INTEGER PRIMARY KEY,
    seq INTEGER NOT NULL,
    hash TEXT NOT NULL,
    checkpoint_seq INTEGER NOT NULL,
    checkpoint_ms INTEGER NOT NULL
);
INSERT INTO audit_head (id, seq, hash, checkpoint_seq, checkpoint_ms) VALUES (1, 0, '', 0, 0);
