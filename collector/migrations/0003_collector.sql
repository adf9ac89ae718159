-- Collector bookkeeping, the same on plain PostgreSQL and TimescaleDB (needs PostgreSQL >= 14):
-- the interval builder's dirty-span queue, 15-minute completeness per point, idempotent dead
-- letters and the time each point was registered (from when its values are expected).

ALTER TABLE points ADD COLUMN registered_at timestamptz NOT NULL DEFAULT now();

-- A redelivered bad message must not add a second row: digest = sha256(topic || payload).
ALTER TABLE dead_letters ADD COLUMN digest bytea;
UPDATE dead_letters SET digest = sha256(convert_to(topic, 'UTF8') || payload);
ALTER TABLE dead_letters ALTER COLUMN digest SET NOT NULL;
CREATE UNIQUE INDEX dead_letters_digest ON dead_letters (digest);
CREATE INDEX dead_letters_reason ON dead_letters (reason, received_at);

-- Counter readings committed but not yet turned into 15-minute intervals: per committed batch,
-- one row with, for each counter it touched, the earliest and latest new reading. A row is
-- written in the same transaction as the readings it describes and deleted in the same
-- transaction as the intervals computed from them, so a crash anywhere leaves either the work
-- done or the row queued.
CREATE TABLE interval_dirty (
    id          bigserial PRIMARY KEY,
    point_ids   integer[] NOT NULL,
    lo          timestamptz[] NOT NULL,
    hi          timestamptz[] NOT NULL,
    queued_at   timestamptz NOT NULL DEFAULT now(),
    attempts    integer NOT NULL DEFAULT 0,   -- failed builds of these points so far
    not_before  timestamptz                   -- set after a failed build, so one bad point cannot stall the rest
);

-- Which 15-minute slots of a Beijing-time month hold at least one value of a point (a reading of
-- quality good or uncertain; a failed read, quality bad, is not a value).
-- bucket is 00:00 Asia/Shanghai on the first day of the month; bit i (0 = leftmost) is the slot
-- starting i * 15 minutes later (31 days * 96 slots; bits past the month's end stay 0). The
-- collector ORs bits in, so redelivery and late data are harmless and the count is exact.
CREATE TABLE completeness_1mon (
    point_id    integer NOT NULL,
    bucket      timestamptz NOT NULL,
    slots       bit(2976) NOT NULL,
    received    integer GENERATED ALWAYS AS (bit_count(slots)) STORED,
    PRIMARY KEY (point_id, bucket)
);

CREATE FUNCTION cw_slot_bit(slot integer) RETURNS bit(2976)
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
    RETURN set_bit(repeat('0', 2976)::bit(2976), slot, 1);

-- Expected and received 15-minute values per point, over [p_from, p_to) as a whole
-- (p_period NULL) or per Beijing 'day' or 'month' inside it. A slot is expected once it has
-- ended (before now()) and the point existed (registered, or its first reading if earlier);
-- it is received when it holds a value. The national rule asks received/expected >= 0.9.
CREATE FUNCTION cw_completeness(
    p_from timestamptz, p_to timestamptz, p_points integer[] DEFAULT NULL, p_period text DEFAULT NULL
) RETURNS TABLE (point_id integer, period_start timestamptz, expected integer, received integer)
LANGUAGE sql STABLE AS $$
    WITH periods AS (
        SELECT p_from AS lo, p_to AS hi
        WHERE p_period IS NULL
        UNION ALL
        SELECT greatest(g AT TIME ZONE 'Asia/Shanghai', p_from),
               least((g + ('1 ' || p_period)::interval) AT TIME ZONE 'Asia/Shanghai', p_to)
        FROM generate_series(
            date_trunc(p_period, p_from AT TIME ZONE 'Asia/Shanghai'),
            (p_to AT TIME ZONE 'Asia/Shanghai') - interval '1 microsecond',
            ('1 ' || p_period)::interval
        ) AS g
        WHERE p_period IN ('day', 'month')
    ),
    pts AS MATERIALIZED (  -- once per point, not once per period
        SELECT p.id, least(p.registered_at, coalesce(
                   (SELECT min(r.ts) FROM readings r WHERE r.point_id = p.id), p.registered_at)) AS since
        FROM points p
        WHERE p.active AND (p_points IS NULL OR p.id = ANY (p_points))
    ),
    spans AS MATERIALIZED (
        -- whole slots: from the first slot start at or after lo to the last slot end at or before hi
        SELECT row_number() OVER () AS n, x.*,
               date_trunc('month', x.a, 'Asia/Shanghai') AS first_month  -- the month holding slot a
        FROM (
            SELECT pts.id, periods.lo AS period_start,
                   date_bin('15 minutes', greatest(periods.lo, pts.since) - interval '1 microsecond',
                            timestamptz '2000-01-01 00:00+00') + interval '15 minutes' AS a,
                   date_bin('15 minutes', least(periods.hi, now()), timestamptz '2000-01-01 00:00+00') AS b
            FROM pts CROSS JOIN periods
        ) x
    ),
    counted AS (
        SELECT s.n, sum(CASE WHEN m.i = 0 AND m.j = 2976 THEN c.received  -- the whole month
                             ELSE bit_count(substring(c.slots FROM m.i + 1 FOR m.j - m.i))::integer END) AS received
        FROM spans s
        JOIN completeness_1mon c ON c.point_id = s.id AND c.bucket >= s.first_month AND c.bucket < s.b
        CROSS JOIN LATERAL (
            SELECT greatest(0, date_part('epoch', s.a - c.bucket) / 900)::integer AS i,
                   least(2976, date_part('epoch', s.b - c.bucket) / 900)::integer AS j
        ) m
        WHERE m.j > m.i
        GROUP BY s.n
    )
    SELECT s.id, s.period_start, greatest(0, date_part('epoch', s.b - s.a) / 900)::integer,
           coalesce(counted.received, 0)::integer
    FROM spans s LEFT JOIN counted ON counted.n = s.n
    ORDER BY s.n
$$;
