from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from chunking.document_chunker import DocumentChunker
from chunking.title_chunker import TitleChunker
from ingest.types import Element, ParsedDocument, SourceFile


def _document(elements: list[Element]) -> ParsedDocument:
    source = SourceFile(uri="file:///doc.md", path=Path("/doc.md"), size=1, mtime=0.0)
    return ParsedDocument(source, "hash", elements, title="Guide", filetype="md")


LONG = " ".join(f"Sentence number {i} talks about pumps and valves." for i in range(120))


def test_chunks_never_exceed_the_model_token_limit(embedder) -> None:  # type: ignore[no-untyped-def]
    doc = _document([Element("Intro", "Title", depth=0), Element(LONG, "NarrativeText")])
    chunks = TitleChunker(embedder, overlap_tokens=16).run(doc)
    assert len(chunks) > 2
    assert any(c.context for c in chunks), "continuation chunks carry a context line"
    real = embedder.count_tokens([c.indexed_text for c in chunks])
    assert max(real) <= embedder.max_tokens


def test_heading_path_follows_title_depth(embedder) -> None:  # type: ignore[no-untyped-def]
    body = "This paragraph explains the installation steps in enough words to stand alone. " * 4
    doc = _document(
        [
            Element("Install", "Title", depth=0),
            Element(body, "NarrativeText", page_number=1),
            Element("On Linux", "Title", depth=1),
            Element(body, "NarrativeText", page_number=2),
            Element("Usage", "Title", depth=0),
            Element(body, "NarrativeText", page_number=3),
        ]
    )
    chunks = TitleChunker(embedder, min_section_tokens=8).run(doc)
    assert [c.headings for c in chunks] == [["Install"], ["Install", "On Linux"], ["Usage"]]
    assert [c.pages for c in chunks] == [[1], [2], [3]]
    assert chunks[1].text.startswith("On Linux"), "a chunk opens with its own heading"


def test_small_sections_merge_forward_so_a_heading_is_never_alone(embedder) -> None:  # type: ignore[no-untyped-def]
    body = "A real paragraph with enough words to be worth a chunk of its own here. " * 4
    doc = _document(
        [
            Element("Part I", "Title", depth=0),
            Element("Chapter 1", "Title", depth=1),
            Element(body, "NarrativeText"),
        ]
    )
    chunks = TitleChunker(embedder).run(doc)
    assert len(chunks) == 1
    assert chunks[0].text.startswith("Part I\n\nChapter 1")


def test_offsets_point_into_the_document_text(embedder) -> None:  # type: ignore[no-untyped-def]
    doc = _document([Element("Title here", "Title"), Element(LONG, "NarrativeText")])
    chunks = TitleChunker(embedder, overlap_tokens=0).run(doc)
    full = "\n\n".join(e.text for e in doc.elements)
    for chunk in chunks:
        assert full[chunk.char_start : chunk.char_end] == chunk.text


def test_overlap_repeats_text_between_consecutive_chunks(embedder) -> None:  # type: ignore[no-untyped-def]
    doc = _document([Element(LONG, "NarrativeText")])
    chunks = TitleChunker(embedder, overlap_tokens=32).run(doc)
    assert all(b.char_start < a.char_end for a, b in itertools.pairwise(chunks))
    no_overlap = TitleChunker(embedder, overlap_tokens=0).run(doc)
    assert all(b.char_start >= a.char_end for a, b in itertools.pairwise(no_overlap))


def test_each_chunk_knows_its_two_neighbours_on_each_side_but_does_not_store_them(embedder) -> None:  # type: ignore[no-untyped-def]
    doc = _document([Element("Intro", "Title", depth=0), Element(LONG * 2, "NarrativeText")])
    chunks = TitleChunker(embedder).run(doc)
    texts = [c.indexed_text for c in chunks]
    assert len(chunks) > 4
    for i, chunk in enumerate(chunks):
        assert chunk.text_before == texts[max(0, i - 2) : i][::-1]
        assert chunk.text_after == texts[i + 1 : i + 3]
        assert not {"text_before", "text_after"} & set(chunk.payload())


def test_chunk_ids_are_stable_and_change_with_the_config(embedder) -> None:  # type: ignore[no-untyped-def]
    doc = _document([Element(LONG, "NarrativeText")])
    chunker = TitleChunker(embedder)
    assert [c.chunk_id for c in chunker.run(doc, "cfg")] == [
        c.chunk_id for c in chunker.run(doc, "cfg")
    ]
    assert chunker.run(doc, "cfg")[0].chunk_id != chunker.run(doc, "other")[0].chunk_id


def test_overlap_must_be_smaller_than_the_chunk(embedder) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match="overlap"):
        TitleChunker(embedder, max_tokens=64, overlap_tokens=64)


def test_context_line_gives_each_chunk_what_its_text_lacks(embedder) -> None:  # type: ignore[no-untyped-def]
    doc = _document([Element("Pump maintenance", "Title", depth=0), Element(LONG, "NarrativeText")])
    chunks = TitleChunker(embedder, overlap_tokens=0).run(doc)
    assert chunks[0].text.startswith("Pump maintenance")
    assert chunks[0].context == "Guide", "the heading is in the text, the title is not"
    assert all(c.context == "Guide › Pump maintenance" for c in chunks[1:])
    assert chunks[1].indexed_text == f"Guide › Pump maintenance\n\n{chunks[1].text}"
    assert (
        chunks[1].text_hash
        != TitleChunker(embedder, overlap_tokens=0, context=False).run(doc)[1].text_hash
    ), "the embedding cache is keyed by what is embedded"


def test_context_off_indexes_the_text_alone(embedder) -> None:  # type: ignore[no-untyped-def]
    doc = _document([Element("Pump maintenance", "Title", depth=0), Element(LONG, "NarrativeText")])
    chunks = TitleChunker(embedder, context=False).run(doc)
    assert all(c.context == "" and c.indexed_text == c.text for c in chunks)


def test_a_long_context_line_is_capped_to_a_quarter_of_the_window(embedder) -> None:  # type: ignore[no-untyped-def]
    heading = " ".join(f"word{i}" for i in range(60))
    doc = _document([Element(heading[:190], "Title", depth=0), Element(LONG, "NarrativeText")])
    chunks = TitleChunker(embedder, max_tokens=128, overlap_tokens=0).run(doc)
    assert max(embedder.count_tokens([c.context for c in chunks])) <= 32
    assert max(embedder.count_tokens([c.indexed_text for c in chunks])) <= 128


def test_document_chunker_keeps_the_whole_document(embedder) -> None:  # type: ignore[no-untyped-def]
    doc = _document([Element("Pump maintenance", "Title", depth=0), Element(LONG, "NarrativeText")])
    (chunk,) = DocumentChunker(embedder).run(doc, "cfg")
    assert chunk.text == f"Pump maintenance\n\n{LONG}"
    assert chunk.token_count > embedder.max_tokens, "the embedder truncates; BM25 sees it all"
