-- The actors are shared out among nodes in shards (`actors:0` .. `actors:7`, leases like the
-- others). Each lease keeps how far the actors of what it owns were delivered (`checkpoint`, a
-- log position, raised by its holder only), so that the next holder delivers from there.
ALTER TABLE mall_leases ADD COLUMN checkpoint bigint NOT NULL DEFAULT 0;

-- The secret that nodes sharing the database show one another on their internal calls (an
-- actor's work sent to the node running its shard, a decision to the node running the task
-- queue). Made once, by the first node that joins.
CREATE TABLE mall_cluster (
    id boolean PRIMARY KEY DEFAULT true CHECK (id),
    secret text NOT NULL
);
