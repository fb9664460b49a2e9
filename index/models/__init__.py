"""The models: which are on this machine (`catalog`), where and on which runtime they run
(`device`, `exports`, `runtime_model`), and the embedder and reranker built on them."""
