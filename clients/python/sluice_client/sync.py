"""`POST /sources/{name}/sync` and `GET /runs/{id}`: asking the server to sync a source now (a
webhook's call: an S3 event notification, a CMS publish hook, a CI job), and following the run."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

PATHS_MAX = 1000


class SyncRequest(BaseModel):
    """Empty: the whole source, incrementally (only what changed is read)."""

    model_config = ConfigDict(extra="forbid")

    paths: list[str] | None = Field(
        default=None,
        max_length=PATHS_MAX,
        description="Only these documents or folders: paths within a local folder source (a "
        "folder stands for everything below it), keys within an S3 source's bucket. A path "
        "that is gone is deleted from the index; one outside the source is ignored.",
    )
    urls: list[str] | None = Field(
        default=None,
        max_length=PATHS_MAX,
        description="Only these pages of an http source: URLs it lists (its `urls` and its "
        "sitemap's); one it does not list is never requested, one it no longer lists is "
        "deleted from the index.",
    )


class RunStatus(BaseModel):
    run_id: str = Field(description="The Prefect flow run's id; `sluice runs` shows it too")
    source: str | None = None
    state: str = Field(description="Prefect's state: SCHEDULED, PENDING, RUNNING, COMPLETED, ...")
    state_name: str = ""
    paths: list[str] | None = None
    urls: list[str] | None = None
    report: dict[str, Any] | None = Field(
        default=None,
        description="The run's report once it is in the index's history (counts, lag, cost)",
    )
