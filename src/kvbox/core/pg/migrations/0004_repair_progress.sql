-- 0004: the blob cluster's repair worker reports its last pass here (kvbox.cluster.repair),
-- so `kvbox admin cluster status` shows repair progress from any machine, whichever
-- gateway's worker holds the repair lock. One row, rewritten at the end of every pass.

CREATE TABLE repair_progress (
    id smallint PRIMARY KEY CHECK (id = 1),
    worker text NOT NULL,
    started_at timestamptz NOT NULL,
    finished_at timestamptz NOT NULL,
    backlog bigint NOT NULL,
    copied bigint NOT NULL,
    dropped bigint NOT NULL,
    collected bigint NOT NULL,
    orphans bigint NOT NULL,
    scrubbed bigint NOT NULL,
    failed bigint NOT NULL
);
