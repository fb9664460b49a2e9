"""The connector for each kind of `[[sources]]` entry."""

from __future__ import annotations

from config.sources import HttpConfig, LocalFolderConfig, PostgresConfig, S3Config, SourceConfig
from ingest.sources.http import HttpSource
from ingest.sources.local_folder import LocalFolderSource
from ingest.sources.postgres import PostgresSource
from ingest.sources.s3 import S3Source
from ingest.types import DocumentSource


def build_source(config: SourceConfig) -> DocumentSource:
    if isinstance(config, LocalFolderConfig):
        return LocalFolderSource.from_config(config)
    if isinstance(config, S3Config):
        return S3Source(config)
    if isinstance(config, HttpConfig):
        return HttpSource(config)
    if isinstance(config, PostgresConfig):
        return PostgresSource(config)
    raise TypeError(f"unknown source config {type(config).__name__}")
