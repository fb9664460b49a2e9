"""The ingest pipeline without Prefect: idempotence, versions, failures."""

from __future__ import annotations

from pathlib import Path

from composition.components import Components
from config.settings import Settings
from pipelines.report import IngestReport
from tests.conftest import ingest_folder


def _ingest(settings: Settings, folder: Path, embedder) -> IngestReport:  # type: ignore[no-untyped-def]
    report: IngestReport = ingest_folder(settings, folder, embedder)
    return report


def _point_ids(settings: Settings) -> set[str]:
    store = Components(settings).store()
    try:
        ids = set()
        for token in ("alpha", "beta", "gamma", "delta"):
            from index.search.searcher import IndexSearcher

            outcome = IndexSearcher(store, lambda m: None).search(  # type: ignore[arg-type,return-value]
                "docs", token, "bm25", 100
            )
            ids |= {h.id for h in outcome.result.hits}
        return ids
    finally:
        store.close()


def test_ingesting_twice_changes_nothing(tmp_path: Path, embedder) -> None:  # type: ignore[no-untyped-def]
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "a.md").write_text("# Alpha\n\nalpha beta text about alpha things.\n")
    (folder / "b.md").write_text("# Gamma\n\ngamma delta text about gamma things.\n")
    settings = Settings(data_dir=tmp_path / "data")
    first = _ingest(settings, folder, embedder)
    ids = _point_ids(settings)
    second = _ingest(settings, folder, embedder)
    assert first.points_in_index == second.points_in_index == first.chunks == 2
    assert _point_ids(settings) == ids


def test_changed_document_replaces_its_old_version(tmp_path: Path, embedder) -> None:  # type: ignore[no-untyped-def]
    folder = tmp_path / "docs"
    folder.mkdir()
    long_text = "\n\n".join(
        f"Paragraph {i} about alpha and beta in detail. " * 12 for i in range(8)
    )
    (folder / "a.md").write_text("# Alpha\n\n" + long_text)
    settings = Settings(data_dir=tmp_path / "data")
    before = _ingest(settings, folder, embedder)
    assert before.points_in_index > 1
    (folder / "a.md").write_text("# Alpha\n\nalpha is now short.\n")
    after = _ingest(settings, folder, embedder)
    assert after.points_in_index == 1, "a shrinking document leaves no stale tail"


def test_broken_files_are_reported_and_the_run_goes_on(tmp_path: Path, embedder) -> None:  # type: ignore[no-untyped-def]
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "good.md").write_text("# Good\n\nalpha content that parses fine.\n")
    (folder / "broken.pdf").write_bytes(b"%PDF-1.7 this is not really a pdf")
    (folder / "empty.txt").write_text("   \n")
    report = _ingest(Settings(data_dir=tmp_path / "data"), folder, embedder)
    assert report.files_seen == 3 and len(report.new) == 1
    reasons = {f.uri.rsplit("/", 1)[-1]: f.reason for f in report.failed}
    assert set(reasons) == {"broken.pdf", "empty.txt"}
    assert all(reasons.values())


def _docx_that_takes_long_to_parse(path: Path, paragraphs: int = 200_000) -> None:
    """A 30 kB .docx of 11 MB of XML: `unstructured` needs minutes and ~1 GB to parse it."""
    import zipfile

    main = "application/vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml"
    office = "http://schemas.openxmlformats.org/officeDocument/2006/relationships/officeDocument"
    w = "http://schemas.openxmlformats.org/wordprocessingml/2006/main"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as docx:
        docx.writestr(
            "[Content_Types].xml",
            '<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
            '<Default Extension="rels" ContentType="application/vnd.openxmlformats-package.'
            'relationships+xml"/><Default Extension="xml" ContentType="application/xml"/>'
            f'<Override PartName="/word/document.xml" ContentType="{main}"/></Types>',
        )
        docx.writestr(
            "_rels/.rels",
            '<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
            f'<Relationship Id="rId1" Type="{office}" Target="word/document.xml"/></Relationships>',
        )
        with docx.open("word/document.xml", "w") as document:
            document.write(f'<w:document xmlns:w="{w}"><w:body>'.encode())
            paragraph = b"<w:p><w:r><w:t>word again and again</w:t></w:r></w:p>" * 1000
            for _ in range(paragraphs // 1000):
                document.write(paragraph)
            document.write(b"</w:body></w:document>")


def _pdf_with_text(text: str) -> bytes:
    """A one-page PDF with a text layer."""
    stream = f"BT /F1 12 Tf 72 720 Td ({text}) Tj ET".encode()
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R"
        b" /Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length %d >>\nstream\n%s\nendstream" % (len(stream), stream),
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    body, offsets = b"%PDF-1.4\n", []
    for number, content in enumerate(objects, 1):
        offsets.append(len(body))
        body += b"%d 0 obj\n%s\nendobj\n" % (number, content)
    xref = b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    xref += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    trailer = b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1,
        len(body),
    )
    return body + xref + trailer


