-- Gateway health as the gateways report it on their status and events topics.
-- gateways.state/status hold the latest status document (retained on the broker; the broker
-- publishes the last will, state offline, when an agent vanishes); status_at is when the
-- collector received it. device_health flattens its devices; gateway_events keeps every event
-- once per (gateway, events seq, index in the message).

ALTER TABLE gateways ADD COLUMN status_at timestamptz;

CREATE TABLE device_health (
    gateway_id           integer NOT NULL REFERENCES gateways (id),
    meter                text NOT NULL,
    state                text NOT NULL CHECK (state IN ('ok', 'degraded', 'down')),
    last_success         timestamptz,
    consecutive_failures integer NOT NULL DEFAULT 0,
    last_error           text,
    reported_at          timestamptz NOT NULL,   -- ts of the status document
    PRIMARY KEY (gateway_id, meter)
);

CREATE TABLE gateway_events (
    id          bigserial PRIMARY KEY,
    gateway_id  integer NOT NULL REFERENCES gateways (id),
    seq         bigint NOT NULL,
    idx         integer NOT NULL,
    ts          timestamptz NOT NULL,
    kind        text NOT NULL,
    device      text,
    point       text,
    value       double precision,
    previous    double precision,
    detail      text,
    received_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (gateway_id, seq, idx)
);
CREATE INDEX gateway_events_ts ON gateway_events (ts);
