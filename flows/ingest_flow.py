"""The Prefect ingest flow: thin orchestration of `flows.pipeline`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import flow, task
from prefect.artifacts import create_markdown_artifact

from flows.components import build_chunker, build_parser, config_fingerprint
from flows.pipeline import run_ingest
from flows.progress import report_progress
from index.from_settings import bm25_params, build_cache, build_embedder, build_store
from ingest.local_folder import LocalFolderSource
from ingest.types import SourceFile
from sluice.settings import Settings


@task(retries=2, retry_delay_seconds=2)
def list_source_files(path: str, include: list[str], exclude: list[str]) -> list[SourceFile]:
    return LocalFolderSource(Path(path), include, exclude).list_files()


@task
def ingest_files(files: list[SourceFile], source_name: str, settings: Settings) -> dict[str, Any]:
    embedder = build_embedder(settings)
    store = build_store(settings)
    try:
        report = run_ingest(
            files,
            parser=build_parser(settings),
            chunker=build_chunker(settings, embedder),
            embedder=embedder,
            store=store,
            alias=settings.index_name,
            bm25=bm25_params(settings),
            source_name=source_name,
            config_fingerprint=config_fingerprint(settings),
            cache=build_cache(settings),
            progress=report_progress,
        )
    finally:
        store.close()
    create_markdown_artifact(markdown=report.to_markdown(), key="ingest-report")
    return report.to_dict()


@flow(name="ingest", log_prints=True)
def ingest_flow(
    path: str,
    include: list[str] | None = None,
    exclude: list[str] | None = None,
    settings: Settings | None = None,
) -> dict[str, Any]:
    """Ingest a local folder (recursively) into the configured index; returns the run report."""
    settings = settings or Settings()
    files = list_source_files(path, include or settings.include, exclude or settings.exclude)
    source_name = Path(path).resolve().as_uri()
    return ingest_files(files, source_name, settings)
