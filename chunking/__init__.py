"""Chunking: title-aware, token-bounded chunks with stable ids."""
