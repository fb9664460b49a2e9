"""What each kind of source is configured with: a `[[sources]]` entry of the config file.

The connectors in `ingest/sources/` take these; `Settings.sources` holds a list of them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, Field, SecretStr

DEFAULT_EXCLUDE = ["**/.*", "**/.*/**"]


class LocalFolderConfig(BaseModel):
    type: Literal["local"] = "local"
    name: str
    path: Path
    include: list[str] = Field(default_factory=lambda: ["**/*"])
    exclude: list[str] = Field(default_factory=lambda: list(DEFAULT_EXCLUDE))
    schedule: str | None = Field(default=None, description="cron expression for `sluice deploy`")


class S3Config(BaseModel):
    type: Literal["s3"] = "s3"
    name: str
    bucket: str
    prefix: str = ""
    endpoint_url: str | None = Field(
        default=None, description="S3-compatible endpoint; unset means AWS."
    )
    region: str | None = None
    access_key_id: str | None = Field(
        default=None, description="Unset means boto3's own chain (environment, profile, role)."
    )
    secret_access_key: SecretStr | None = None
    include: list[str] = Field(default_factory=lambda: ["**/*"])
    exclude: list[str] = Field(default_factory=lambda: list(DEFAULT_EXCLUDE))
    schedule: str | None = None


class HttpConfig(BaseModel):
    type: Literal["http"] = "http"
    name: str
    urls: list[str] = Field(default_factory=list)
    sitemap: str | None = Field(default=None, description="sitemap.xml URL; its <loc>s are added.")
    timeout_s: float = Field(default=30.0, gt=0)
    schedule: str | None = None


SourceConfig = Annotated[LocalFolderConfig | S3Config | HttpConfig, Field(discriminator="type")]
