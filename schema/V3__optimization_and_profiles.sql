-- The optimization projection: every decision event, keyed by its log position (20 digits, so
-- that keys sort as positions do); `detail` is the whole event (evidence, prompt, raw output,
-- guardrail verdicts).
CREATE TABLE optimization_log (
    key            text        PRIMARY KEY,
    position       bigint      NOT NULL,
    product_id     text        NOT NULL,
    kind           text        NOT NULL,
    decision_id    text,
    experiment_id  text,
    command        text,
    summary        text        NOT NULL,
    detail         jsonb       NOT NULL,
    at             timestamptz
);
CREATE INDEX optimization_log_product ON optimization_log (product_id, position);

-- The optimization projection: experiments, running and concluded.
CREATE TABLE experiments (
    experiment_id           text             PRIMARY KEY,
    product_id              text             NOT NULL,
    decision_id             text,
    status                  text             NOT NULL,  -- running, challenger_won, control_won, inconclusive
    control                 text             NOT NULL,
    challenger              text             NOT NULL,
    control_views           bigint           NOT NULL,
    control_conversions     bigint           NOT NULL,
    challenger_views        bigint           NOT NULL,
    challenger_conversions  bigint           NOT NULL,
    prob_challenger_better  double precision,
    likelihood_ratio        double precision,
    reason                  text,
    started_at              timestamptz,
    concluded_at            timestamptz,
    started_position        bigint           NOT NULL,
    concluded_position      bigint
);
CREATE INDEX experiments_product ON experiments (product_id);

-- The optimization projection: every copy a product has had or tested.
CREATE TABLE copy_history (
    key            text        PRIMARY KEY,
    product_id     text        NOT NULL,
    field          text        NOT NULL,  -- description, tags, seo, embedding
    content        jsonb       NOT NULL,
    source         text        NOT NULL,  -- listing, vendor_edit, decision, experiment
    outcome        text        NOT NULL,  -- applied, testing, kept, rolled_back
    decision_id    text,
    experiment_id  text,
    position       bigint      NOT NULL,
    at             timestamptz
);
CREATE INDEX copy_history_product ON copy_history (product_id);

-- The personalization projection: a shopper's signal counts and spend.
CREATE TABLE shopper_profiles (
    shopper_id     text        PRIMARY KEY,
    signals        bigint      NOT NULL,
    views          bigint      NOT NULL,
    clicks         bigint      NOT NULL,
    carts          bigint      NOT NULL,
    purchases      bigint      NOT NULL,
    bounces        bigint      NOT NULL,
    searches       bigint      NOT NULL,
    spend_e4       bigint      NOT NULL,  -- ten-thousandths of the currency unit
    last_district  text,
    last_at        timestamptz
);

-- The district rankings, derived from the catalog tables at one log position by the server's
-- ranker (src/ranking.rs): each district's in-stock products in storefront order, with the
-- score parts that are the same for every shopper.
CREATE TABLE district_rankings (
    district        text              NOT NULL,
    rank            integer           NOT NULL,
    product_id      text              NOT NULL,
    score           double precision  NOT NULL,
    performance     double precision  NOT NULL,
    rules           double precision  NOT NULL,
    recency         double precision  NOT NULL,
    position        bigint            NOT NULL,
    PRIMARY KEY (district, rank)
);
