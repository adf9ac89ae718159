-- TimescaleDB storage policies and rollups (written for TimescaleDB >= 2.14).
--
-- readings: one-day chunks (a province's day of readings stays in memory), compressed per point
-- after 30 days, so a gateway draining a week or a month of buffer writes into uncompressed
-- chunks; older late data still lands (insert into compressed chunks) and the collector checks
-- for duplicates before inserting there. Raw readings are dropped after 3 years.
SELECT set_chunk_time_interval('readings', INTERVAL '1 day');
ALTER TABLE readings SET (
    timescaledb.compress,
    timescaledb.compress_segmentby = 'point_id',
    timescaledb.compress_orderby = 'ts'
);
SELECT add_compression_policy('readings', compress_after => INTERVAL '30 days');
SELECT add_retention_policy('readings', drop_after => INTERVAL '3 years');

ALTER TABLE intervals_15m SET (
    timescaledb.compress,
    timescaledb.compress_segmentby = 'point_id',
    timescaledb.compress_orderby = 'bucket'
);
SELECT add_compression_policy('intervals_15m', compress_after => INTERVAL '60 days');
SELECT add_retention_policy('intervals_15m', drop_after => INTERVAL '3 years');

-- Continuous aggregates with the same names and columns as the plain-PostgreSQL tables.
-- Counter differences (rollover, backwards steps, gaps) are computed by the accounting core
-- into intervals_15m, the 15-minute level; hours sum it, Beijing days sum hours and Beijing
-- months sum days (hierarchical, so the open month is cheap to read in real time).
CREATE MATERIALIZED VIEW energy_1h WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
SELECT point_id,
       time_bucket(INTERVAL '1 hour', bucket) AS bucket,
       sum(quantity) AS quantity,
       bit_or(flags) AS flags,
       count(*)::integer AS intervals,
       sum(coverage::double precision) AS coverage
FROM intervals_15m
GROUP BY 1, 2
WITH NO DATA;

CREATE MATERIALIZED VIEW energy_1d WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
SELECT point_id,
       time_bucket(INTERVAL '1 day', bucket, 'Asia/Shanghai') AS bucket,
       sum(quantity) AS quantity,
       bit_or(flags) AS flags,
       sum(intervals)::integer AS intervals,
       sum(coverage) AS coverage
FROM energy_1h
GROUP BY 1, 2
WITH NO DATA;

CREATE MATERIALIZED VIEW energy_1mon WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
SELECT point_id,
       time_bucket(INTERVAL '1 month', bucket, 'Asia/Shanghai') AS bucket,
       sum(quantity) AS quantity,
       bit_or(flags) AS flags,
       sum(intervals)::integer AS intervals,
       sum(coverage) AS coverage
FROM energy_1d
GROUP BY 1, 2
WITH NO DATA;

-- Refresh windows reach 200 days back, past the edge agent's six-month buffer, so late data
-- is folded in by the next run; open buckets are served in real time from the level below.
SELECT add_continuous_aggregate_policy('energy_1h',
    start_offset => INTERVAL '200 days', end_offset => INTERVAL '1 hour', schedule_interval => INTERVAL '5 minutes');
SELECT add_continuous_aggregate_policy('energy_1d',
    start_offset => INTERVAL '200 days', end_offset => INTERVAL '1 hour', schedule_interval => INTERVAL '15 minutes');
SELECT add_continuous_aggregate_policy('energy_1mon',
    start_offset => INTERVAL '200 days', end_offset => INTERVAL '1 hour', schedule_interval => INTERVAL '1 hour');
