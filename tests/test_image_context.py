"""What `docker build .` sends as the image's context, by Docker's own `.dockerignore` matcher:
sources and docs, never the local `.venv`, data dirs, models or secrets."""

from __future__ import annotations

from pathlib import Path

from docker.utils.build import exclude_paths

ROOT = Path(__file__).resolve().parents[1]
NEVER = (".venv/", ".git/", ".sluice/", ".sluice-demo/", ".bench/", "models/", "deploy/secrets/")


def _context() -> set[str]:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    patterns = [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    return set(exclude_paths(str(ROOT), patterns))


def test_the_build_context_holds_the_sources_and_nothing_local(tmp_path: Path) -> None:
    context = _context()
    assert {"Dockerfile", "pyproject.toml", "constraints.txt", "scripts/install.sh"} <= context
    assert "sluice/__main__.py" in context
    leaked = sorted(path for path in context if path.startswith(NEVER) or "__pycache__" in path)
    assert leaked == [], leaked[:10]
    size = sum((ROOT / path).stat().st_size for path in context if (ROOT / path).is_file())
    print(f"\nbuild context: {len(context)} files, {size / 1e6:.1f} MB")
    assert size < 50e6
