"""Sluice as a LlamaIndex retriever: each hit of `POST /retrieve` as a scored `TextNode`.

    from sluice_client.llamaindex import SluiceRetriever

    retriever = SluiceRetriever("http://127.0.0.1:8000", options={"top_k": 5})
    for scored in retriever.retrieve("how do I rotate the keys?"):
        print(scored.score, scored.node.metadata["uri"])

`options` are sent with every query as fields of the request body (`top_k`, `mode`,
`filters`, `expand`, ...). A node's id is the chunk id and its text the hit's `context_text`
where `expand` made one, else its `text`. Its metadata are the hit's ids, URI, title, scores,
pages and headings; only URI, title, pages and headings go into a prompt, and none into an
embedding. Nothing here loads LlamaIndex's NLTK data or tokenizers.
"""

from __future__ import annotations

from typing import Any

from sluice_client.client import AsyncSluiceClient, SluiceClient
from sluice_client.hits import (
    METADATA_FIELDS,
    PROMPT_FIELDS,
    hit_metadata,
    hit_text,
    request_options,
)
from sluice_client.response import Hit, RetrieveResponse

try:
    from llama_index.core.callbacks import CallbackManager
    from llama_index.core.retrievers import BaseRetriever
    from llama_index.core.schema import NodeWithScore, QueryBundle, TextNode
except ImportError as exc:  # pragma: no cover - the message is tested with the module hidden
    raise ImportError(
        "sluice_client.llamaindex needs LlamaIndex: pip install 'sluice-client[llamaindex]'"
    ) from exc


class SluiceRetriever(BaseRetriever):
    """Nodes for a query from a running `sluice serve`."""

    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        options: dict[str, Any] | None = None,
        timeout: float = 30.0,
        retries: int = 3,
        callback_manager: CallbackManager | None = None,
    ) -> None:
        super().__init__(callback_manager=callback_manager)
        self.base_url = base_url
        self.options = request_options(options or {})
        """Request fields sent with every query, e.g. {"top_k": 5, "mode": "hybrid"}."""
        self._api_key = api_key
        self._timeout = timeout
        self._retries = retries

    def _client_args(self) -> dict[str, Any]:
        return {
            "base_url": self.base_url,
            "api_key": self._api_key,
            "timeout": self._timeout,
            "retries": self._retries,
        }

    def _retrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        with SluiceClient(**self._client_args()) as client:
            return _nodes(client.retrieve(query_bundle.query_str, **self.options))

    async def _aretrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        async with AsyncSluiceClient(**self._client_args()) as client:
            return _nodes(await client.retrieve(query_bundle.query_str, **self.options))


def hit_node(hit: Hit, request_id: str | None = None) -> NodeWithScore:
    node = TextNode(
        id_=hit.chunk_id,
        text=hit_text(hit),
        metadata=hit_metadata(hit, request_id),
        excluded_llm_metadata_keys=[
            *(f for f in METADATA_FIELDS if f not in PROMPT_FIELDS),
            "request_id",
        ],
        excluded_embed_metadata_keys=[*METADATA_FIELDS, "request_id"],
    )
    return NodeWithScore(node=node, score=hit.score)


def _nodes(answer: RetrieveResponse) -> list[NodeWithScore]:
    return [hit_node(hit, answer.request_id) for hit in answer.hits]
