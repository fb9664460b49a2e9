"""Where Sluice keeps its state: SQLite files in the data dir, or one PostgreSQL database."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

from pydantic import BaseModel, Field, SecretStr, field_serializer, field_validator


class StateSettings(BaseModel):
    state_url: SecretStr | None = Field(
        default=None,
        description="PostgreSQL URL (postgresql://user:password@host:5432/db) for the state every "
        "worker and API replica must share: manifests, run history and locks, version tables, "
        "rate-limit buckets. Unset: SQLite files in the data dir, for one machine "
        "(docs/scaling.md).",
    )

    @field_validator("state_url")
    @classmethod
    def _postgres_only(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value():
            return None
        scheme = urlsplit(value.get_secret_value()).scheme
        if scheme.split("+")[0] not in ("postgresql", "postgres"):
            raise ValueError(
                f"SLUICE_STATE_URL must be a postgresql:// URL (got '{scheme}://'); leave it "
                "unset for SQLite files in the data dir"
            )
        return value

    @field_serializer("state_url")
    def _without_password(self, value: SecretStr | None) -> str | None:
        """Shown (`sluice config check`) with the password masked, the rest as set."""
        if value is None:
            return None
        parts = urlsplit(value.get_secret_value())
        if parts.password is None:
            return value.get_secret_value()
        userinfo, host = parts.netloc.rsplit("@", 1)
        netloc = f"{userinfo.split(':', 1)[0]}:***@{host}"
        return urlunsplit(parts._replace(netloc=netloc))
