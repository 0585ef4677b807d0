-- Read tables, written only by projections (projections/src). Each projection's checkpoint is
-- updated in the same transaction as its rows, so each event takes effect exactly once.
CREATE TABLE mall_projection_checkpoints (
    name         text        PRIMARY KEY,
    version      integer     NOT NULL,
    position     bigint      NOT NULL DEFAULT 0,
    recorded_at  timestamptz,
    updated_at   timestamptz NOT NULL DEFAULT now()
);

-- The catalog projection: a product's current copy and facts.
CREATE TABLE products (
    product_id            text    PRIMARY KEY,
    district              text    NOT NULL,
    title                 text    NOT NULL,
    description           text    NOT NULL,
    tags                  jsonb   NOT NULL,
    attributes            jsonb   NOT NULL,
    price                 text    NOT NULL,
    currency              text    NOT NULL,
    stock                 bigint  NOT NULL,
    image_url             text,
    status                text    NOT NULL,
    seo_title             text,
    seo_meta_description  text,
    embedding             jsonb,
    embedding_hash        text,
    copy_version          bigint  NOT NULL,
    experiment_id         text,
    challenger            text,
    listed_position       bigint  NOT NULL,
    updated_position      bigint  NOT NULL
);
CREATE INDEX products_district ON products (district);

-- The catalog projection: signal counts per product.
CREATE TABLE product_metrics (
    product_id      text             PRIMARY KEY,
    impressions     bigint           NOT NULL,
    views           bigint           NOT NULL,
    clicks          bigint           NOT NULL,
    carts           bigint           NOT NULL,
    purchases       bigint           NOT NULL,
    bounces         bigint           NOT NULL,
    revenue_e4      bigint           NOT NULL,  -- ten-thousandths of the currency unit
    dwell_ms        bigint           NOT NULL,
    last_signal_at  timestamptz
);

-- The catalog projection: districts, their voice and their products' signals.
CREATE TABLE districts (
    slug             text    PRIMARY KEY,
    name             text    NOT NULL,
    tone             text    NOT NULL,
    style            text    NOT NULL,
    audience         text    NOT NULL,
    opened_position  bigint  NOT NULL,
    impressions      bigint  NOT NULL,
    views            bigint  NOT NULL,
    clicks           bigint  NOT NULL,
    carts            bigint  NOT NULL,
    purchases        bigint  NOT NULL,
    bounces          bigint  NOT NULL,
    revenue_e4       bigint  NOT NULL
);

-- The personalization projection: a shopper's interest in a district or a product, kept as a
-- sum of signal weights each scaled by 2^((t - 2026-01-01) / 7 days), so that decay is applied
-- at read time (multiply by 2^(-(now - 2026-01-01) / 7 days)) and the sum only ever grows.
CREATE TABLE shopper_interests (
    key          text             PRIMARY KEY,
    shopper_id   text             NOT NULL,
    facet        text             NOT NULL,
    score        double precision NOT NULL,
    signals      bigint           NOT NULL,
    last_at      timestamptz
);
CREATE INDEX shopper_interests_shopper ON shopper_interests (shopper_id);
