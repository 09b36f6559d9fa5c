"""Pure decisions of the fallback loop: does a failure move on, and how long to wait to retry.

``classify`` is the one classification table (tested row by row); ``retry_delay`` applies the
retry policy: exponential backoff with full jitter, or the upstream's ``Retry-After`` when it is
under the cap and fits in what is left of the budget. Randomness comes in as an argument.
"""

from __future__ import annotations

import enum

from sidecar.errors import FailureKind, SidecarError, UpstreamError

from .policy import Policy


class Verdict(enum.Enum):
    MOVE_ON = "move_on"  # retry this target if the policy allows, else try the next one
    STOP = "stop"  # return this error to the caller
    OVERFLOW = "overflow"  # the prompt is too long for this target: go to the overflow chain


def classify(error: SidecarError, policy: Policy) -> Verdict:
    if not isinstance(error, UpstreamError) or error.kind is FailureKind.CANCELLED:
        return Verdict.STOP
    if error.kind is not FailureKind.STATUS:
        return Verdict.MOVE_ON  # connection, timeouts, broken or invalid streams
    status = error.status or 0
    if status in policy.stop_on:
        return Verdict.STOP
    if error.context_overflow and policy.on_context_overflow is not None:
        return Verdict.OVERFLOW
    return Verdict.MOVE_ON if status in policy.move_on else Verdict.STOP


def retry_delay(
    error: SidecarError, retries_done: int, policy: Policy, left: float, jitter: float
) -> float | None:
    """Seconds to wait before trying the same target again, or None to move on now.

    ``jitter`` is a uniform random number in [0, 1).
    """
    if retries_done >= policy.retries:
        return None
    if error.retry_after is not None:
        wait = error.retry_after
        return wait if wait <= policy.retry_after_cap and wait < left else None
    delay = jitter * min(policy.backoff_max, policy.backoff_base * (2**retries_done))
    return delay if delay < left else None
