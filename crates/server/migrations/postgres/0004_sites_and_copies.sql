-- Repositories on further storage sites, and when each policy's scheduled copy is due.
ALTER TABLE repos ADD COLUMN site TEXT;
ALTER TABLE policies ADD COLUMN next_copy_ms BIGINT;
