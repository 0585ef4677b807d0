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

-- Every test of mall's: copy experiments, district voice tests and ordering tests.
CREATE TABLE ab_tests (
    test_id                 text              PRIMARY KEY,
    kind                    text              NOT NULL,  -- copy, voice, ordering
    subject                 text              NOT NULL,  -- product:ID or district:SLUG
    status                  text              NOT NULL,  -- running, concluded, invalid
    name                    text,
    control                 jsonb,
    challenger              jsonb,
    outcome                 text,
    control_stats           jsonb,
    challenger_stats        jsonb,
    prob_challenger_better  double precision,
    likelihood_ratio        double precision,
    srm_p                   double precision,
    reason                  text,
    started_at              timestamptz,
    concluded_at            timestamptz,
    position                bigint            NOT NULL
);

-- Each district's ordering: its layout and the ordering under test.
CREATE TABLE district_orderings (
    district    text    PRIMARY KEY,
    layout      jsonb,
    test_id     text,
    challenger  jsonb,
    test_name   text,
    position    bigint  NOT NULL
);
