-- Lookups the shells make by a column other than the key: anomalies and reports of one
-- microstore, the posts of one district or in one status.
CREATE INDEX anomalies_microstore ON anomalies (microstore);
CREATE INDEX analytics_narratives_microstore ON analytics_narratives (microstore);
CREATE INDEX social_calendars_district ON social_calendars (district);
CREATE INDEX social_calendars_status ON social_calendars (status);

-- Price tests: the test under way on a product (catalog), and every test (plugins).
ALTER TABLE products ADD COLUMN price_test_id text, ADD COLUMN challenger_price text;
CREATE TABLE price_tests (
    test_id                 text              PRIMARY KEY,
    product_id              text              NOT NULL,
    proposal_id             text              NOT NULL,
    control_price           text              NOT NULL,
    challenger_price        text              NOT NULL,
    currency                text              NOT NULL,
    reason                  text              NOT NULL,
    status                  text              NOT NULL,  -- running, challenger_won, control_won, inconclusive
    control                 jsonb,
    challenger              jsonb,
    prob_challenger_better  double precision,
    likelihood_ratio        double precision,
    price_kept              text,
    outcome_reason          text,
    started_at              timestamptz,
    concluded_at            timestamptz,
    position                bigint            NOT NULL
);
CREATE INDEX price_tests_product ON price_tests (product_id);
