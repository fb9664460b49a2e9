"""The write path: embedding and writing chunks into a collection version (`target`,
`writer`), the embedding cache that keeps a re-run from embedding again, and copying a version's
points into the next (`version_sync`)."""
