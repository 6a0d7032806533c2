"""Failed model calls mapped to what the client should see: 503 when trying again later may work, else 502."""

from __future__ import annotations

from collections.abc import Iterator

import botocore.exceptions
import httpx
import urllib3.exceptions
from strands.types.exceptions import EventLoopException, ModelThrottledException

from core.errors import ModelError

#: a model call that timed out, before or during its reply (a stall mid-stream is urllib3's, not a TimeoutError)
MODEL_TIMEOUTS = (TimeoutError, botocore.exceptions.ReadTimeoutError, botocore.exceptions.ConnectTimeoutError,
                  urllib3.exceptions.TimeoutError, httpx.TimeoutException)
#: a model endpoint that cannot be reached right now
MODEL_UNREACHABLE = (botocore.exceptions.EndpointConnectionError, httpx.ConnectError, ConnectionRefusedError)
#: Bedrock errors that say "try again later"
RETRY_LATER_CODES = ("ServiceUnavailableException", "ModelNotReadyException", "ModelTimeoutException",
                     "ThrottlingException", "TooManyRequestsException")


def _causes(error: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def model_error(error: Exception) -> ModelError:
    """A failed model call as the client should see it: 503 when trying again later may work, else 502."""
    while isinstance(error, EventLoopException):  # Strands' wrapper for a failure after a tool call
        error = error.original_exception
    detail = f"{type(error).__name__}: {error}"
    for cause in _causes(error):
        if isinstance(cause, ModelThrottledException):
            return ModelError(f"throttled: {detail}", status=503)
        if isinstance(cause, MODEL_TIMEOUTS):
            return ModelError(f"timed out: {detail}", status=503)
        if isinstance(cause, MODEL_UNREACHABLE):
            return ModelError(f"unreachable: {detail}", status=503)
        if isinstance(cause, botocore.exceptions.ClientError):
            if cause.response.get("Error", {}).get("Code") in RETRY_LATER_CODES:
                return ModelError(f"unavailable: {detail}", status=503)
    return ModelError(detail)
