"""Where vectors live: the embedded engine (`embedded`, its `optimizer`), the Qdrant server
(`server`), both behind the `VectorStore` contract; one data dir shared by many processes
(`shared` and its `channel`); the Qdrant filters and records both stores translate to; the
`factory` that picks one."""
