-- Plain PostgreSQL storage: a BRIN index keeps time-range scans cheap on the append-mostly tables.
CREATE INDEX readings_ts_brin ON readings USING brin (ts);
CREATE INDEX intervals_15m_bucket_brin ON intervals_15m USING brin (bucket);
