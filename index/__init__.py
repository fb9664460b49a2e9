"""Embedders, the BM25 sparse encoder and the vector stores behind one interface."""
