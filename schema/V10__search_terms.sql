-- The evolution projection: what shoppers search for, and how often it found nothing.
CREATE TABLE search_terms (
    query         text         PRIMARY KEY,
    searches      bigint       NOT NULL,
    zero_results  bigint       NOT NULL,
    last_at       timestamptz
);
