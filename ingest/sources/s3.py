"""An S3 bucket (or any S3-compatible store: MinIO, Ceph, R2) as a document source."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Any

from config.sources import S3Config
from ingest.sources.local_folder import selected
from ingest.types import Scope, SourceFile, SourceItem, SourceUnavailable


class S3Source:
    """Objects under `prefix`, matched by globs on the key below the prefix.

    The ETag is the cheap fingerprint: an object is downloaded only when it changes.
    """

    def __init__(self, config: S3Config) -> None:
        self.config = config
        self._client: Any = None

    @classmethod
    def from_config(cls, config: S3Config) -> S3Source:
        return cls(config)

    def __getstate__(self) -> dict[str, Any]:
        """Picklable for the parse processes: each opens its own client (boto3's is not)."""
        return {"config": self.config, "_client": None}

    @property
    def client(self) -> Any:
        if self._client is None:
            import boto3

            secret = self.config.secret_access_key
            self._client = boto3.client(
                "s3",
                endpoint_url=self.config.endpoint_url,
                region_name=self.config.region,
                aws_access_key_id=self.config.access_key_id,
                aws_secret_access_key=secret.get_secret_value() if secret else None,
            )
        return self._client

    def skipped(self) -> list[tuple[str, str]]:
        return []

    def list_items(self) -> list[SourceItem]:
        return sorted(self._listed(self.config.prefix), key=lambda item: item.uri)

    def list_scope(self, scope: Scope) -> list[SourceItem]:
        """Each key in `scope`, and what lies below it as a folder; a key outside the source's
        prefix lists nothing."""
        base = f"s3://{self.config.bucket}/"
        found: dict[str, SourceItem] = {}
        for uri in sorted(scope.uris):
            key = uri.removeprefix(base)
            if not uri.startswith(base) or not key.startswith(self.config.prefix):
                continue
            for item in self._listed(key):
                if item.name == key or item.name.startswith(key.rstrip("/") + "/"):
                    found[item.uri] = item
        return sorted(found.values(), key=lambda item: item.uri)

    def _listed(self, prefix: str) -> Iterator[SourceItem]:
        from botocore.exceptions import BotoCoreError, ClientError

        source_prefix = self.config.prefix
        try:
            pages = self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.config.bucket, Prefix=prefix
            )
            for page in pages:
                for entry in page.get("Contents", []):
                    key = entry["Key"]
                    relative = key[len(source_prefix) :].lstrip("/")
                    if key.endswith("/") or not selected(
                        relative, self.config.include, self.config.exclude
                    ):
                        continue
                    yield SourceItem(
                        uri=f"s3://{self.config.bucket}/{key}",
                        name=key,
                        size=int(entry["Size"]),
                        fingerprint=str(entry["ETag"]).strip('"'),
                    )
        except (BotoCoreError, ClientError) as error:
            raise SourceUnavailable(
                f"cannot list s3://{self.config.bucket}/{prefix}: {error}"
            ) from error

    def fetch(self, item: SourceItem, folder: Path) -> SourceFile:
        path = folder / PurePosixPath(item.name).name
        self.client.download_file(self.config.bucket, item.name, str(path))
        return SourceFile(uri=item.uri, path=path, size=path.stat().st_size, mtime=0.0)
