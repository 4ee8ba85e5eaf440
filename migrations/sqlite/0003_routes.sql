-- Custom routes and CORS origins belong to the script (not to a version):
-- a rollback restores content, not where the script is mounted.
-- `restored_from` marks a version written by a rollback with the version
-- whose content it restored.
ALTER TABLE scripts ADD COLUMN route_method TEXT;
ALTER TABLE scripts ADD COLUMN route_path TEXT;
ALTER TABLE scripts ADD COLUMN cors_origins TEXT NOT NULL DEFAULT '[]';
ALTER TABLE script_versions ADD COLUMN restored_from INTEGER;
