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
    id                 UUID    NOT NULL PRIMARY KEY,
    script_id          UUID    NOT NULL,
    script_version     BIGINT  NOT NULL,
    route              TEXT,
    method             TEXT    NOT NULL,
    path               TEXT    NOT NULL,
    started_at_us      BIGINT  NOT NULL,
    status             BIGINT  NOT NULL,
    outcome            TEXT    NOT NULL,
    error              TEXT,
    queue_wait_us      BIGINT  NOT NULL,
    wall_us            BIGINT  NOT NULL,
    cpu_us             BIGINT  NOT NULL,
    operations         BIGINT  NOT NULL,
    peak_heap_bytes    BIGINT  NOT NULL,
    response_bytes     BIGINT  NOT NULL,
    log_bytes          BIGINT  NOT NULL,
    worker_pid         BIGINT,
    worker_invocations BIGINT  NOT NULL,
    cache_hit          BOOLEAN NOT NULL,
    -- The captured lines as a JSON array of strings.
    logs               TEXT    NOT NULL DEFAULT '[]',
    log_lines          BIGINT  NOT NULL,
    logs_truncated     BOOLEAN NOT NULL,
    logs_shed          BIGINT  NOT NULL,
    client_addr        TEXT
);

-- Paging a script's records newest first, and per-script retention.
CREATE INDEX invocations_by_script ON invocations (script_id, started_at_us DESC, id DESC);
-- Age-based retention.
CREATE INDEX invocations_by_age ON invocations (started_at_us);
