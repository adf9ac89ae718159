-- Plain PostgreSQL rollups: energy per point per hour, Beijing-time day and Beijing-time month,
-- as tables with the same names and columns as the TimescaleDB continuous aggregates. The
-- interval builder rewrites the affected rows in the same transaction as the 15-minute
-- intervals they sum (hour from intervals_15m, day from hours, month from days), so they are
-- never stale and late data lands in them at once.

CREATE TABLE energy_1h (
    point_id    integer NOT NULL,
    bucket      timestamptz NOT NULL,          -- start of the hour
    quantity    double precision NOT NULL,     -- sum of the 15-minute quantities, in the point's unit
    flags       integer NOT NULL,              -- OR of the 15-minute flags
    intervals   integer NOT NULL,              -- 15-minute intervals present
    coverage    double precision NOT NULL,     -- sum of their coverage, in 15-minute units (4 = a full hour)
    PRIMARY KEY (point_id, bucket)
);
CREATE TABLE energy_1d (LIKE energy_1h INCLUDING ALL);     -- bucket: 00:00 Asia/Shanghai
CREATE TABLE energy_1mon (LIKE energy_1h INCLUDING ALL);   -- bucket: 00:00 Asia/Shanghai on the 1st
