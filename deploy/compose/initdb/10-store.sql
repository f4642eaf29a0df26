-- The mismatch store of `shadowcube compare` (SHADOWCUBE_STORE_DATABASE_URL)
-- lives next to the cube database; compare creates its schema at start-up.
CREATE DATABASE shadowcube_store;
