-- The plugins projection: each plugin's switch, settings and runs; every proposal.
CREATE TABLE ai_plugins (
    plugin_id          text         PRIMARY KEY,
    enabled            boolean,
    config             jsonb        NOT NULL,
    runs               bigint       NOT NULL,
    failures           bigint       NOT NULL,
    failures_in_a_row  bigint       NOT NULL,
    last_outcome       text,
    last_detail        text,
    last_run_at        timestamptz,
    disabled_by        text,
    disabled_reason    text,
    proposals          bigint       NOT NULL,
    position           bigint       NOT NULL
);

CREATE TABLE plugin_proposals (
    proposal_id  text         PRIMARY KEY,
    plugin_id    text         NOT NULL,
    run_id       text         NOT NULL,
    subject      text         NOT NULL,
    kind         text         NOT NULL,
    figures      jsonb        NOT NULL,
    note         text         NOT NULL,
    at           timestamptz,
    position     bigint       NOT NULL
);
