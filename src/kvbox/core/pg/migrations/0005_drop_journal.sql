-- 0005: the single `journal` row goes. It held the GW-KV journal's applied LSN
-- (MetaStore.journal_lsn), but a journal is a file on one gateway's disk with LSNs of its
-- own: with several gateways on one database, one row would hold the highest LSN of
-- whichever wrote last, and a gateway restarting after a crash would skip replaying its
-- own records below it (acknowledged writes lost). With --meta no journal runs at all
-- (a write is acknowledged after its COMMIT), so there is nothing per gateway to keep,
-- and PostgresMetaStore refuses journal LSNs outright rather than store them anywhere.
DROP TABLE journal;
