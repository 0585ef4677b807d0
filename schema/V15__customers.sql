-- The customers projection: purchase histories by shopper and day; reviews.
CREATE TABLE shopper_days (
    key         text    PRIMARY KEY,  -- SHOPPER|DAY
    shopper_id  text    NOT NULL,
    day         text    NOT NULL,
    orders      bigint  NOT NULL,
    spend_e4    bigint  NOT NULL
);
CREATE INDEX shopper_days_shopper ON shopper_days (shopper_id);
ALTER TABLE shopper_days SET (fillfactor = 70);

CREATE TABLE reviews (
    review_id   text         PRIMARY KEY,
    product_id  text         NOT NULL,
    shopper_id  text         NOT NULL,
    rating      bigint       NOT NULL,
    text        text         NOT NULL,
    at          timestamptz,
    position    bigint       NOT NULL
);
CREATE INDEX reviews_product ON reviews (product_id);
