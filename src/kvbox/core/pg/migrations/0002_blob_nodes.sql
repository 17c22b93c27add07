-- 0002: the blob cluster (kvbox.cluster): blob nodes, the chunks written to them and
-- where each chunk's replicas are. Node ids and chunk ids compare in byte order.

-- One row per blob node that ever registered (kvbox blobnode). Its health is the age of
-- heartbeat_at measured by this server's clock (now()), so no two machines' clocks are
-- ever compared; state is what an operator decided (kvbox admin cluster drain/remove).
CREATE TABLE blob_nodes (
    node_id text COLLATE "C" PRIMARY KEY,
    address text NOT NULL,
    state text NOT NULL DEFAULT 'active' CHECK (state IN ('active', 'draining', 'removed')),
    started_at timestamptz NOT NULL DEFAULT now(),
    heartbeat_at timestamptz NOT NULL DEFAULT now(),
    chunks bigint NOT NULL DEFAULT 0,
    bytes bigint NOT NULL DEFAULT 0,
    free_bytes bigint NOT NULL DEFAULT 0
);

-- One row per chunk the cluster holds. written_at is refreshed BEFORE every write of the
-- chunk's bytes to any node: the garbage collector deletes only chunks unreferenced and
-- written longer ago than its safety delay, so a write in flight on any gateway is never
-- collected under it.
CREATE TABLE blob_chunks (
    chunk_id bytea PRIMARY KEY,
    size bigint NOT NULL,
    written_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX blob_chunks_written ON blob_chunks (written_at);

-- Where a chunk's replicas are: a row is written after the node fsynced the bytes and
-- removed before (or when) they are deleted, so repair and reads query it directly.
CREATE TABLE chunk_replicas (
    chunk_id bytea NOT NULL,
    node_id text COLLATE "C" NOT NULL,
    PRIMARY KEY (chunk_id, node_id)
);
CREATE INDEX chunk_replicas_node ON chunk_replicas (node_id, chunk_id);
