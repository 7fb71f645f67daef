-- Orders are paid through the payments service and hold units of the inventory service: the price of one unit
-- when the order was placed, and the ids of its payment and stock reservation once it is paid.
ALTER TABLE orders ADD COLUMN unit_price_cents BIGINT NOT NULL DEFAULT 0;
ALTER TABLE orders ADD COLUMN payment_id BIGINT;
ALTER TABLE orders ADD COLUMN reservation_id BIGINT;
