-- Inputs of a job beyond its kind and repository (a restore's snapshot and target), as JSON.
ALTER TABLE jobs ADD COLUMN params TEXT;
-- At most one pending job per policy backup, and per repository and kind for server-side jobs,
-- however many replicas queue at once.
CREATE UNIQUE INDEX jobs_one_pending_backup ON jobs (policy) WHERE kind = 'backup' AND state IN ('queued', 'running');
CREATE UNIQUE INDEX jobs_one_pending_server_job ON jobs (tenant, repo, kind) WHERE agent IS NULL AND state IN ('queued', 'running');
