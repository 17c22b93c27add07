-- 0003: each inline value's CRC-32C (kvbox.core.integrity), stored with its version as in
-- SQLite's schema 6: the Store checks every inline value read back against it. NULL for a
-- version without an inline value. Rows written before this migration have none: their
-- values are checked from the next write of the key on.
ALTER TABLE versions ADD COLUMN crc bigint;
