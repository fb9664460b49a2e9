"""Translate `PayloadFilter` into each backend's filter types."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from index.contracts import Condition, MatchAny, PayloadFilter, Range

if TYPE_CHECKING:  # the embedded engine never needs the client (~1 s to import)
    from qdrant_client import models


def to_client_filter(payload_filter: PayloadFilter | None) -> models.Filter | None:
    from qdrant_client import models

    if not payload_filter:
        return None
    return models.Filter(
        must=[_client_condition(c) for c in payload_filter.must] or None,
        must_not=[_client_condition(c) for c in payload_filter.must_not] or None,
    )


def _client_condition(condition: Condition) -> models.FieldCondition:
    from qdrant_client import models

    if isinstance(condition, MatchAny):
        return models.FieldCondition(
            key=condition.key,
            match=models.MatchAny(any=list(condition.values)),  # type: ignore[arg-type]
        )
    condition = condition.tightest()
    return models.FieldCondition(
        key=condition.key,
        range=models.Range(gte=condition.gte, gt=condition.gt, lte=condition.lte, lt=condition.lt),
    )


def to_edge_filter(payload_filter: PayloadFilter | None) -> Any:
    if not payload_filter:
        return None
    import qdrant_edge as edge

    return edge.Filter(
        must=[_edge_condition(c) for c in payload_filter.must] or None,
        must_not=[_edge_condition(c) for c in payload_filter.must_not] or None,
    )


def _edge_condition(condition: Condition) -> Any:
    import qdrant_edge as edge

    if isinstance(condition, MatchAny):
        values = list(condition.values)
        match = edge.MatchValue(values[0]) if len(values) == 1 else edge.MatchAny(values)  # type: ignore[arg-type]
        return edge.FieldCondition(key=condition.key, match=match)
    assert isinstance(condition, Range)
    condition = condition.tightest()
    return edge.FieldCondition(
        key=condition.key,
        range=edge.RangeFloat(
            gte=condition.gte, gt=condition.gt, lte=condition.lte, lt=condition.lt
        ),
    )
