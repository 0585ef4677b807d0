-- The merchandising projection: every rule that shapes district listings.
CREATE TABLE merchandising_rules (
    rule_id         text              PRIMARY KEY,
    action          text              NOT NULL,  -- boost, bury, pin, hide, filter
    condition       jsonb             NOT NULL,
    strength        double precision  NOT NULL,
    pin_position    bigint,
    priority        bigint            NOT NULL,
    valid_from      timestamptz,
    valid_until     timestamptz,
    auto            boolean           NOT NULL,
    rule            text              NOT NULL,
    reason          text              NOT NULL,
    evidence        jsonb             NOT NULL,
    status          text              NOT NULL,  -- active, expired
    revisions       bigint            NOT NULL,
    expired_reason  text,
    updated_at      timestamptz,
    expired_at      timestamptz,
    position        bigint            NOT NULL
);
