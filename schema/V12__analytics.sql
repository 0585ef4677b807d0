-- The analytics projection: signals by district and hour, by product and day, searches by day;
-- the anomalies found and the reports written.
CREATE TABLE district_hours (
    key         text              PRIMARY KEY,  -- SLUG|HOUR
    district    text              NOT NULL,
    hour        timestamptz,
    views       bigint            NOT NULL,
    clicks      bigint            NOT NULL,
    carts       bigint            NOT NULL,
    purchases   bigint            NOT NULL,
    units       bigint            NOT NULL,
    bounces     bigint            NOT NULL,
    revenue_e4  bigint            NOT NULL
);
CREATE INDEX district_hours_district ON district_hours (district);

CREATE TABLE product_days (
    key         text              PRIMARY KEY,  -- DAY|PRODUCT
    day         text              NOT NULL,
    product_id  text              NOT NULL,
    district    text              NOT NULL,
    views       bigint            NOT NULL,
    carts       bigint            NOT NULL,
    purchases   bigint            NOT NULL,
    units       bigint            NOT NULL,
    revenue_e4  bigint            NOT NULL
);
CREATE INDEX product_days_day ON product_days (day);

CREATE TABLE search_days (
    key           text    PRIMARY KEY,  -- DAY|TERM
    day           text    NOT NULL,
    term          text    NOT NULL,
    searches      bigint  NOT NULL,
    zero_results  bigint  NOT NULL
);
CREATE INDEX search_days_day ON search_days (day);

CREATE TABLE anomalies (
    anomaly_id  text              PRIMARY KEY,
    microstore  text              NOT NULL,
    metric      text              NOT NULL,
    kind        text              NOT NULL,
    start_at    timestamptz,
    end_at      timestamptz,
    expected    double precision  NOT NULL,
    observed    double precision  NOT NULL,
    score       double precision  NOT NULL,
    at          timestamptz,
    position    bigint            NOT NULL
);

CREATE TABLE analytics_narratives (
    report_id        text         PRIMARY KEY,
    microstore       text         NOT NULL,
    period           text         NOT NULL,
    from_at          timestamptz,
    to_at            timestamptz,
    facts            jsonb        NOT NULL,
    top_products     jsonb        NOT NULL,
    bottom_products  jsonb        NOT NULL,
    search_terms     jsonb        NOT NULL,
    anomalies        jsonb        NOT NULL,
    narrative        text         NOT NULL,
    suggestions      jsonb        NOT NULL,
    written_by       text         NOT NULL,
    generation       jsonb,
    as_of            bigint       NOT NULL,
    at               timestamptz,
    position         bigint       NOT NULL
);

-- Counters updated in place, as in V4.
ALTER TABLE district_hours SET (fillfactor = 70);
ALTER TABLE product_days SET (fillfactor = 70);
ALTER TABLE search_days SET (fillfactor = 70);
