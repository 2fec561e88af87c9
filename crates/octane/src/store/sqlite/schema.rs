//! The SQLite schema, as an ordered list of migrations.
//!
//! Never edit a migration that has shipped: append a new one.
//!
//! Locations are stored as the order-preserving bytes of
//! `Location::encode`, so `ORDER BY location` is history order and the
//! iterations of a loop form one contiguous key range.

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
    wake_at       INTEGER,
    lease_owner   TEXT,
    lease_epoch   INTEGER NOT NULL DEFAULT 0,
    lease_expires INTEGER,
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL
);
CREATE INDEX workflows_runnable ON workflows (wake_at)
    WHERE state IN ('pending', 'running', 'sleeping');
CREATE INDEX workflows_by_name ON workflows (name, created_at);

CREATE TABLE workflow_tags (
    workflow_id TEXT NOT NULL REFERENCES workflows (id) ON DELETE CASCADE,
    key         TEXT NOT NULL,
    value       TEXT NOT NULL,
    PRIMARY KEY (key, value, workflow_id)
) WITHOUT ROWID;

CREATE TABLE events (
    workflow_id TEXT    NOT NULL,
    location    BLOB    NOT NULL,
    version     INTEGER NOT NULL,
    kind        INTEGER NOT NULL,
    name        TEXT    NOT NULL,
    input_hash  INTEGER NOT NULL,
    data        TEXT,
    error       TEXT,
    attempts    INTEGER NOT NULL DEFAULT 0,
    iteration   INTEGER NOT NULL DEFAULT 0,
    done        INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (workflow_id, location)
) WITHOUT ROWID;
CREATE INDEX events_loops ON events (workflow_id) WHERE kind = 4;
"#,
    ),
    (
        2,
        r#"
-- While suspended: the signal names (a JSON array) and the child it waits for.
ALTER TABLE workflows ADD COLUMN listening TEXT;
ALTER TABLE workflows ADD COLUMN waiting_child TEXT;
ALTER TABLE workflows ADD COLUMN parent_id TEXT;

CREATE TABLE signals (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    workflow_id TEXT    NOT NULL,
    name        TEXT    NOT NULL,
    body        TEXT    NOT NULL,
    created_at  INTEGER NOT NULL
);
CREATE INDEX signals_by_workflow ON signals (workflow_id, name, seq);
"#,
    ),
    (
        3,
        r#"
-- When each event was last written (ms since the epoch), for operators.
ALTER TABLE events ADD COLUMN recorded_at INTEGER NOT NULL DEFAULT 0;

-- Pruning finds finished workflows by age and deletes by workflow.
CREATE INDEX workflows_finished ON workflows (updated_at)
    WHERE state IN ('completed', 'failed', 'cancelled');
CREATE INDEX workflow_tags_by_workflow ON workflow_tags (workflow_id);
"#,
    ),
    (
        4,
        r#"
-- Workers alive now (each also holds a lock file while it lives): whose
-- leases may be ended at once when the lock is free.
CREATE TABLE workers (
    id         TEXT PRIMARY KEY,
    host       TEXT    NOT NULL,
    pid        INTEGER NOT NULL,
    started_at INTEGER NOT NULL
);
"#,
    ),
    (
        5,
        r#"
-- Claims and the next-wake query look up runnable workflows by name: keyed
-- by name first, the index holds only what can run, however many finished
-- workflows share the name.
DROP INDEX workflows_runnable;
CREATE INDEX workflows_runnable ON workflows (name, wake_at)
    WHERE state IN ('pending', 'running', 'sleeping');

-- A wake-up first reads a workflow's loop events. Covering what that read
-- needs, the index wins over the primary key, which would walk every event
-- of the workflow.
DROP INDEX events_loops;
CREATE INDEX events_loops ON events (workflow_id, iteration, done) WHERE kind = 4;
"#,
    ),
    (
        6,
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
        7,
        r#"
-- Listing newest first, a page after a cursor: a range of this index.
CREATE INDEX workflows_by_created ON workflows (created_at, id);

-- Deadlines: when an unfinished workflow is cancelled for running too long.
ALTER TABLE workflows ADD COLUMN deadline_at INTEGER;
CREATE INDEX workflows_deadlines ON workflows (deadline_at)
    WHERE deadline_at IS NOT NULL AND state NOT IN ('completed', 'failed', 'cancelled');
"#,
    ),
    (
        8,
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
    next_at       INTEGER  NOT NULL,
    paused        INTEGER NOT NULL DEFAULT 0,
    last_fired_at INTEGER,
    created_at    INTEGER  NOT NULL
);
CREATE INDEX schedules_due ON schedules (next_at);
"#,
    ),
    (
        9,
        r#"
-- A workflow that finishes wakes every workflow waiting on it (a keyed
-- child may have waiters besides its parent), found by this index.
CREATE INDEX workflows_by_waiting_child ON workflows (waiting_child)
    WHERE waiting_child IS NOT NULL;
"#,
    ),
    (
        10,
        r#"
-- Where a loop's last deletion of old iterations stopped: the next one
-- starts there.
ALTER TABLE events ADD COLUMN deleted_below INTEGER NOT NULL DEFAULT 0;
"#,
    ),
    (
        11,
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
