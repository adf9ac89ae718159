-- TimescaleDB storage: readings and intervals become hypertables partitioned by time.
-- The primary keys already include the time column, as hypertables require.
CREATE EXTENSION IF NOT EXISTS timescaledb;
SELECT create_hypertable('readings', by_range('ts', INTERVAL '7 days'), migrate_data => true);
SELECT create_hypertable('intervals_15m', by_range('bucket', INTERVAL '30 days'), migrate_data => true);
