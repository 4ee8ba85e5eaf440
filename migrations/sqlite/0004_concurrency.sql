-- A script's own cap on invocations running at once (NULL: the pool's
-- default, half the workers). Like the route, it belongs to the script,
-- not to a version.
ALTER TABLE scripts ADD COLUMN concurrency INTEGER;
