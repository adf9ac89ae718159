-- Upload of indicators to the national/provincial online monitoring platforms (collector/upload/).
-- upload_indicators holds each indicator document once, in the order it was built; each
-- destination keeps its own cursor (the last id it acknowledged), so one platform being down
-- never holds the other back, and a restart resumes where each one stopped.

CREATE TABLE upload_indicators (
    id            bigserial PRIMARY KEY,
    key           text NOT NULL UNIQUE,            -- idempotency key: enterprise/period/start/method
    enterprise    text NOT NULL REFERENCES enterprises (code),
    period        text NOT NULL CHECK (period IN ('15min', 'day', 'month')),
    period_start  timestamptz NOT NULL,
    payload       jsonb NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now()
);

-- Up to where indicators were built, per enterprise and period type (the end of the last period).
CREATE TABLE upload_cursors (
    enterprise    text NOT NULL REFERENCES enterprises (code),
    period        text NOT NULL,
    built_until   timestamptz NOT NULL,
    PRIMARY KEY (enterprise, period)
);

CREATE TABLE upload_destinations (
    name             text PRIMARY KEY,
    acked_id         bigint NOT NULL DEFAULT 0,    -- every indicator up to this id is acknowledged
    acked_at         timestamptz,
    attempts         integer NOT NULL DEFAULT 0,   -- failed attempts since the last acknowledgement
    last_error       text,
    last_attempt_at  timestamptz
);
