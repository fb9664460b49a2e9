"""Sources, parsing and change detection: raw documents in, typed elements out."""
