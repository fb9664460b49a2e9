"""Source connectors.

A new source type is one module: a config model with a `type` literal and a class with
`from_config`, `list_items` and `fetch`; then one entry each in `SourceConfig` and `SOURCE_TYPES`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from pydantic import Field

from ingest.sources.http import HttpConfig, HttpSource
from ingest.sources.local_folder import LocalFolderConfig, LocalFolderSource
from ingest.sources.s3 import S3Config, S3Source
from ingest.types import DocumentSource

SourceConfig = Annotated[LocalFolderConfig | S3Config | HttpConfig, Field(discriminator="type")]

SOURCE_TYPES: dict[type, Callable[[Any], DocumentSource]] = {
    LocalFolderConfig: LocalFolderSource.from_config,
    S3Config: S3Source.from_config,
    HttpConfig: HttpSource.from_config,
}


def build_source(config: LocalFolderConfig | S3Config | HttpConfig) -> DocumentSource:
    return SOURCE_TYPES[type(config)](config)


__all__ = ["HttpConfig", "LocalFolderConfig", "S3Config", "SourceConfig", "build_source"]
