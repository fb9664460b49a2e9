-- Run once, when the postgres service first makes its data volume: the Prefect server's own
-- database beside Sluice's state (POSTGRES_DB, `sluice`).
CREATE DATABASE prefect;
