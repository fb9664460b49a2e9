"""Sluice as a retriever of other frameworks: `sluice.integrations.langchain` (the
`langchain` extra) and `sluice.integrations.llamaindex` (the `llamaindex` extra)."""
