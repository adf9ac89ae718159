-- API access: bearer tokens, stored only as SHA-256 hashes of the token text. A token carries a
-- role and the scope it may read: an enterprise (unified social credit code) for role
-- 'enterprise', a province (GB/T 2260 code) for 'province'; operators (fleet health) and admins
-- have no scope. A revoked token keeps its row for the audit trail.
CREATE TABLE api_tokens (
    id          serial PRIMARY KEY,
    token_hash  bytea NOT NULL UNIQUE CHECK (length(token_hash) = 32),
    role        text NOT NULL CHECK (role IN ('enterprise', 'province', 'operator', 'admin')),
    scope       text,
    label       text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    revoked_at  timestamptz,
    CHECK (CASE role WHEN 'enterprise' THEN scope ~ '^[0-9A-HJ-NPQRTUWXY]{18}$'
                     WHEN 'province' THEN scope ~ '^[0-9]{2}0000$'
                     ELSE scope IS NULL END)
);

-- Live dashboards: one notification per statement that writes 15-minute intervals, so the API
-- can push fresh figures to its server-sent-event clients without polling the table.
CREATE FUNCTION cw_notify_intervals() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('cw_intervals', '');
    RETURN NULL;
END $$;
CREATE TRIGGER intervals_15m_notify AFTER INSERT OR UPDATE ON intervals_15m
    FOR EACH STATEMENT EXECUTE FUNCTION cw_notify_intervals();
