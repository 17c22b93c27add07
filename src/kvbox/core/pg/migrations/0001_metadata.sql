-- 0001: kvbox's metadata (kvbox.core.meta.postgres): buckets, object versions with one
-- head row per key, chunk reference counts, multipart uploads, users and access keys.
-- Text that is ordered (keys, names, ids) uses the "C" collation: byte order, which for
-- UTF-8 is code point order, the order S3 lists keys in.

CREATE TABLE buckets (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name text COLLATE "C" NOT NULL UNIQUE,
    owner text NOT NULL,
    created_ns bigint NOT NULL,
    versioning text NOT NULL,
    attrs text
);
CREATE INDEX buckets_owner ON buckets (owner);

-- A bucket's object and byte counters, striped: each writing connection adds its deltas
-- to one stripe, so two gateways writing into one bucket never wait on one row.
CREATE TABLE bucket_counts (
    bucket bigint NOT NULL,
    stripe smallint NOT NULL,
    objects bigint NOT NULL,
    bytes bigint NOT NULL,
    PRIMARY KEY (bucket, stripe)
);

-- Version order: taken after the key's head row is locked, so a key's versions get
-- their numbers in commit order whichever gateway writes them.
CREATE SEQUENCE version_seq AS bigint;

CREATE TABLE versions (
    bucket bigint NOT NULL,
    key text COLLATE "C" NOT NULL,
    seq bigint NOT NULL,
    version_id text COLLATE "C" NOT NULL,
    is_null boolean NOT NULL,
    is_dm boolean NOT NULL,
    size bigint NOT NULL,
    etag text NOT NULL,
    mtime_ns bigint NOT NULL,
    inline bytea,
    chunks bytea,
    content_type text,
    attrs text,
    PRIMARY KEY (bucket, key, seq)
);
CREATE UNIQUE INDEX versions_null ON versions (bucket, key) WHERE is_null;
CREATE UNIQUE INDEX versions_id ON versions (bucket, key, version_id) WHERE NOT is_null;

-- One row per key that has a version: its newest one. The row is also the key's lock
-- (SELECT ... FOR UPDATE), and the listing is a range scan of heads_live.
CREATE TABLE heads (
    bucket bigint NOT NULL,
    key text COLLATE "C" NOT NULL,
    seq bigint NOT NULL,
    is_dm boolean NOT NULL,
    PRIMARY KEY (bucket, key)
);
CREATE INDEX heads_live ON heads (bucket, key) INCLUDE (seq) WHERE NOT is_dm;

CREATE TABLE chunks (
    chunk_id bytea PRIMARY KEY,
    size bigint NOT NULL,
    refs bigint NOT NULL
);

CREATE TABLE uploads (
    upload_id text COLLATE "C" PRIMARY KEY,
    bucket bigint NOT NULL,
    key text COLLATE "C" NOT NULL,
    initiated_ns bigint NOT NULL,
    content_type text NOT NULL,
    attrs text
);
CREATE INDEX uploads_key ON uploads (bucket, key, upload_id);

CREATE TABLE parts (
    upload_id text COLLATE "C" NOT NULL,
    part_number integer NOT NULL,
    etag text NOT NULL,
    size bigint NOT NULL,
    chunks bytea,
    mtime_ns bigint NOT NULL,
    attrs text,
    PRIMARY KEY (upload_id, part_number)
);

CREATE TABLE users (
    name text COLLATE "C" PRIMARY KEY,
    created_ns bigint NOT NULL,
    disabled boolean NOT NULL DEFAULT false
);

CREATE TABLE access_keys (
    access_key text COLLATE "C" PRIMARY KEY,
    secret_key text NOT NULL,
    "user" text COLLATE "C" NOT NULL,
    created_ns bigint NOT NULL,
    disabled boolean NOT NULL DEFAULT false
);
CREATE INDEX access_keys_user ON access_keys ("user", created_ns, access_key);

-- The journal LSN applied (MetaStore.journal_lsn).
CREATE TABLE journal (
    id smallint PRIMARY KEY CHECK (id = 0),
    lsn bigint NOT NULL
);
INSERT INTO journal (id, lsn) VALUES (0, 0);
