-- The social projection: every post planned and what became of it; what each campaign brought.
CREATE TABLE social_calendars (
    post_id           text         PRIMARY KEY,
    calendar_id       text         NOT NULL,
    district          text         NOT NULL,
    week_of           timestamptz,
    platform          text         NOT NULL,  -- tiktok, instagram, twitter
    product_id        text         NOT NULL,
    text              text,
    tweets            jsonb        NOT NULL,
    hashtags          jsonb        NOT NULL,
    scheduled_at      timestamptz,
    status            text         NOT NULL,  -- scheduled, published, failed, superseded
    platform_post_id  text,
    failure           text,
    generator         text         NOT NULL,
    verdicts          jsonb        NOT NULL,
    refused           jsonb,
    campaign          text         NOT NULL,
    published_at      timestamptz,
    position          bigint       NOT NULL
);

CREATE TABLE campaigns (
    campaign    text         PRIMARY KEY,
    views       bigint       NOT NULL,
    clicks      bigint       NOT NULL,
    carts       bigint       NOT NULL,
    purchases   bigint       NOT NULL,
    revenue_e4  bigint       NOT NULL,
    last_at     timestamptz
);
ALTER TABLE campaigns SET (fillfactor = 70);
