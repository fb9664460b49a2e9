"""Sluice as a LangChain retriever: each hit of `POST /retrieve` as a `Document`.

    from sluice_client.langchain import SluiceRetriever

    retriever = SluiceRetriever(base_url="http://127.0.0.1:8000", k=5, options={"mode": "hybrid"})
    for document in retriever.invoke("how do I rotate the keys?"):
        print(document.metadata["score"], document.metadata["uri"])
    retriever.invoke("how do I rotate the keys?", k=1)   # one document, this call only

`k` (or `top_k`) is how many documents, for every call or for one `invoke`; `options` are sent
with every query as fields of the request body (`mode`, `filters`, `expand`, ...), and keyword
arguments of `invoke` are too, for that call. A name that is no request field is refused
(`TypeError`), in the constructor as in `invoke`. A document's text is the hit's `context_text`
where `expand` made one, else its `text`; its metadata are the source's fields of the document
(a database row's metadata columns) and the hit's ids, URI, title, scores,
pages and headings.
"""

from __future__ import annotations

from typing import Any

from pydantic import AliasChoices, ConfigDict, Field, field_validator

from sluice_client.client import AsyncSluiceClient, SluiceClient
from sluice_client.hits import hit_metadata, hit_text, request_options
from sluice_client.response import RetrieveResponse

try:
    from langchain_core.callbacks import (
        AsyncCallbackManagerForRetrieverRun,
        CallbackManagerForRetrieverRun,
    )
    from langchain_core.documents import Document
    from langchain_core.retrievers import BaseRetriever
except ImportError as exc:  # pragma: no cover - the message is tested with the module hidden
    raise ImportError(
        "sluice_client.langchain needs LangChain: pip install 'sluice-client[langchain]'"
    ) from exc


class SluiceRetriever(BaseRetriever):
    """Documents for a query from a running `sluice serve`."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    base_url: str
    api_key: str | None = Field(default=None, repr=False)
    k: int | None = Field(default=None, ge=1, validation_alias=AliasChoices("k", "top_k"))
    """Documents per query (the request's `top_k`); None: the server's default."""
    options: dict[str, Any] = Field(default_factory=dict)
    """Request fields sent with every query, e.g. {"mode": "hybrid", "rerank": True}."""
    timeout: float = 30.0
    retries: int = 3

    @field_validator("options")
    @classmethod
    def _known_options(cls, options: dict[str, Any]) -> dict[str, Any]:
        try:
            return request_options(options)
        except TypeError as error:  # what pydantic reports as a validation error
            raise ValueError(str(error)) from None

    def _client_args(self) -> dict[str, Any]:
        return {
            "base_url": self.base_url,
            "api_key": self.api_key,
            "timeout": self.timeout,
            "retries": self.retries,
        }

    def _request(self, k: int | None, top_k: int | None, call: dict[str, Any]) -> dict[str, Any]:
        """This call's request fields: `k` (or `top_k`) of the call, else the retriever's."""
        chosen = next((n for n in (k, top_k, self.k) if n is not None), None)
        return request_options({**self.options, **call}, chosen)

    def _get_relevant_documents(
        self,
        query: str,
        *,
        run_manager: CallbackManagerForRetrieverRun,
        k: int | None = None,
        top_k: int | None = None,
        **options: Any,
    ) -> list[Document]:
        request = self._request(k, top_k, options)
        with SluiceClient(**self._client_args()) as client:
            return _documents(client.retrieve(query, **request))

    async def _aget_relevant_documents(
        self,
        query: str,
        *,
        run_manager: AsyncCallbackManagerForRetrieverRun,
        k: int | None = None,
        top_k: int | None = None,
        **options: Any,
    ) -> list[Document]:
        request = self._request(k, top_k, options)
        async with AsyncSluiceClient(**self._client_args()) as client:
            return _documents(await client.retrieve(query, **request))


def _documents(answer: RetrieveResponse) -> list[Document]:
    return [
        Document(
            page_content=hit_text(hit),
            metadata=hit_metadata(hit, answer.request_id),
            id=hit.chunk_id,
        )
        for hit in answer.hits
    ]
