"""The read path: hybrid, dense and BM25 search with fusion (`searcher`), its cache, and the
result shaping the API asks for (`shaping`: grouping, diversity, highlights, context)."""
