-- Which telemetry messages of each gateway arrived, by their sequence number, so that a message
-- lost between a gateway and the database shows as a gap instead of passing unseen. A gateway
-- numbers its telemetry messages 1, 2, 3... for life (the number survives restarts and is
-- kept across retransmission), so a number that never arrives while later ones do is a message
-- that a broker dropped, a gateway's bounded buffer discarded (it reports that as an event),
-- or one that is still on its way (held for a disconnected collector's session).
--
-- The writers add one row per message in the transaction that stores its readings (or its dead
-- letter); collector/sequence.py folds the rows into ranges of consecutive numbers every minute,
-- so the table of rows stays small and the ranges are a handful per gateway.
CREATE TABLE telemetry_received (
    gateway_id  integer NOT NULL,
    seq         bigint NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (gateway_id, seq)
);

CREATE TABLE telemetry_ranges (
    gateway_id     integer NOT NULL REFERENCES gateways (id),
    lo             bigint NOT NULL,
    hi             bigint NOT NULL CHECK (hi >= lo),
    first_received timestamptz NOT NULL,   -- earliest arrival of a message in [lo, hi]
    last_received  timestamptz NOT NULL,
    PRIMARY KEY (gateway_id, lo)
);
