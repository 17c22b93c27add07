-- 0006: per-bucket replication (kvbox.cluster.store, "Per-bucket R"). A chunk's wanted
-- copies: the highest R of the buckets whose versions or parts reference it. Raised by
-- every write of the chunk (GREATEST with the writer's R), recomputed exactly when a
-- bucket's R changes (kvbox admin bucket replicas); the repair worker makes each chunk
-- that many copies. NULL (chunks written before this migration): the R of the process
-- that asks (kvbox serve --replicas).

ALTER TABLE blob_chunks ADD COLUMN replicas smallint CHECK (replicas > 0);
