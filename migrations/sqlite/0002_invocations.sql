-- Invocation records: one row per finished invocation, written in batches by
-- the record pipeline and pruned by retention (newest N per script, nothing
-- older than D days, nothing of a deleted script).
--
-- `started_at_us` is unix MICROseconds (UTC), so records of one busy second
-- still sort newest first; `(started_at_us, id)` is the paging cursor. There
-- is no foreign key to `scripts`: a batch must never fail because a script
-- was deleted while its last records were in flight; retention removes
-- orphans instead. Counters are BIGINT and clamped to its range on write.

CREATE TABLE invocations (
    id                 TEXT    NOT NULL PRIMARY KEY CHECK (length(id) = 36),
    script_id          TEXT    NOT NULL CHECK (length(script_id) = 36),
    script_version     INTEGER NOT NULL,
    route              TEXT,
    method             TEXT    NOT NULL,
    path               TEXT    NOT NULL,
    started_at_us      INTEGER NOT NULL,
    status             INTEGER NOT NULL,
    outcome            TEXT    NOT NULL,
    error              TEXT,
    queue_wait_us      INTEGER NOT NULL,
    wall_us            INTEGER NOT NULL,
    cpu_us             INTEGER NOT NULL,
    operations         INTEGER NOT NULL,
    peak_heap_bytes    INTEGER NOT NULL,
    response_bytes     INTEGER NOT NULL,
    log_bytes          INTEGER NOT NULL,
    worker_pid         INTEGER,
    worker_invocations INTEGER NOT NULL,
    cache_hit          INTEGER NOT NULL CHECK (cache_hit IN (0, 1)),
    -- The captured lines as a JSON array of strings.
    logs               TEXT    NOT NULL DEFAULT '[]',
    log_lines          INTEGER NOT NULL,
    logs_truncated     INTEGER NOT NULL CHECK (logs_truncated IN (0, 1)),
    logs_shed          INTEGER NOT NULL,
    client_addr        TEXT
) STRICT;

-- Paging a script's records newest first, and per-script retention.
CREATE INDEX invocations_by_script ON invocations (script_id, started_at_us DESC, id DESC);
-- Age-based retention.
CREATE INDEX invocations_by_age ON invocations (started_at_us);
