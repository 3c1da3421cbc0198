-- The key/value table. COLLATE "C" makes ORDER BY and range scans bytewise,
-- matching the bolt backend and storage.Backend's List contract.
CREATE TABLE moonvault_kv (
    key   text COLLATE "C" PRIMARY KEY,
    value bytea NOT NULL
);
