-- The autonomous projection: what the learning cycle found, per system, action, district and
-- diagnosis (the latest insight of each).
CREATE TABLE autonomous_insights (
    key        text              PRIMARY KEY,
    system     text              NOT NULL,
    action     text              NOT NULL,
    district   text              NOT NULL,
    diagnosis  text              NOT NULL,
    tried      bigint            NOT NULL,
    helped     bigint            NOT NULL,
    lift       double precision  NOT NULL,
    evidence   jsonb             NOT NULL,
    at         timestamptz,
    position   bigint            NOT NULL
);
