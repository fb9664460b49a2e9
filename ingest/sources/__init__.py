"""Source connectors: local folder, S3-compatible bucket, HTTP (URLs and sitemaps).

A new source type is a config model in `config/sources.py` (with a `type` literal) and a class here
with `list_items` and `fetch`; the composition root maps the one to the other.
"""
