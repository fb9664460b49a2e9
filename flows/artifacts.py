"""Keys of the Markdown reports the flows publish in Prefect."""

from __future__ import annotations

import hashlib
import re

from composition.components import Components
from config.settings import Settings


def artifact_key(kind: str, settings: Settings, subject: str = "") -> str:
    """`<kind>-<index>[-<subject>]-<deployment>`, as Prefect wants it (lower-case letters,
    digits, dashes). The subject (a source) keeps one source's latest report from replacing
    another's; the deployment's short hash keeps two installations that share a Prefect server
    apart; a dry run is its own kind, so it never replaces the latest real report."""
    deployment = hashlib.sha256(Components(settings).deployment_id().encode()).hexdigest()[:8]
    words = "-".join(w for w in (kind, settings.index_name, subject) if w)
    slug = re.sub(r"[^a-z0-9]+", "-", words.lower()).strip("-")
    if len(slug) > 80:
        slug = f"{slug[:71]}-{hashlib.sha256(slug.encode()).hexdigest()[:8]}"
    return f"{slug}-{deployment}"
