"""The Prefect ingest flow: thin orchestration of `flows.pipeline.sync_source`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import flow
from prefect.artifacts import create_markdown_artifact

from flows.components import build_chunker, build_parser, fingerprint_for
from flows.pipeline import IndexTarget, IngestParts, SyncOptions, sync_source
from flows.progress import report_progress
from flows.report import IngestReport
from index.from_settings import bm25_params, build_cache, build_store, index_embedder
from ingest.manifest import Manifest, RunLock
from ingest.sources import LocalFolderConfig, SourceConfig, build_source
from sluice.settings import Settings


def folder_source(settings: Settings, path: Path) -> LocalFolderConfig:
    """An ad-hoc folder source, named by its location, with the global include/exclude."""
    return LocalFolderConfig(
        name=path.resolve().as_uri(),
        path=path,
        include=settings.include,
        exclude=settings.exclude,
    )


def run_sync(
    settings: Settings, config: SourceConfig, dry_run: bool = False, wait_for_lock_s: float = 0.0
) -> IngestReport:
    """Plain-Python sync of one source into the configured index, under the index's run lock."""
    source = build_source(config)
    with RunLock(settings.run_lock_path(), settings.index_name, wait_for_lock_s):
        store = build_store(settings)
        manifest = Manifest(settings.manifest_path())
        try:
            embedder = index_embedder(settings, store)
            parts = IngestParts(
                parser=build_parser(settings),
                chunker=build_chunker(settings, embedder),
                target=IndexTarget(
                    store,
                    settings.index_name,
                    embedder,
                    bm25_params(settings),
                    None if dry_run else build_cache(settings, embedder),
                ),
                config_fingerprint=fingerprint_for(settings),
            )
            options = SyncOptions(
                dry_run=dry_run,
                max_deleted_fraction=settings.max_deleted_fraction,
                parse_workers=settings.parse_workers,
                attempts=settings.ingest_attempts,
                backoff_s=settings.ingest_backoff_s,
                batch_size=settings.ingest_batch_size,
            )
            return sync_source(source, config.name, parts, manifest, options, report_progress)
        finally:
            manifest.close()
            store.close()


@flow(name="ingest", log_prints=True)
def ingest_flow(
    source: str | None = None,
    path: str | None = None,
    dry_run: bool = False,
    wait_for_lock_s: float = 0.0,
    settings: Settings | None = None,
) -> dict[str, Any]:
    """Sync one configured source (by name) or a folder (by path) into the index; returns the
    run report, also published as a Markdown artifact."""
    settings = settings or Settings()
    if (source is None) == (path is None):
        raise ValueError("give exactly one of a source name or a path")
    config = settings.source(source) if source else folder_source(settings, Path(str(path)))
    report = run_sync(settings, config, dry_run, wait_for_lock_s)
    create_markdown_artifact(
        markdown=report.to_markdown(),
        key=f"ingest-{settings.index_name}",
        description=f"{'dry run of ' if dry_run else ''}{config.name}",
    )
    print(
        f"{config.name}: {len(report.new)} new, {len(report.changed)} changed, "
        f"{report.unchanged} unchanged, {len(report.deleted)} deleted, {len(report.failed)} failed"
    )
    return report.to_dict()
