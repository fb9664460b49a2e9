"""Web pages and files over HTTP(S): a list of URLs, a sitemap, or both."""

from __future__ import annotations

import mimetypes
import xml.etree.ElementTree as ElementTree
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING
from urllib.parse import urlparse

from config.sources import HttpConfig
from ingest.types import ParseError, Scope, SourceFile, SourceItem, SourceUnavailable

if TYPE_CHECKING:
    import httpx

_SITEMAP_NS = "{http://www.sitemaps.org/schemas/sitemap/0.9}"


class HttpSource:
    """Each URL is a document. The cheap fingerprint is the sitemap's `<lastmod>` where given,
    else the ETag or Last-Modified of a HEAD request; a server that sends neither gets the
    page fetched and its content hash compared."""

    def __init__(self, config: HttpConfig) -> None:
        if not config.urls and not config.sitemap:
            raise ValueError(f"http source '{config.name}' needs urls or a sitemap")
        self.config = config

    @classmethod
    def from_config(cls, config: HttpConfig) -> HttpSource:
        return cls(config)

    def _client(self) -> httpx.Client:
        import httpx

        return httpx.Client(timeout=self.config.timeout_s, follow_redirects=True)

    def skipped(self) -> list[tuple[str, str]]:
        return []

    def list_items(self) -> list[SourceItem]:
        return self._listed(None)

    def list_scope(self, scope: Scope) -> list[SourceItem]:
        """The source's URLs that `scope` names (a sync webhook's `urls`), asked for alone; a
        URL the source does not list is never requested, and one it no longer lists is gone."""
        return self._listed(scope)

    def _listed(self, scope: Scope | None) -> list[SourceItem]:
        import httpx

        lastmod: dict[str, str] = {}
        urls = list(self.config.urls)
        with self._client() as client:
            try:
                if self.config.sitemap:
                    sitemap = self._download(client, self.config.sitemap)
                    for url, modified in _sitemap_entries(sitemap):
                        urls.append(url)
                        if modified:
                            lastmod[url] = modified
                items = []
                for url in dict.fromkeys(urls):
                    if scope is not None and not scope.holds(url):
                        continue
                    fingerprint = lastmod.get(url) or _head_fingerprint(client, url)
                    items.append(
                        SourceItem(
                            uri=url, name=urlparse(url).path, size=None, fingerprint=fingerprint
                        )
                    )
            except (httpx.HTTPError, ParseError) as error:
                cause = str(error).splitlines()[0]  # httpx appends a line pointing to MDN
                raise SourceUnavailable(f"cannot list {self.config.name}: {cause}") from error
        return items

    @property
    def max_bytes(self) -> int:
        return int(self.config.max_file_mb * 2**20)

    def fetch(self, item: SourceItem, folder: Path) -> SourceFile:
        """Streamed to disk in blocks: a body never sits whole in memory, and one past
        `max_file_mb` is cut off and reported (not retried: it would be as large again)."""
        with self._client() as client, client.stream("GET", item.uri) as response:
            path = folder / _file_name(item.uri, response.headers.get("content-type", ""))
            size = 0
            with path.open("wb") as out:
                for block in self._capped_blocks(response):
                    size += len(block)
                    out.write(block)
        return SourceFile(uri=item.uri, path=path, size=size, mtime=0.0)

    def _download(self, client: httpx.Client, url: str) -> bytes:
        """A sitemap, in memory but within the same cap."""
        with client.stream("GET", url) as response:
            return b"".join(self._capped_blocks(response))

    def _capped_blocks(self, response: httpx.Response) -> Iterator[bytes]:
        """The body in 1 MB blocks, refused past `max_bytes`: declared or as it arrives."""
        response.raise_for_status()
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self.max_bytes:
            raise ParseError(self._too_large(f"{int(declared):,} bytes"))
        received = 0
        for block in response.iter_bytes(1 << 20):
            received += len(block)
            if received > self.max_bytes:
                raise ParseError(self._too_large(f"more than {self.max_bytes:,} bytes"))
            yield block

    def _too_large(self, size: str) -> str:
        return f"too large: {size}, over the source's max_file_mb of {self.config.max_file_mb:g} MB"


def _sitemap_entries(xml: bytes) -> list[tuple[str, str | None]]:
    root = ElementTree.fromstring(xml)
    entries = []
    for url in root.iter(f"{_SITEMAP_NS}url"):
        loc = url.findtext(f"{_SITEMAP_NS}loc")
        if loc:
            entries.append(
                (loc.strip(), (url.findtext(f"{_SITEMAP_NS}lastmod") or "").strip() or None)
            )
    return entries


def _head_fingerprint(client: httpx.Client, url: str) -> str:
    response = client.head(url)
    if response.status_code >= 400:
        return ""  # unknown: the run fetches it and compares content hashes
    headers = response.headers
    return headers.get("etag") or headers.get("last-modified") or ""


def _file_name(url: str, content_type: str) -> str:
    """A local name whose suffix tells the parser the format (a page URL often has none)."""
    name = PurePosixPath(urlparse(url).path).name or "index"
    if PurePosixPath(name).suffix:
        return name
    guessed = mimetypes.guess_extension(content_type.split(";")[0].strip()) or ".html"
    return name + guessed