def test_a_file_that_stalls_the_parser_is_stopped_quarantined_and_the_run_goes_on(
    tmp_path: Path,
    embedder,  # type: ignore[no-untyped-def]
) -> None:
    from pipelines.document_stream import ReadBudget

    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "good.md").write_text("# Good\n\nalpha content that parses fine.\n")
    # Loading the PDF partitioner takes ~5 s of CPU: the budget counts the parse, not that.
    (folder / "good.pdf").write_bytes(_pdf_with_text("Good alpha content in a PDF."))
    _docx_that_takes_long_to_parse(folder / "stall.docx")
    settings = Settings(data_dir=tmp_path / "data")
    budget = ReadBudget(seconds=3, memory_mb=0)
    first = ingest_folder(settings, folder, embedder, budget=budget)
    assert sorted(d.uri.rsplit("/", 1)[-1] for d in first.new) == ["good.md", "good.pdf"]
    [failed] = first.failed
    assert failed.uri.endswith("stall.docx") and "longer than 3 s" in failed.reason
    second = ingest_folder(settings, folder, embedder, budget=budget)
    assert [q.rsplit("/", 1)[-1] for q in second.quarantined] == ["stall.docx"]
    assert not second.failed and second.seconds < 3, "a quarantined file is not read again"


def test_a_file_that_makes_the_parser_grow_past_the_memory_limit_is_stopped(
    tmp_path: Path,
    embedder,  # type: ignore[no-untyped-def]
) -> None:
    from pipelines.document_stream import ReadBudget

    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "good.md").write_text("# Good\n\nalpha content that parses fine.\n")
    _docx_that_takes_long_to_parse(folder / "huge.docx")
    report = ingest_folder(
        Settings(data_dir=tmp_path / "data"),
        folder,
        embedder,
        # Memory the only limit, whatever the load: a reader holds ~300 MB once its parser is
        # loaded and passes 500 MB within seconds of reading this file's XML (~1 GB at its end).
        budget=ReadBudget(seconds=0, memory_mb=450),
    )
    assert len(report.new) == 1
    [failed] = report.failed
    assert "over the per-document memory limit of 450 MB" in failed.reason


def test_known_chunk_texts_take_their_embedding_from_the_cache(tmp_path: Path, embedder) -> None:  # type: ignore[no-untyped-def]
    from index.write.embedding_cache import EmbeddingCache

    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "a.md").write_text("# Alpha\n\nalpha beta text about alpha things.\n")
    runs = []
    for index in ("first", "second"):  # a second index over the same cache: nothing to embed
        settings = Settings(data_dir=tmp_path / "data", index_name=index)
        cache = EmbeddingCache(settings.embedding_cache_dir, embedder.model_id)
        runs.append(ingest_folder(settings, folder, embedder, cache=cache))
    assert (runs[0].embedded, runs[0].from_cache) == (1, 0)
    assert (runs[1].embedded, runs[1].from_cache) == (0, 1)


def test_a_first_version_left_without_its_alias_is_adopted(tmp_path: Path, embedder) -> None:  # type: ignore[no-untyped-def]
    from index.contracts import Bm25Params
    from index.versions import create_next_version
    from index.write.target import ensure_collection

    store = Components(Settings(data_dir=tmp_path / "data")).store()
    try:
        create_next_version(store, "docs", embedder, Bm25Params())
        assert store.resolve_alias("docs") is None, "as a crash before set_alias leaves it"
        spec = ensure_collection(store, "docs", embedder, Bm25Params(), [])
        assert spec.name == "docs__v1" and store.list_collections() == ["docs__v1"]
        assert store.resolve_alias("docs") == "docs__v1"
    finally:
        store.close()


def test_rewriting_a_version_with_fewer_chunks_leaves_no_surplus(tmp_path: Path, embedder) -> None:  # type: ignore[no-untyped-def]
    """The same document version chunked into fewer chunks (a retried document after a model
    switch changed the tokenizer) keeps none of the earlier attempt's extra ordinals."""
    from chunking.types import Chunk
    from index.write.target import IndexTarget, write_documents

    folder = tmp_path / "docs"
    folder.mkdir()
    long_text = "\n\n".join(f"Paragraph {i} about alpha in detail. " * 12 for i in range(8))
    (folder / "a.md").write_text("# Alpha\n\n" + long_text)
    settings = Settings(data_dir=tmp_path / "data")
    assert _ingest(settings, folder, embedder).points_in_index > 1
    store = Components(settings).store()
    try:
        collection = store.resolve_alias("docs") or ""
        payload = next(
            p.payload
            for page in store.read_points(collection)
            for p in page
            if p.payload["ordinal"] == 0
        )
        derived = ("text_hash", "public_uri")  # computed from the others, not Chunk fields
        first = Chunk(**{k: v for k, v in payload.items() if k not in derived})
        target = IndexTarget(store, "docs", embedder, Components(settings).bm25_params())
        write_documents(target, [(first.doc_id, [first])])
        assert store.count(collection) == 1
    finally:
        store.close()
