"""BEIR-format test collections: `corpus.jsonl`, `queries.jsonl`, `qrels/test.tsv`."""

from __future__ import annotations

import csv
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, unquote

from ingest.types import Element, ParsedDocument, SourceFile


@dataclass
class BeirDataset:
    name: str
    corpus: dict[str, tuple[str, str]]
    """doc id -> (title, text)"""
    queries: dict[str, str]
    """Only the queries that have judgements in the test qrels."""
    qrels: dict[str, dict[str, int]]


def load_beir(folder: Path, split: str = "test", max_docs: int | None = None) -> BeirDataset:
    """Load a BEIR folder; `max_docs` keeps the judged documents first, then fills up to it."""
    for needed in ("corpus.jsonl", "queries.jsonl", f"qrels/{split}.tsv"):
        if not (folder / needed).is_file():
            raise FileNotFoundError(f"{folder} is not a BEIR dataset: {needed} is missing")
    qrels: dict[str, dict[str, int]] = {}
    with (folder / "qrels" / f"{split}.tsv").open() as handle:
        for row in csv.DictReader(handle, delimiter="\t"):
            qrels.setdefault(row["query-id"], {})[row["corpus-id"]] = int(row["score"])
    corpus: dict[str, tuple[str, str]] = {}
    with (folder / "corpus.jsonl").open() as handle:
        for line in handle:
            doc = json.loads(line)
            corpus[str(doc["_id"])] = (doc.get("title") or "", doc.get("text") or "")
    queries: dict[str, str] = {}
    with (folder / "queries.jsonl").open() as handle:
        for line in handle:
            query = json.loads(line)
            if str(query["_id"]) in qrels:
                queries[str(query["_id"])] = query["text"]
    if max_docs is not None and max_docs < len(corpus):
        judged = {d for judgements in qrels.values() for d in judgements if d in corpus}
        keep = sorted(judged)[:max_docs]
        keep += [d for d in corpus if d not in judged][: max_docs - len(keep)]
        corpus = {d: corpus[d] for d in keep}
        qrels = {
            q: {d: s for d, s in j.items() if d in corpus}
            for q, j in qrels.items()
            if any(d in corpus for d in j)
        }
        queries = {q: t for q, t in queries.items() if q in qrels}
    qrels = {q: j for q, j in qrels.items() if q in queries}
    return BeirDataset(folder.name, corpus, queries, qrels)


def document_uri(dataset: str, doc_id: str) -> str:
    return f"beir://{dataset}/{quote(doc_id, safe='')}"


def doc_id_from_uri(uri: str) -> str:
    return unquote(uri.rsplit("/", 1)[-1])


def as_parsed_documents(dataset: BeirDataset) -> list[ParsedDocument]:
    """Each corpus entry as a parsed document: its title element, then its text."""
    documents = []
    for doc_id, (title, text) in dataset.corpus.items():
        uri = document_uri(dataset.name, doc_id)
        elements = ([Element(title, "Title", depth=0)] if title.strip() else []) + (
            [Element(text, "NarrativeText")] if text.strip() else []
        )
        if not elements:
            continue
        digest = hashlib.sha256(f"{title}\n{text}".encode()).hexdigest()
        documents.append(
            ParsedDocument(
                source=SourceFile(uri=uri, path=Path(doc_id), size=len(text), mtime=0.0),
                content_hash=digest,
                elements=elements,
                title=title,
                filetype="beir",
            )
        )
    return documents
