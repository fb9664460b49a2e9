"""S3 against a real S3-compatible server process (moto_server), HTTP against a local server."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest

from config.settings import Settings
from config.sources import HttpConfig, S3Config
from ingest.sources.build import build_source
from ingest.sources.http import HttpSource
from ingest.types import ListsScope, Scope
from pipelines.report import IngestReport
from tests.conftest import free_port, shell_env, sync


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    moto = shutil.which("moto_server", path=os.path.dirname(sys.executable))
    assert moto, "moto[server] is a test dependency"
    port = free_port()
    server = subprocess.Popen(
        [moto, "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    import httpx

    for _ in range(200):
        try:
            httpx.get(url, timeout=1)
            break
        except httpx.HTTPError:
            time.sleep(0.1)
    yield url
    server.terminate()
    server.wait(timeout=30)


def _s3_config(endpoint: str, bucket: str) -> S3Config:
    return S3Config(
        name="bucket-docs",
        bucket=bucket,
        prefix="docs/",
        endpoint_url=endpoint,
        region="us-east-1",
        access_key_id="testing",
        secret_access_key="testing",  # type: ignore[arg-type]
        include=["**/*.md"],
    )


def _names(outcomes: list[Any]) -> list[str]:
    return sorted(str(getattr(o, "uri", o)).rsplit("/", 1)[-1] for o in outcomes)


def test_s3_source_syncs_new_changed_and_deleted_objects(
    s3_endpoint: str,
    tmp_path: Path,
    embedder,  # type: ignore[no-untyped-def]
) -> None:
    config = _s3_config(s3_endpoint, "sluice-test")
    source = build_source(config)
    client = source.client  # type: ignore[attr-defined]
    client.create_bucket(Bucket="sluice-test")
    for i in range(4):
        client.put_object(
            Bucket="sluice-test", Key=f"docs/d{i}.md", Body=f"# D{i}\n\nObject {i} on pumps.\n"
        )
    client.put_object(Bucket="sluice-test", Key="docs/skip.txt", Body=b"not included")
    client.put_object(Bucket="sluice-test", Key="other/d9.md", Body=b"# outside the prefix")
    settings = Settings(data_dir=tmp_path / "data", max_deleted_fraction=0.5)

    first: IngestReport = sync(settings, source, embedder, config.name)
    assert _names(first.new) == ["d0.md", "d1.md", "d2.md", "d3.md"]
    assert all(d.uri.startswith("s3://sluice-test/docs/") for d in first.new)

    client.put_object(Bucket="sluice-test", Key="docs/d1.md", Body=b"# D1\n\nRewritten object.\n")
    client.delete_object(Bucket="sluice-test", Key="docs/d2.md")
    second: IngestReport = sync(settings, build_source(config), embedder, config.name)
    assert _names(second.changed) == ["d1.md"] and _names(second.deleted) == ["d2.md"]
    assert second.unchanged == 2 and second.points_in_index == 3

    third: IngestReport = sync(settings, build_source(config), embedder, config.name)
    assert third.unchanged == 3 and third.stage_seconds["read_parse"] == 0, "ETag: no download"


def test_an_s3_scope_lists_its_keys_and_folders_only_below_the_prefix(s3_endpoint: str) -> None:
    from flows.ingest_flow import scope_within

    config = _s3_config(s3_endpoint, "sluice-test-scope")
    source = build_source(config)
    client = source.client  # type: ignore[attr-defined]
    client.create_bucket(Bucket="sluice-test-scope")
    for key in ("docs/a.md", "docs/a.md.old.md", "docs/sub/b.md", "docs/sub/c.md", "other/x.md"):
        client.put_object(Bucket="sluice-test-scope", Key=key, Body=b"# text")
    scope = scope_within(config, ["a.md", "sub", "gone.md", "../other/x.md"])
    listed = source.list_scope(scope)  # type: ignore[attr-defined]
    assert [item.name for item in listed] == ["docs/a.md", "docs/sub/b.md", "docs/sub/c.md"]
    assert scope.holds("s3://sluice-test-scope/docs/gone.md"), "a gone key is in it: deleted"


def test_a_listed_s3_source_can_go_to_the_parse_processes(s3_endpoint: str) -> None:
    import pickle

    source = build_source(_s3_config(s3_endpoint, "sluice-test-pickle"))
    source.client.create_bucket(Bucket="sluice-test-pickle")  # type: ignore[attr-defined]
    source.client.put_object(Bucket="sluice-test-pickle", Key="docs/a.md", Body=b"# A")  # type: ignore[attr-defined]
    (item,) = source.list_items()
    copy = pickle.loads(pickle.dumps(source))
    assert copy.list_items() == [item]


def test_s3_source_that_cannot_be_listed_is_a_clear_error(s3_endpoint: str) -> None:
    from ingest.types import SourceUnavailable

    source = build_source(_s3_config(s3_endpoint, "no-such-bucket"))
    with pytest.raises(SourceUnavailable, match="no-such-bucket"):
        source.list_items()


class _Site(SimpleHTTPRequestHandler):
    """Serves a folder; /flaky fails twice before it works, /down always fails, /endless sends
    a page that never ends, without a Content-Length."""

    hits: ClassVar[dict[str, int]] = {}

    def log_message(self, *args: Any) -> None:
        return None

    def do_HEAD(self) -> None:
        self.hits[f"HEAD {self.path}"] = self.hits.get(f"HEAD {self.path}", 0) + 1
        super().do_HEAD()

    def do_GET(self) -> None:
        self.hits[self.path] = self.hits.get(self.path, 0) + 1
        if self.path == "/down" or (self.path == "/flaky" and self.hits[self.path] <= 2):
            self.send_error(503, "try later")
            return
        if self.path == "/flaky":
            self.path = "/flaky.html"
        if self.path == "/endless":
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.end_headers()
            try:
                while True:
                    self.wfile.write(b"<p>more and more</p>" * 5000)
            except OSError:  # the client hung up
                return
        super().do_GET()


@pytest.fixture()
def website(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    root = tmp_path / "site"
    root.mkdir()
    for name in ("a", "b", "flaky"):
        (root / f"{name}.html").write_text(
            f"<html><head><title>Page {name}</title></head>"
            f"<body><h1>Page {name}</h1><p>All about valves and page {name}.</p></body></html>"
        )
    _Site.hits = {}
    handler = lambda *a, **k: _Site(*a, directory=str(root), **k)  # noqa: E731
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", root
    server.shutdown()


def _sitemap(root: Path, base: str, pages: dict[str, str]) -> None:
    entries = "".join(
        f"<url><loc>{base}/{page}</loc><lastmod>{modified}</lastmod></url>"
        for page, modified in pages.items()
    )
    (root / "sitemap.xml").write_text(
        '<?xml version="1.0"?><urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">'
        f"{entries}</urlset>"
    )


def test_http_sitemap_source_follows_lastmod(
    website: tuple[str, Path],
    tmp_path: Path,
    embedder,  # type: ignore[no-untyped-def]
) -> None:
    base, root = website
    _sitemap(root, base, {"a.html": "2026-01-01", "b.html": "2026-01-01"})
    config = HttpConfig(name="site", sitemap=f"{base}/sitemap.xml")
    settings = Settings(data_dir=tmp_path / "data", max_deleted_fraction=0.5)
    first: IngestReport = sync(settings, build_source(config), embedder, "site")
    assert _names(first.new) == ["a.html", "b.html"] and first.points_in_index == 2

    (root / "b.html").write_text("<html><body><h1>Page b</h1><p>Now about pumps.</p></body></html>")
    _sitemap(root, base, {"a.html": "2026-01-01", "b.html": "2026-02-01"})
    second: IngestReport = sync(settings, build_source(config), embedder, "site")
    assert _names(second.changed) == ["b.html"] and second.unchanged == 1


def test_an_http_scope_asks_for_its_listed_urls_alone_and_never_an_unlisted_one(
    website: tuple[str, Path],
) -> None:
    base, root = website
    _sitemap(root, base, {"b.html": "2026-01-01"})
    source = HttpSource(
        HttpConfig(name="site", urls=[f"{base}/a.html"], sitemap=f"{base}/sitemap.xml")
    )
    assert isinstance(source, ListsScope)
    _Site.hits = {}
    wanted = {f"{base}/a.html", f"{base}/flaky.html", "http://169.254.169.254/latest/"}
    items = source.list_scope(Scope(frozenset(wanted)))
    assert [item.uri for item in items] == [f"{base}/a.html"]
    assert _Site.hits == {"/sitemap.xml": 1, "HEAD /a.html": 1}, "nothing unlisted requested"
    by_sitemap = source.list_scope(Scope(frozenset({f"{base}/b.html"})))
    assert [(i.uri, i.fingerprint) for i in by_sitemap] == [(f"{base}/b.html", "2026-01-01")]


def test_http_failures_are_retried_with_backoff_then_quarantined(
    website: tuple[str, Path],
    tmp_path: Path,
    embedder,  # type: ignore[no-untyped-def]
) -> None:
    base, _ = website
    config = HttpConfig(name="site", urls=[f"{base}/a.html", f"{base}/flaky", f"{base}/down"])
    settings = Settings(data_dir=tmp_path / "data", ingest_attempts=3)
    report: IngestReport = sync(settings, build_source(config), embedder, "site")
    assert _names(report.new) == ["a.html", "flaky"], "the third try of /flaky worked"
    assert _names(report.failed) == ["down"] and "503" in report.failed[0].reason
    assert _Site.hits["/down"] == 3
    again: IngestReport = sync(settings, build_source(config), embedder, "site")
    assert _names(again.quarantined) == ["down"] and _Site.hits["/down"] == 3


def test_http_bodies_past_the_size_cap_fail_without_being_held_in_memory(
    website: tuple[str, Path],
    tmp_path: Path,
    embedder,  # type: ignore[no-untyped-def]
) -> None:
    base, root = website
    (root / "big.html").write_text("<p>" + "x" * 3_000_000 + "</p>")
    config = HttpConfig(
        name="site", urls=[f"{base}/a.html", f"{base}/big.html", f"{base}/endless"], max_file_mb=2
    )
    report: IngestReport = sync(
        Settings(data_dir=tmp_path / "data"), build_source(config), embedder, "site"
    )
    assert _names(report.new) == ["a.html"]
    reasons = {r.uri.rsplit("/", 1)[-1]: r.reason for r in report.failed}
    assert reasons["big.html"].startswith(
        "too large: 3,000,007 bytes, over the source's max_file_mb"
    )
    assert reasons["endless"].startswith("too large: more than 2,097,152 bytes")
    assert _Site.hits["/endless"] == 1, "a body too large is not fetched again"


def _source_failure(tmp_path: Path, source_toml: str) -> subprocess.CompletedProcess[str]:
    """`sluice ingest --source broken` as a user runs it, in a process of its own, recording
    its run on the session's Prefect server (as with `PREFECT_API_URL` set)."""
    from prefect.settings import get_current_settings

    config = tmp_path / "sluice.toml"
    config.write_text(f'[[sources]]\nname = "broken"\n{source_toml}')
    env = shell_env()
    env |= {
        "SLUICE_CONFIG_FILE": str(config),
        "SLUICE_DATA_DIR": str(tmp_path / "data"),
        "PREFECT_API_URL": str(get_current_settings().api.url),
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
    }
    command = [sys.executable, "-m", "sluice", "ingest", "--source", "broken"]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)


