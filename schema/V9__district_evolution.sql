-- The catalog projection: a district's copy in force, and the voice under test beside it.
ALTER TABLE districts
    ADD COLUMN tagline           text,
    ADD COLUMN copy_description  text,
    ADD COLUMN seo_title         text,
    ADD COLUMN seo_description   text,
    ADD COLUMN voice_test_id     text,
    ADD COLUMN challenger        jsonb;

-- The evolution projection: every proposed change of a district's voice, its test and outcome.
CREATE TABLE district_personalities (
    evolution_id         text              PRIMARY KEY,
    slug                 text              NOT NULL,
    attribute            text              NOT NULL,
    from_value           text              NOT NULL,
    to_value             text              NOT NULL,
    rule                 text              NOT NULL,
    reasons              jsonb             NOT NULL,
    metrics              jsonb             NOT NULL,
    status               text              NOT NULL,  -- proposed, testing, kept, rolled_back, abandoned
    test_id              text,
    control_copy         jsonb,
    challenger_copy      jsonb,
    personality_after    jsonb,
    control_views        bigint            NOT NULL,
    control_conversions  bigint            NOT NULL,
    challenger_views     bigint            NOT NULL,
    challenger_conversions bigint          NOT NULL,
    prob_challenger_better double precision,
    likelihood_ratio     double precision,
    outcome_reason       text,
    proposed_at          timestamptz,
    started_at           timestamptz,
    concluded_at         timestamptz,
    position             bigint            NOT NULL
);
CREATE INDEX district_personalities_slug ON district_personalities (slug);

-- The evolution projection: the categories last suggested to each district's merchant.
CREATE TABLE district_suggestions (
    slug         text         PRIMARY KEY,
    suggestions  jsonb        NOT NULL,
    at           timestamptz,
    position     bigint       NOT NULL
);
