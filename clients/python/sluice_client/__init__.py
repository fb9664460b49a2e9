"""The client of a Sluice retrieval server; see `sluice_client.client`."""

from sluice_client.client import (
    AsyncSluiceClient,
    SluiceAPIError,
    SluiceClient,
    SluiceConnectionError,
    SluiceError,
)
from sluice_client.feedback import FeedbackItem, FeedbackReceipt
from sluice_client.request import Filters, RetrieveRequest
from sluice_client.response import Hit, RetrieveResponse

__all__ = [
    "AsyncSluiceClient",
    "FeedbackItem",
    "FeedbackReceipt",
    "Filters",
    "Hit",
    "RetrieveRequest",
    "RetrieveResponse",
    "SluiceAPIError",
    "SluiceClient",
    "SluiceConnectionError",
    "SluiceError",
]
