-- Server-side maintenance. The sealed password of a repository's maintenance-only key, for
-- check, forget and prune jobs (never a key that reads contents), and when each policy's
-- scheduled check and prune of its repository are due next.
ALTER TABLE repos ADD COLUMN maintenance_key TEXT;
ALTER TABLE policies ADD COLUMN next_check_ms BIGINT;
ALTER TABLE policies ADD COLUMN next_prune_ms BIGINT;
