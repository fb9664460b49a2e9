"""Sluice as a LangChain retriever: each hit of `POST /retrieve` as a `Document`.

    from sluice.integrations.langchain import SluiceRetriever

    retriever = SluiceRetriever(base_url="http://127.0.0.1:8000", options={"top_k": 5})
    for document in retriever.invoke("how do I rotate the keys?"):
        print(document.metadata["score"], document.metadata["uri"])

`options` are sent with every query as fields of the request body (`top_k`, `mode`,
`filters`, `expand`, ...). A document's text is the hit's `context_text` where `expand` made
one, else its `text`; its metadata are the hit's ids, URI, title, scores, pages and headings.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from retrieval_api.schemas import RetrieveResponse
from sluice.client import AsyncSluiceClient, SluiceClient
from sluice.integrations.hits import hit_metadata, hit_text

try:
    from langchain_core.callbacks import (
        AsyncCallbackManagerForRetrieverRun,
        CallbackManagerForRetrieverRun,
    )
    from langchain_core.documents import Document
    from langchain_core.retrievers import BaseRetriever
except ImportError as exc:  # pragma: no cover - the message is tested with the module hidden
    raise ImportError(
        "sluice.integrations.langchain needs LangChain: pip install 'sluice-rag[langchain]'"
    ) from exc


class SluiceRetriever(BaseRetriever):
    """Documents for a query from a running `sluice serve`."""

    base_url: str
    api_key: str | None = Field(default=None, repr=False)
    options: dict[str, Any] = Field(default_factory=dict)
    """Request fields sent with every query, e.g. {"top_k": 5, "mode": "hybrid"}."""
    timeout: float = 30.0
    retries: int = 3

    def _client_args(self) -> dict[str, Any]:
        return {
            "base_url": self.base_url,
            "api_key": self.api_key,
            "timeout": self.timeout,
            "retries": self.retries,
        }

    def _get_relevant_documents(
        self, query: str, *, run_manager: CallbackManagerForRetrieverRun
    ) -> list[Document]:
        with SluiceClient(**self._client_args()) as client:
            return _documents(client.retrieve(query, **self.options))

    async def _aget_relevant_documents(
        self, query: str, *, run_manager: AsyncCallbackManagerForRetrieverRun
    ) -> list[Document]:
        async with AsyncSluiceClient(**self._client_args()) as client:
            return _documents(await client.retrieve(query, **self.options))


def _documents(answer: RetrieveResponse) -> list[Document]:
    return [
        Document(page_content=hit_text(hit), metadata=hit_metadata(hit), id=hit.chunk_id)
        for hit in answer.hits
    ]
