"""The LangChain and LlamaIndex retrievers against a real `sluice serve`."""

from __future__ import annotations

import asyncio
import importlib
import subprocess
import sys

import pytest
from langchain_core.documents import Document
from langchain_tests.integration_tests import RetrieversIntegrationTests
from llama_index.core.schema import MetadataMode, NodeWithScore

from sluice_client import langchain as lc
from sluice_client import llamaindex as li
from sluice_client.client import SluiceClient
from tests.conftest import ServedCorpus

PUMP = "how often does the pump impeller need replacing"


def test_langchain_retriever_returns_documents_of_the_hits(served_corpus: ServedCorpus) -> None:
    retriever = lc.SluiceRetriever(
        base_url=served_corpus.url,
        api_key=served_corpus.admin_key,
        options={"top_k": 2, "mode": "hybrid"},
    )
    assert served_corpus.admin_key not in repr(retriever)
    documents = retriever.invoke(PUMP)
    with SluiceClient(served_corpus.url, api_key=served_corpus.admin_key) as client:
        hits = client.retrieve(PUMP, top_k=2).hits
    assert all(isinstance(document, Document) for document in documents)
    assert [d.page_content for d in documents] == [hit.text for hit in hits]
    first = documents[0].metadata
    assert first["chunk_id"] == hits[0].chunk_id == documents[0].id
    assert first["uri"].endswith("pump.md") and first["score"] == hits[0].score
    assert first["headings"] == hits[0].headings and first["pages"] == hits[0].pages
    assert first["request_id"] and first["request_id"] == documents[1].metadata["request_id"]

    later = asyncio.run(retriever.ainvoke("revoke the old key"))
    assert len(later) == 2 and later[0].metadata["uri"].endswith("keys.md")


def test_langchain_documents_carry_the_expanded_context(served_corpus: ServedCorpus) -> None:
    query, expand = "drain sludge from the mud drum blowdown", {"before": 1, "after": 1}
    retriever = lc.SluiceRetriever(
        base_url=served_corpus.url,
        api_key=served_corpus.admin_key,
        options={"top_k": 1, "expand": expand},
    )
    with SluiceClient(served_corpus.url, api_key=served_corpus.admin_key) as client:
        hit = client.retrieve(query, top_k=1, expand=expand).hits[0]
    assert hit.context_text is not None and len(hit.context_text) > len(hit.text)
    assert "mud drum" in hit.text and "feedwater" in hit.context_text
    assert retriever.invoke(query)[0].page_content == hit.context_text


def test_llamaindex_retriever_returns_scored_nodes_of_the_hits(
    served_corpus: ServedCorpus,
) -> None:
    retriever = li.SluiceRetriever(
        served_corpus.url, api_key=served_corpus.admin_key, options={"top_k": 2}
    )
    nodes = retriever.retrieve(PUMP)
    with SluiceClient(served_corpus.url, api_key=served_corpus.admin_key) as client:
        hits = client.retrieve(PUMP, top_k=2).hits
    assert all(isinstance(node, NodeWithScore) for node in nodes)
    assert [(n.node.node_id, n.score) for n in nodes] == [(h.chunk_id, h.score) for h in hits]
    first = nodes[0].node
    assert first.get_content() == hits[0].text and first.metadata["uri"].endswith("pump.md")
    prompt = first.get_content(metadata_mode=MetadataMode.LLM)
    assert "pump.md" in prompt and hits[0].chunk_id not in prompt, "no ids in a prompt"
    assert first.metadata["request_id"] and first.metadata["request_id"] not in prompt
    assert first.get_content(metadata_mode=MetadataMode.EMBED) == hits[0].text

    later = asyncio.run(retriever.aretrieve("revoke the old key"))
    assert len(later) == 2 and later[0].node.metadata["uri"].endswith("keys.md")


@pytest.mark.parametrize(
    ("module", "framework", "extra"),
    [
        ("sluice_client.langchain", "langchain_core.retrievers", "langchain"),
        ("sluice_client.llamaindex", "llama_index.core.retrievers", "llamaindex"),
    ],
)
def test_a_missing_framework_names_the_extra_to_install(
    monkeypatch: pytest.MonkeyPatch, module: str, framework: str, extra: str
) -> None:
    monkeypatch.delitem(sys.modules, module)
    monkeypatch.setitem(sys.modules, framework, None)  # type: ignore[arg-type]
    with pytest.raises(ImportError, match=rf"pip install 'sluice-client\[{extra}\]'"):
        importlib.import_module(module)


NO_NETWORK = """
import socket
tried = []
def refuse(self, address):
    tried.append(address)
    raise OSError("no network in this test")
socket.socket.connect = refuse
socket.socket.connect_ex = refuse
from sluice_client.response import Hit, StageScores
from sluice_client.langchain import SluiceRetriever as L
from sluice_client.llamaindex import SluiceRetriever, hit_node
SluiceRetriever("http://127.0.0.1:1")
hit = Hit(chunk_id="c", doc_id="d", uri="u", title="t", text="The pump wears.", headings=[],
          pages=[], element_types=[], char_start=0, char_end=15, rank=1, score=1.0,
          relative_score=1.0, scores=StageScores())
node = hit_node(hit).node
node.get_content(), node.get_content(metadata_mode="llm")
print(tried)
"""


def test_importing_the_integrations_touches_no_network() -> None:
    """LlamaIndex can download NLTK data on first use of its tokenizers; nothing here may."""
    done = subprocess.run(
        [sys.executable, "-c", NO_NETWORK], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]", done.stdout


class TestLangChainStandardRetriever(RetrieversIntegrationTests):
    """LangChain's own suite for retrievers (`langchain-tests`): `k` in the constructor and in
    `invoke`, documents from `invoke` and `ainvoke`."""

    @pytest.fixture(autouse=True)
    def _served(self, served_corpus: ServedCorpus) -> None:
        self.served = served_corpus

    @property
    def retriever_constructor(self) -> type[lc.SluiceRetriever]:
        return lc.SluiceRetriever

    @property
    def retriever_constructor_params(self) -> dict[str, object]:
        return {"base_url": self.served.url, "api_key": self.served.admin_key}

    @property
    def retriever_query_example(self) -> str:
        return PUMP


def test_the_langchain_retriever_refuses_what_is_no_request_option(
    served_corpus: ServedCorpus,
) -> None:
    with pytest.raises(ValueError, match="base_urll"):
        lc.SluiceRetriever(base_urll=served_corpus.url)  # type: ignore[call-arg]
    with pytest.raises(ValueError, match="not a request option: topk"):
        lc.SluiceRetriever(base_url=served_corpus.url, options={"topk": 3})
    retriever = lc.SluiceRetriever(  # top_k: the request's name for k, accepted too
        base_url=served_corpus.url,
        api_key=served_corpus.admin_key,
        top_k=3,  # type: ignore[call-arg]
    )
    assert len(retriever.invoke(PUMP)) == 3
    assert len(retriever.invoke(PUMP, top_k=1)) == 1
    with pytest.raises(TypeError, match="not a request option: topk"):
        retriever.invoke(PUMP, topk=1)
    with pytest.raises(TypeError, match="query"):
        retriever.invoke(PUMP, query="another")
