-- Scripts, their immutable version history, and server settings.
--
-- Timestamps are unix milliseconds (UTC) in both backends, so the same row
-- decodes the same way everywhere. `scripts.version` is the current version;
-- every save (and, later, a rollback) appends version + 1 to `script_versions`
-- in the same transaction, so history is linear and never rewritten.
-- Routes and invocation records get their own tables in later migrations.

CREATE TABLE scripts (
    id         UUID   NOT NULL PRIMARY KEY,
    -- Byte order, as in SQLite, so uniqueness and listing order agree across backends.
    name       TEXT   COLLATE "C" NOT NULL UNIQUE,
    version    BIGINT NOT NULL CHECK (version >= 1),
    -- JSON text of the script's own limit overrides (unset = operator default).
    limits     TEXT   NOT NULL DEFAULT '{}',
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

CREATE TABLE script_versions (
    script_id    UUID   NOT NULL REFERENCES scripts (id) ON DELETE CASCADE,
    version      BIGINT NOT NULL CHECK (version >= 1),
    source       TEXT   NOT NULL,
    -- SHA-256 of the source, lower-case hex.
    content_hash TEXT   NOT NULL CHECK (length(content_hash) = 64),
    limits       TEXT   NOT NULL DEFAULT '{}',
    created_at   BIGINT NOT NULL,
    PRIMARY KEY (script_id, version)
);

-- A version, once written, is history: it may be deleted with its script but never changed.
CREATE FUNCTION forbid_script_version_update() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'script versions are immutable';
END;
$$;

CREATE TRIGGER script_versions_are_immutable
BEFORE UPDATE ON script_versions
FOR EACH ROW EXECUTE FUNCTION forbid_script_version_update();

CREATE TABLE settings (
    key   TEXT NOT NULL PRIMARY KEY,
    value TEXT NOT NULL
);
