-- carbonwatch core schema: registry, readings, intervals, dead letters, audit.
-- Readings are keyed by (point_id, ts) so a redelivered message inserts nothing twice.
-- All timestamps are UTC (timestamptz); reporting days are cut in Asia/Shanghai by queries.

CREATE TABLE enterprises (
    code        text PRIMARY KEY CHECK (code ~ '^[0-9A-HJ-NPQRTUWXY]{18}$'),
    name        text NOT NULL,
    name_en     text,
    region      text NOT NULL CHECK (region ~ '^[0-9]{6}$'),
    province    text NOT NULL CHECK (province ~ '^[0-9]{2}0000$'),
    city        text NOT NULL CHECK (city ~ '^[0-9]{4}00$'),
    industry    text NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX enterprises_province ON enterprises (province);

CREATE TABLE gateways (
    id          serial PRIMARY KEY,
    enterprise  text NOT NULL REFERENCES enterprises (code),
    gateway     text NOT NULL,
    last_seq    bigint,
    last_seen   timestamptz,
    state       text,
    status      jsonb,
    UNIQUE (enterprise, gateway)
);

CREATE TABLE meters (
    id          serial PRIMARY KEY,
    gateway_id  integer NOT NULL REFERENCES gateways (id),
    meter       text NOT NULL,
    model       text,
    UNIQUE (gateway_id, meter)
);

CREATE TABLE points (
    id                  serial PRIMARY KEY,
    enterprise          text NOT NULL REFERENCES enterprises (code),
    gateway_id          integer NOT NULL REFERENCES gateways (id),
    meter_id            integer NOT NULL REFERENCES meters (id),
    point               text NOT NULL,
    kind                text NOT NULL CHECK (kind IN ('counter', 'gauge')),
    unit                text NOT NULL,
    carrier             text,
    direction           text CHECK (direction IN ('import', 'export', 'generation', 'consumption')),
    use                 text NOT NULL DEFAULT 'fuel' CHECK (use IN ('fuel', 'feedstock')),
    renewable           boolean NOT NULL DEFAULT false,
    new_since_base_year boolean NOT NULL DEFAULT false,
    product             text,
    rollover            double precision,   -- engineering value at which the counter wraps
    poll_interval_s     double precision,
    active              boolean NOT NULL DEFAULT true,
    UNIQUE (enterprise, point)
);
CREATE INDEX points_gateway ON points (gateway_id);

-- One row per reading as the gateway read it. quality: 0 good, 1 uncertain, 2 bad (value null).
CREATE TABLE readings (
    point_id    integer NOT NULL,
    ts          timestamptz NOT NULL,
    value       double precision,
    quality     smallint NOT NULL DEFAULT 0,
    received_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (point_id, ts)
);

-- Consumption per point per 15-minute bucket (UTC-aligned; 15 minutes divide every
-- Beijing hour the same way). quantity is in the point's unit. flags: see accounting.flags.
CREATE TABLE intervals_15m (
    point_id    integer NOT NULL,
    bucket      timestamptz NOT NULL,
    quantity    double precision NOT NULL,
    flags       integer NOT NULL DEFAULT 0,
    coverage    real NOT NULL DEFAULT 1,      -- share of the bucket backed by readings on both sides
    computed_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (point_id, bucket)
);

CREATE TABLE dead_letters (
    id          bigserial PRIMARY KEY,
    received_at timestamptz NOT NULL DEFAULT now(),
    topic       text NOT NULL,
    payload     bytea NOT NULL,
    reason      text NOT NULL,
    detail      text
);
CREATE INDEX dead_letters_received ON dead_letters (received_at);

CREATE TABLE audit_log (
    id      bigserial PRIMARY KEY,
    at      timestamptz NOT NULL DEFAULT now(),
    actor   text NOT NULL,
    action  text NOT NULL,
    detail  jsonb
);
