-- The event log. One row per event; positions are assigned under the lock on mall_log_head,
-- so they are gap-free and become visible in order (see events/src/postgres.rs).
CREATE TABLE mall_events (
    position        bigint      PRIMARY KEY,
    event_id        uuid        NOT NULL UNIQUE,
    stream_id       text        NOT NULL,
    stream_version  bigint      NOT NULL,
    event_type      text        NOT NULL,
    schema_version  smallint    NOT NULL,
    recorded_at     timestamptz NOT NULL,
    tags            text[]      NOT NULL DEFAULT '{}',
    correlation_id  uuid,
    causation_id    uuid,
    payload         bytea       NOT NULL,
    UNIQUE (stream_id, stream_version)
);

-- Secondary keys: "every event about shopper X" in global order, without a second copy.
CREATE TABLE mall_event_tags (
    tag       text   NOT NULL,
    position  bigint NOT NULL REFERENCES mall_events (position),
    PRIMARY KEY (tag, position)
);

-- Each stream's current version: the optimistic-concurrency check reads one row.
CREATE TABLE mall_streams (
    stream_id  text   PRIMARY KEY,
    version    bigint NOT NULL
);

-- The single row every append locks: it serializes appenders and holds the last position.
CREATE TABLE mall_log_head (
    id        boolean PRIMARY KEY DEFAULT true CHECK (id),
    position  bigint  NOT NULL
);
INSERT INTO mall_log_head (id, position) VALUES (true, 0);
