"""Sluice's state: what every process of one deployment must agree on (the manifest, run history,
run locks, the version table, rate-limit buckets), in SQLite files of the data dir on one machine
or in one PostgreSQL database that every worker and API replica reaches."""