def test_a_source_that_cannot_be_listed_fails_the_run_in_one_line(
    tmp_path: Path, s3_endpoint: str, website: tuple[str, Path], prefect_server: None
) -> None:
    """An S3 endpoint that is down, a bucket that does not exist, a sitemap that is 404: exit
    2, one line naming the source and the cause, no traceback (it is in the run's log)."""
    base, _ = website
    cases = {
        "endpoint down": (
            f'type = "s3"\nregion = "us-east-1"\nbucket = "docs"\n'
            f'endpoint_url = "http://127.0.0.1:{free_port()}"\n',
            "Could not connect to the endpoint URL",
        ),
        "missing bucket": (
            f'type = "s3"\nregion = "us-east-1"\nbucket = "no-such-bucket"\n'
            f'endpoint_url = "{s3_endpoint}"\n',
            "NoSuchBucket",
        ),
        "sitemap 404": (f'type = "http"\nsitemap = "{base}/sitemap.xml"\n', "404"),
    }
    for case, (source_toml, cause) in cases.items():
        folder = tmp_path / case.replace(" ", "-")
        folder.mkdir()
        result = _source_failure(folder, source_toml)
        lines = result.stderr.strip().splitlines()
        assert result.returncode == 2, (case, result.stderr)
        assert len(lines) == 1 and lines[0].startswith("ingest failed: cannot list"), case
        assert cause in lines[0], (case, lines[0])
        assert "Traceback" not in result.stdout + result.stderr
