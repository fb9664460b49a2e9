"""Indexing and search behind one set of contracts (`contracts`), by job: `models`, `bm25`,
`store`, `write`, `search`, collection `versions`, score `fusion` and the `query_log`.
docs/architecture.md draws the layers inside it."""
