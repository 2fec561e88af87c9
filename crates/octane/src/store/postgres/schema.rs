//! The PostgreSQL schema, as an ordered list of migrations.
//!
//! Never edit a migration that has shipped: append a new one. The SQL is
//! kept to what Postgres-compatible distributed databases also accept
//! (no triggers, no stored procedures); `LISTEN/NOTIFY` is an optimisation
//! the engine does without.
//!
//! Locations are stored as the order-preserving bytes of
//! `Location::encode`; `bytea` compares bytewise, so `ORDER BY location` is
//! history order and a loop's iterations form one contiguous key range.

/// `(version, SQL)` pairs, applied in order by [`super::migrate`].
pub(super) const MIGRATIONS: &[(i64, &str)] = &[
    (
        1,
        r#"
CREATE TABLE workflows (
    id            TEXT PRIMARY KEY,
    name          TEXT NOT NULL,
    input         TEXT NOT NULL,
    tags          TEXT NOT NULL DEFAULT '{}',
    state         TEXT NOT NULL,
    output        TEXT,
    error         TEXT,
    error_code    TEXT,
    wake_at       BIGINT,
    lease_owner   TEXT,
    lease_epoch   BIGINT NOT NULL DEFAULT 0,
    lease_expires BIGINT,
    created_at    BIGINT NOT NULL,
    updated_at    BIGINT NOT NULL,
    listening     TEXT,
    waiting_child TEXT,
    parent_id     TEXT
);
CREATE INDEX workflows_runnable ON workflows (wake_at)
    WHERE state IN ('pending', 'running', 'sleeping');
CREATE INDEX workflows_by_name ON workflows (name, created_at);
CREATE INDEX workflows_by_waiting_child ON workflows (waiting_child)
    WHERE waiting_child IS NOT NULL;

CREATE TABLE workflow_tags (
    workflow_id TEXT NOT NULL REFERENCES workflows (id) ON DELETE CASCADE,
    key         TEXT NOT NULL,
    value       TEXT NOT NULL,
    PRIMARY KEY (key, value, workflow_id)
);

CREATE TABLE events (
    workflow_id TEXT    NOT NULL,
    location    BYTEA   NOT NULL,
    version     INTEGER NOT NULL,
    kind        INTEGER NOT NULL,
    name        TEXT    NOT NULL,
    input_hash  BIGINT  NOT NULL,
    data        TEXT,
    error       TEXT,
    attempts    INTEGER NOT NULL DEFAULT 0,
    iteration   BIGINT  NOT NULL DEFAULT 0,
    done        BOOLEAN NOT NULL DEFAULT FALSE,
    PRIMARY KEY (workflow_id, location)
);
CREATE INDEX events_loops ON events (workflow_id) WHERE kind = 4;

CREATE TABLE signals (
    seq         BIGSERIAL PRIMARY KEY,
    workflow_id TEXT   NOT NULL,
    name        TEXT   NOT NULL,
    body        TEXT   NOT NULL,
    created_at  BIGINT NOT NULL
);
CREATE INDEX signals_by_workflow ON signals (workflow_id, name, seq);
"#,
    ),
    (
        2,
        r#"
-- When each event was last written (ms since the epoch), for operators.
ALTER TABLE events ADD COLUMN recorded_at BIGINT NOT NULL DEFAULT 0;

-- Pruning finds finished workflows by age and deletes by workflow.
CREATE INDEX workflows_finished ON workflows (updated_at)
    WHERE state IN ('completed', 'failed', 'cancelled');
CREATE INDEX workflow_tags_by_workflow ON workflow_tags (workflow_id);
"#,
    ),
    (
        3,
        r#"
-- Workers alive now (each also holds a session advisory lock while it
-- lives): whose leases may be ended at once when the lock is free.
CREATE TABLE workers (
    id         TEXT PRIMARY KEY,
    host       TEXT   NOT NULL,
    pid        BIGINT NOT NULL,
    started_at BIGINT NOT NULL
);
"#,
    ),
    (
        4,
        r#"
-- Claims and the next-wake query look up runnable workflows by name: keyed
-- by name first, the index holds only what can run, however many finished
-- workflows share the name.
DROP INDEX workflows_runnable;
CREATE INDEX workflows_runnable ON workflows (name, wake_at)
    WHERE state IN ('pending', 'running', 'sleeping');
"#,
    ),
    (
        5,
        r#"
-- Idempotent start: at most one unfinished workflow of a name holds a
-- dispatch key; the newest of any state is found by the second index.
ALTER TABLE workflows ADD COLUMN dispatch_key TEXT;
CREATE UNIQUE INDEX workflows_by_key ON workflows (name, dispatch_key)
    WHERE dispatch_key IS NOT NULL AND state NOT IN ('completed', 'failed', 'cancelled');
CREATE INDEX workflows_keyed ON workflows (name, dispatch_key, created_at)
    WHERE dispatch_key IS NOT NULL;
"#,
    ),
    (
        6,
        r#"
-- Listing newest first, a page after a cursor: a range of this index.
CREATE INDEX workflows_by_created ON workflows (created_at, id);

-- Deadlines: when an unfinished workflow is cancelled for running too long.
ALTER TABLE workflows ADD COLUMN deadline_at BIGINT;
CREATE INDEX workflows_deadlines ON workflows (deadline_at)
    WHERE deadline_at IS NOT NULL AND state NOT IN ('completed', 'failed', 'cancelled');
"#,
    ),
    (
        7,
        r#"
-- Schedules: a workflow started at each tick of a cron expression. A tick
-- is fired by moving `next_at` on from exactly the tick, so one worker
-- fires it however many look at once.
CREATE TABLE schedules (
    name          TEXT PRIMARY KEY,
    workflow      TEXT    NOT NULL,
    input         TEXT    NOT NULL,
    cron          TEXT    NOT NULL,
    timezone      TEXT    NOT NULL,
    next_at       BIGINT  NOT NULL,
    paused        BOOLEAN NOT NULL DEFAULT FALSE,
    last_fired_at BIGINT,
    created_at    BIGINT  NOT NULL
);
CREATE INDEX schedules_due ON schedules (next_at);
"#,
    ),
    (
        8,
        r#"
-- A wake-up first reads a workflow's loop events. Covering what that read
-- needs, the index is read alone, and the planner does not take the
-- primary key instead, which walks every event of the workflow (and,
-- after a loop forgot many iterations, their dead entries until vacuum).
DROP INDEX events_loops;
CREATE INDEX events_loops ON events (workflow_id, location) INCLUDE (iteration, done)
    WHERE kind = 4;
"#,
    ),
    (
        9,
        r#"
-- Where a loop's last deletion of old iterations stopped: the next one
-- starts there, and does not walk the dead index entries of the rows the
-- earlier ones deleted (they stay until vacuum).
ALTER TABLE events ADD COLUMN deleted_below BIGINT NOT NULL DEFAULT 0;
"#,
    ),
    (
        10,
        r#"
-- Each worker looks for dead workers' leases twice a second, and ends
-- them when it finds one: by owner and lease end in this index, which
-- holds only the workflows running now, however many have finished.
-- (Claims and renewals already change indexed columns: `wake_at`.)
CREATE INDEX workflows_leased ON workflows (lease_owner, lease_expires)
    WHERE state = 'running';
"#,
    ),
];
