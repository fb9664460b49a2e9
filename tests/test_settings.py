from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import SecretStr, ValidationError

from config.settings import Settings


def test_environment_overrides_the_config_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "sluice.toml"
    config.write_text('index_name = "manuals"\nbm25_k1 = 0.9\nchunk_overlap_tokens = 16\n')
    monkeypatch.setenv("SLUICE_CONFIG_FILE", str(config))
    monkeypatch.setenv("SLUICE_CHUNK_OVERLAP_TOKENS", "8")
    settings = Settings()
    assert settings.index_name == "manuals"
    assert settings.bm25_k1 == 0.9
    assert settings.chunk_overlap_tokens == 8


def test_data_dir_holds_everything_the_embedded_deployment_writes(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("SLUICE_DATA_DIR", str(tmp_path))
    settings = Settings()
    assert settings.qdrant_path.parent == tmp_path
    assert settings.prefect_home.parent == tmp_path


def test_invalid_values_and_unknown_keys_are_rejected(tmp_path: Path) -> None:
    with pytest.raises(ValidationError):
        Settings(index_name="Bad Name!")
    with pytest.raises(ValidationError):
        Settings(embedding_device="tpu")  # type: ignore[arg-type]
    with pytest.raises(ValidationError):
        Settings(no_such_setting=1)  # type: ignore[call-arg]


def test_missing_config_file_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLUICE_CONFIG_FILE", "/nonexistent/sluice.toml")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        Settings()


def test_the_searchers_defaults_are_the_settings_defaults() -> None:
    """`DEFAULT_HYBRID` (a searcher built without settings) and `Settings` state one choice."""
    from composition.components import Components
    from index.fusion import DEFAULT_HYBRID

    assert Components(Settings()).hybrid_defaults() == DEFAULT_HYBRID


def test_vector_quantization_reaches_new_collections_reembeds_and_searches(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typing import cast

    from composition.components import Components
    from index.contracts import Embedder, QuantizedSearch

    defaults = Settings(data_dir=tmp_path)
    assert defaults.vector_quantization == "none"
    assert Components(defaults).quantized_search() == QuantizedSearch(), "the searcher's default"
    monkeypatch.setenv("SLUICE_VECTOR_QUANTIZATION", "int8")
    monkeypatch.setenv("SLUICE_VECTOR_QUANTIZATION_RESCORE", "false")
    monkeypatch.setenv("SLUICE_VECTOR_QUANTIZATION_OVERSAMPLING", "3")
    parts = Components(Settings(data_dir=tmp_path))
    store = parts.store()
    try:
        target = parts.index_target(store, cast(Embedder, None), None)
        assert target.vector_quantization == "int8", "a new index is made with int8 vectors"
        with parts.versioned_index(store) as index:
            assert index.vector_quantization == "int8", "so is a re-embed's new version"
        searcher = parts.searcher(store, lambda spec: cast(Embedder, None))
        assert searcher.quantized_search == QuantizedSearch(rescore=False, oversampling=3.0)
    finally:
        store.close()
    for wrong in ({"vector_quantization": "int4"}, {"vector_quantization_oversampling": 0.5}):
        with pytest.raises(ValidationError):
            Settings(**wrong)  # type: ignore[arg-type]


CONFIG_TYPOS = {
    "a typo in a [[sources]] entry": (
        '[[sources]]\ntype = "local"\nname = "a"\npath = "/srv"\nschedul = "*/5 * * * *"\n',
        "sources[0].schedul: unknown key; did you mean 'schedule'?",
    ),
    "a typo at the top level": (
        'index_nmae = "manuals"\n',
        "index_nmae: unknown key; did you mean 'index_name'?",
    ),
    "a schedule that is not cron": (
        '[[sources]]\ntype = "http"\nname = "site"\nurls = ["https://example.com"]\n'
        'schedule = "every hour"\n',
        "sources[0].schedule: 'every hour' is not a cron expression",
    ),
    "a URL that is not http(s)": (
        '[[sources]]\ntype = "http"\nname = "site"\nurls = ["example.com/page"]\n',
        "sources[0].urls[0]: 'example.com/page' is not an http(s) URL",
    ),
    "an http source with nothing to fetch": (
        '[[sources]]\ntype = "http"\nname = "site"\n',
        "sources[0]: an http source needs `urls`, a `sitemap`, or both",
    ),
    "a misspelt source type": (
        '[[sources]]\ntype = "lcoal"\nname = "a"\npath = "/srv"\n',
        "sources[0]: unknown type 'lcoal'; did you mean 'local'?",
    ),
    "a model that is neither a folder nor a hub id": (
        'embedding_model = "my model!"\n',
        "embedding_model: 'my model!' is neither a model folder here nor a model hub id",
    ),
}


@pytest.mark.parametrize("case", CONFIG_TYPOS, ids=list(CONFIG_TYPOS))
def test_config_mistakes_are_one_line_and_exit_2_in_every_command(
    case: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from sluice.cli.main import app

    text, expected = CONFIG_TYPOS[case]
    config = tmp_path / "sluice.toml"
    config.write_text(text)
    monkeypatch.setenv("SLUICE_CONFIG_FILE", str(config))
    monkeypatch.setenv("SLUICE_DATA_DIR", str(tmp_path / "data"))
    for command in (["status"], ["ingest", "--source", "a"], ["versions"]):
        result = CliRunner().invoke(app, command)
        assert result.exit_code == 2, (command, result.output)
        lines = result.output.strip().splitlines()
        assert lines == [f"invalid configuration: {expected}"] or (
            len(lines) == 1 and lines[0].startswith(f"invalid configuration: {expected}")
        ), result.output
        assert "Traceback" not in result.output
    assert not (tmp_path / "data").exists()


def test_one_deployment_id_for_processes_that_reach_qdrant_by_different_urls(
    tmp_path: Path,
) -> None:
    """The compose file's API names Qdrant `http://qdrant:6333`, the host's CLI
    `http://localhost:6333`: with one `deployment_id` they are one deployment."""
    from composition.components import Components

    container = Settings(qdrant_url="http://qdrant:6333", deployment_id="compose")
    host = Settings(qdrant_url="http://localhost:6333", deployment_id="compose")
    assert Components(container).deployment_id() == Components(host).deployment_id() == "compose"
    assert Components(Settings(qdrant_url="http://qdrant:6333")).deployment_id() == (
        "http://qdrant:6333"
    )


def test_the_state_url_is_postgres_and_shown_without_its_password() -> None:
    settings = Settings(state_url=SecretStr("postgresql://sluice:s3cret@db:5432/sluice"))
    shown = settings.model_dump(mode="json")["state_url"]
    assert shown == "postgresql://sluice:***@db:5432/sluice"
    assert Settings(state_url=SecretStr("")).state_url is None
    with pytest.raises(ValidationError, match="must be a postgresql:// URL"):
        Settings(state_url=SecretStr("mysql://x@y/z"))
