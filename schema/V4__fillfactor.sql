-- Tables whose rows are updated over and over (counters, interest sums): room in each page for
-- the new version, so that an update stays on its page and touches no index (a HOT update).
ALTER TABLE products SET (fillfactor = 80);
ALTER TABLE product_metrics SET (fillfactor = 70);
ALTER TABLE districts SET (fillfactor = 70);
ALTER TABLE shopper_interests SET (fillfactor = 70);
ALTER TABLE shopper_profiles SET (fillfactor = 70);
