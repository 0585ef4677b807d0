-- The catalog projection: the vendor's image while self-healing shows its placeholder.
ALTER TABLE products ADD COLUMN original_image_url text;

-- The health projection: every issue a health check opened, how it is dealt with, and whether
-- it is closed.
CREATE TABLE health_issues (
    issue_id      text              PRIMARY KEY,
    kind          text              NOT NULL,
    subject       text              NOT NULL,
    severity      text              NOT NULL,  -- low, medium, high
    remedy        text              NOT NULL,  -- task, fix, person, log
    status        text              NOT NULL,  -- open, closed
    evidence      jsonb             NOT NULL,
    task_id       text,
    repair        jsonb,
    repairs       bigint            NOT NULL,
    check_id      text              NOT NULL,
    opened_at     timestamptz,
    closed_at     timestamptz,
    close_reason  text,
    position      bigint            NOT NULL
) WITH (fillfactor = 80);
CREATE INDEX health_issues_status ON health_issues (status);

-- The health projection: every check.
CREATE TABLE health_checks (
    check_id  text         PRIMARY KEY,
    trigger   text         NOT NULL,
    at        timestamptz,
    checked   jsonb        NOT NULL,
    findings  bigint       NOT NULL,
    position  bigint       NOT NULL
);

-- The health projection: every notification for the admin, as the webhook receives it.
CREATE TABLE health_notifications (
    notification_id  text         PRIMARY KEY,
    type             text         NOT NULL,
    subject          text         NOT NULL,
    body             jsonb        NOT NULL,
    recorded_at      timestamptz,
    delivered_at     timestamptz,
    attempts         bigint       NOT NULL,
    status           integer,
    position         bigint       NOT NULL
) WITH (fillfactor = 80);
