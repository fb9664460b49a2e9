"""BM25: the sparse encoder (`encoder`) and the corpus statistics it depends on (`stats`)."""
