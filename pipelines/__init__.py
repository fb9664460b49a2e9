"""Plain-Python pipelines: ingest sync, evaluation, re-embed, rollback, reranker training.

No Prefect and no settings here: the composition root builds their parts, `flows/` runs them
as Prefect flows, and tests call them directly."""
