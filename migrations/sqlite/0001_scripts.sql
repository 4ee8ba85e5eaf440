-- Scripts, their immutable version history, and server settings.
--
-- Timestamps are unix milliseconds (UTC) in both backends, so the same row
-- decodes the same way everywhere. `scripts.version` is the current version;
-- every save (and, later, a rollback) appends version + 1 to `script_versions`
-- in the same transaction, so history is linear and never rewritten.
-- Routes and invocation records get their own tables in later migrations.

CREATE TABLE scripts (
    id         TEXT    NOT NULL PRIMARY KEY CHECK (length(id) = 36),
    name       TEXT    NOT NULL UNIQUE,
    version    INTEGER NOT NULL CHECK (version >= 1),
    -- JSON text of the script's own limit overrides (unset = operator default).
    limits     TEXT    NOT NULL DEFAULT '{}',
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
) STRICT;

CREATE TABLE script_versions (
    script_id    TEXT    NOT NULL REFERENCES scripts (id) ON DELETE CASCADE,
    version      INTEGER NOT NULL CHECK (version >= 1),
    source       TEXT    NOT NULL,
    -- SHA-256 of the source, lower-case hex.
    content_hash TEXT    NOT NULL CHECK (length(content_hash) = 64),
    limits       TEXT    NOT NULL DEFAULT '{}',
    created_at   INTEGER NOT NULL,
    PRIMARY KEY (script_id, version)
) STRICT;

-- A version, once written, is history: it may be deleted with its script but never changed.
CREATE TRIGGER script_versions_are_immutable
BEFORE UPDATE ON script_versions
BEGIN
    SELECT RAISE(ABORT, 'script versions are immutable');
END;

CREATE TABLE settings (
    key   TEXT NOT NULL PRIMARY KEY,
    value TEXT NOT NULL
) STRICT;
