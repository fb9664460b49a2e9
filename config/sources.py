"""What each kind of source is configured with: a `[[sources]]` entry of the config file.

The connectors in `ingest/sources/` take these; `Settings.sources` holds a list of them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, SecretStr, model_validator

from sluice_client.request import Tenant

DEFAULT_EXCLUDE = ["**/.*", "**/.*/**"]

DEFAULT_TENANT = "default"
"""The tenant of a source that names none, and of every point indexed before tenants."""


def _valid_cron(expression: str | None) -> str | None:
    """A five-field cron expression, checked when the config loads (not first by `deploy`)."""
    if expression is None:
        return None
    from datetime import datetime

    from cronsim import CronSim, CronSimError

    try:
        CronSim(expression, datetime(2026, 1, 1))
    except CronSimError as error:
        raise ValueError(
            f"'{expression}' is not a cron expression ({error}); "
            "five fields, e.g. '*/15 * * * *' or '0 3 * * 1-5'"
        ) from None
    return expression


def _valid_url(url: str | None) -> str | None:
    """An http(s) URL with a host, checked when the config loads."""
    if url is None:
        return None
    from urllib.parse import urlparse

    parsed = urlparse(url)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise ValueError(f"'{url}' is not an http(s) URL (e.g. 'https://example.com/page')")
    return url


Url = Annotated[str, AfterValidator(_valid_url)]

Schedule = Annotated[
    str | None,
    AfterValidator(_valid_cron),
    Field(description="cron expression for `sluice deploy`; unset: run by hand only"),
]


class _SourceModel(BaseModel):
    """A `[[sources]]` entry: a key it does not know is a typo, never silently ignored."""

    model_config = ConfigDict(extra="forbid")

    partitions: int = Field(
        default=1,
        ge=1,
        le=256,
        description="On a work pool (`sluice deploy --work-pool`): the source's listing split into "
        "this many parts (a stable hash of each document's id) that workers sync in parallel "
        "under one run; elsewhere the source syncs in one process.",
    )


class LocalFolderConfig(_SourceModel):
    type: Literal["local"] = "local"
    name: str
    tenant: Tenant = DEFAULT_TENANT
    path: Path
    include: list[str] = Field(default_factory=lambda: ["**/*"])
    exclude: list[str] = Field(default_factory=lambda: list(DEFAULT_EXCLUDE))
    schedule: Schedule = None
    follow_symlinks: bool = Field(
        default=False,
        description="Read what links lead to outside the folder too; off, such links (and FIFOs, "
        "sockets, devices) are reported as skipped, never opened.",
    )
    live: bool = Field(
        default=False,
        description="Sync each change as the OS reports it, while `sluice deploy` serves the "
        "sources in-process (as `sluice ingest --source NAME --watch` does); the schedule, if "
        "any, still runs.",
    )


class S3Config(_SourceModel):
    type: Literal["s3"] = "s3"
    name: str
    tenant: Tenant = DEFAULT_TENANT
    bucket: str
    prefix: str = ""
    endpoint_url: Url | None = Field(
        default=None, description="S3-compatible endpoint; unset means AWS."
    )
    region: str | None = None
    access_key_id: str | None = Field(
        default=None, description="Unset means boto3's own chain (environment, profile, role)."
    )
    secret_access_key: SecretStr | None = None
    include: list[str] = Field(default_factory=lambda: ["**/*"])
    exclude: list[str] = Field(default_factory=lambda: list(DEFAULT_EXCLUDE))
    schedule: Schedule = None
    queue_url: Url | None = Field(
        default=None,
        description="An SQS queue that receives the bucket's event notifications "
        "(s3:ObjectCreated:*, s3:ObjectRemoved:*): with `live = true`, each event's objects are "
        "synced as it comes; without a queue the source is listed (ETags) on its schedule.",
    )
    live: bool = Field(
        default=False,
        description="Sync the objects of each event from `queue_url` as it comes, while "
        "`sluice deploy` serves the sources in-process (or `sluice ingest --source NAME --watch`).",
    )

    @model_validator(mode="after")
    def _live_needs_a_queue(self) -> S3Config:
        if self.live and not self.queue_url:
            raise ValueError("a live S3 source needs `queue_url` (its bucket's event queue)")
        return self


class HttpConfig(_SourceModel):
    type: Literal["http"] = "http"
    name: str
    tenant: Tenant = DEFAULT_TENANT
    urls: list[Url] = Field(default_factory=list)
    sitemap: Url | None = Field(default=None, description="sitemap.xml URL; its <loc>s are added.")
    timeout_s: float = Field(default=30.0, gt=0)
    max_file_mb: float = Field(
        default=100,
        gt=0,
        description="A page, file or sitemap larger than this is not read (it is streamed to "
        "disk, never held in memory, and cut off here).",
    )
    schedule: Schedule = None

    @model_validator(mode="after")
    def _has_pages(self) -> HttpConfig:
        if not self.urls and not self.sitemap:
            raise ValueError("an http source needs `urls`, a `sitemap`, or both")
        return self


class PostgresConfig(_SourceModel):
    """A PostgreSQL table or query as a source: one document per row."""

    type: Literal["postgres"] = "postgres"
    name: str
    tenant: Tenant = DEFAULT_TENANT
    url: SecretStr = Field(description="postgresql://user:password@host:5432/database")
    query: str = Field(
        description="A SELECT whose rows are the documents, e.g. `SELECT * FROM faq`"
    )
    id_column: str = Field(description="The column that identifies a row, stable across edits")
    text_column: str | None = Field(default=None, description="The column holding the text")
    template: str | None = Field(
        default=None,
        description="The text made from the row's columns instead, e.g. "
        "'# {title}\n\n{body}' (Markdown: a heading becomes the chunks' heading)",
    )
    metadata_columns: list[str] = Field(
        default_factory=list,
        description="Columns stored with each of the row's chunks and returned with its hits "
        "(`metadata` in a hit), as text; a change to one is a change to the document",
    )
    updated_at_column: str | None = Field(
        default=None,
        description="A column that changes with the row: listing then reads ids and this only; "
        "without it a hash of each row, computed by the database, tells what changed",
    )
    notify_channel: str | None = Field(
        default=None,
        description="A LISTEN/NOTIFY channel whose payloads are changed rows' ids (a trigger "
        "sends them: docs/live.md); with `live = true`, each is synced as it comes",
    )
    live: bool = False
    schedule: Schedule = None

    @model_validator(mode="after")
    def _text_and_channel(self) -> PostgresConfig:
        if (self.text_column is None) == (self.template is None):
            raise ValueError("a postgres source needs one of `text_column` or `template`")
        if self.live and not self.notify_channel:
            raise ValueError("a live postgres source needs `notify_channel`")
        return self


SourceConfig = Annotated[
    LocalFolderConfig | S3Config | HttpConfig | PostgresConfig, Field(discriminator="type")
]
