-- Which controller writes the store. A controller prunes every managed row its objects do not
-- ask for, so two controllers that see different objects (another --selector, another
-- cluster) would delete each other's rows on every sync: the first to write claims the store,
-- and the others are refused until one takes it over on purpose.
CREATE TABLE suborg_claim (
    id         BIGINT PRIMARY KEY CHECK (id = 1),
    writer     TEXT NOT NULL,
    claimed_at BIGINT NOT NULL
);
