"""A live S3 source: its bucket's event notifications, through a real SQS queue of the same
local S3+SQS server (moto_server), drive syncs of only the objects they name; messages are
deleted once synced, and an event of another kind is acknowledged without a sync."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest

from composition.components import Components
from composition.live_source import watch_source
from config.settings import Settings
from pipelines.report import IngestReport
from tests.conftest import until_report
from tests.test_remote_sources import _s3_config, s3_endpoint  # noqa: F401

WAIT_S = 60


def test_bucket_events_sync_only_their_objects_and_are_acknowledged(
    s3_endpoint: str,  # noqa: F811
    tmp_path: Path,
) -> None:
    config = _s3_config(s3_endpoint, "sluice-live")
    parts = Components(Settings(data_dir=tmp_path / "data"))
    s3 = parts.source(config).client  # type: ignore[attr-defined]
    import boto3

    sqs = boto3.client(
        "sqs", endpoint_url=s3_endpoint, region_name="us-east-1",
        aws_access_key_id="testing", aws_secret_access_key="testing",
    )  # fmt: skip
    queue = sqs.create_queue(QueueName="sluice-live-events")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    s3.create_bucket(Bucket="sluice-live")
    for number in range(6):
        s3.put_object(Bucket="sluice-live", Key=f"docs/d{number}.md", Body=b"# Pumps\n\nWater.")
    s3.put_bucket_notification_configuration(
        Bucket="sluice-live",
        NotificationConfiguration={
            "QueueConfigurations": [
                {"QueueArn": arn, "Events": ["s3:ObjectCreated:*", "s3:ObjectRemoved:*"]}
            ]
        },
    )
    live = config.model_copy(update={"queue_url": queue, "live": True})
    reports: list[IngestReport] = []
    stop = threading.Event()
    thread = threading.Thread(
        target=watch_source, args=(parts, live, stop, reports.append), daemon=True
    )
    thread.start()

    try:
        until_report(reports, lambda r: not r.live and len(r.new) == 6, "reconciling the bucket")
        s3.put_object(Bucket="sluice-live", Key="docs/new page.md", Body=b"# Valves\n\nA gate.")
        report = until_report(reports, lambda r: r.live and len(r.new) == 1, "the new object")
        assert report.new[0].uri == "s3://sluice-live/docs/new page.md", "the key, decoded"
        assert report.files_seen == 1 and report.lag_s is not None
        s3.delete_object(Bucket="sluice-live", Key="docs/d3.md")
        until_report(
            reports, lambda r: r.live and r.deleted == ["s3://sluice-live/docs/d3.md"], "the delete"
        )
        sqs.send_message(QueueUrl=queue, MessageBody=json.dumps({"Event": "s3:TestEvent"}))
        deadline = time.monotonic() + WAIT_S
        while _waiting(sqs, queue):
            assert time.monotonic() < deadline, "every message is deleted once handled"
            time.sleep(0.2)
        assert sum(r.live for r in reports) == 2, "the test event needed no sync"
    finally:
        stop.set()
        thread.join(timeout=30)
    assert not thread.is_alive()


def _waiting(sqs: object, queue: str) -> int:
    attributes = sqs.get_queue_attributes(  # type: ignore[attr-defined]
        QueueUrl=queue,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return sum(int(value) for value in attributes.values())


def test_a_live_s3_source_needs_a_queue() -> None:
    from pydantic import ValidationError

    from config.sources import S3Config

    with pytest.raises(ValidationError, match="needs `queue_url`"):
        S3Config(name="b", bucket="b", live=True)
