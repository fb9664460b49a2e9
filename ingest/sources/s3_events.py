"""An S3 bucket's event notifications, read from the SQS queue they are sent to, as batches of
the objects that changed: what a live S3 source syncs instead of listing the bucket.

Messages are long-polled (`WAIT_S`, so an idle source makes a request a second and little else)
and deleted only once their batch is synced (`ChangeBatch.done`): a watcher that dies before
then gets them again when the queue's visibility timeout ends, and syncing an object twice
changes nothing. A message that is not an S3 event (the test event S3 sends when notifications
are set up, or an SNS envelope around one) is read for what it holds and acknowledged.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import unquote_plus

from config.sources import S3Config
from ingest.sources.folder_events import ChangeBatch

log = logging.getLogger("sluice.live")

WAIT_S = 1
"""SQS long polling: a receive waits this long for a message before it answers empty."""


def s3_events(config: S3Config, stop: threading.Event) -> Iterator[ChangeBatch]:
    """Batches of `s3://bucket/key` uris of `config`'s bucket until `stop` is set."""
    if config.queue_url is None:
        raise ValueError(f"source '{config.name}' has no queue_url to read events from")
    queue = _client(config)
    while not stop.is_set():
        messages = queue.receive_message(
            QueueUrl=config.queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=WAIT_S
        ).get("Messages", [])
        seen_at = time.time()
        uris = {uri for message in messages for uri in _objects(message["Body"], config.bucket)}
        handles = [message["ReceiptHandle"] for message in messages]
        yield ChangeBatch(
            frozenset(), seen_at, frozenset(uris), _deleter(queue, config.queue_url, handles)
        )


def _objects(body: str, bucket: str) -> list[str]:
    try:
        event: dict[str, Any] = json.loads(body)
        if "Records" not in event and "Message" in event:  # delivered through SNS
            event = json.loads(event["Message"])
    except (ValueError, TypeError):
        log.warning("an event queue message that is not JSON was dropped: %.200s", body)
        return []
    return [
        f"s3://{bucket}/{unquote_plus(record['s3']['object']['key'])}"
        for record in event.get("Records", [])
        if record.get("s3", {}).get("bucket", {}).get("name") == bucket
    ]


def _deleter(queue: Any, url: str, handles: list[str]) -> Any:
    if not handles:
        return None

    def delete() -> None:
        for start in range(0, len(handles), 10):
            entries = [
                {"Id": str(n), "ReceiptHandle": handle}
                for n, handle in enumerate(handles[start : start + 10])
            ]
            queue.delete_message_batch(QueueUrl=url, Entries=entries)

    return delete


def _client(config: S3Config) -> Any:
    import boto3

    secret = config.secret_access_key
    return boto3.client(
        "sqs",
        endpoint_url=config.endpoint_url,
        region_name=config.region,
        aws_access_key_id=config.access_key_id,
        aws_secret_access_key=secret.get_secret_value() if secret else None,
    )
