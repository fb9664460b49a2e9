"""Where rerankers trained before `index/` was split by job name their scoring head: their
`modules.json` says `index.segment_similarity.SegmentSimilarity`. It lives in `index.models`."""

from index.models.segment_similarity import SegmentSimilarity

__all__ = ["SegmentSimilarity"]
