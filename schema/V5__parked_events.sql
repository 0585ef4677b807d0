-- Events a projection could not apply (a value its tables refuse, a payload that no longer
-- decodes): parked with the error, so that the projection moves on; `mall projections retry`
-- applies them after a fix and removes them from here.
CREATE TABLE mall_projection_parked (
    name        text        NOT NULL,
    position    bigint      NOT NULL,
    event_type  text        NOT NULL,
    error       text        NOT NULL,
    parked_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (name, position)
);
