"""Rate-limit awareness: predict that a target is over its limit and skip it before it 429s.

Two sources, per target (``backend/model``), shared by every chain that uses it:

- **configured** ``rpm`` / ``tpm`` on the target: a sliding 60 s window of this sidecar's
  requests (their start times; at most ``rpm`` kept) and of their tokens (input + output, known
  when each request is finished). At ``rpm`` requests, or ``tpm`` tokens, in the last 60 s the
  target waits until the oldest one leaves the window.
- **announced** by the upstream on every answer, success or error (``Announced``, read from the
  headers by ``sidecar.translate.ratelimit_headers``): ``remaining-requests: 0`` or
  ``remaining-tokens: 0`` blocks the target until that window's reset (1 s when no reset is
  given); a ``retry-after`` on a 429 or 503 blocks it for that long.

``wait_time`` is 0 when the target may be sent a request now, else the seconds until it may; the
fallback loop treats a positive one as it treats an open breaker (skip, reason
``rate_limited``; when every target is waiting, the one that resets first is still tried).
``remote`` is the same prediction from the other sidecars (engine/shared.py): the later of the
two wins. A target without limits and without announcements costs one dict lookup.
"""

from __future__ import annotations

import collections
from collections.abc import Callable

from sidecar.translate.ratelimit_headers import Announced

from .policy import Target

WINDOW = 60.0  # seconds: the configured rpm / tpm windows
DEFAULT_RESET = 1.0  # seconds blocked when "remaining: 0" comes without a reset


class _State:
    __slots__ = ("blocked_until", "requests", "token_sum", "tokens")

    def __init__(self) -> None:
        self.requests: collections.deque[float] = collections.deque()
        self.tokens: collections.deque[tuple[float, int]] = collections.deque()
        self.token_sum = 0
        self.blocked_until = 0.0


class RateLimits:
    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._states: dict[str, _State] = {}
        # label -> monotonic time until which another sidecar predicts the target is limited
        self.remote: dict[str, float] = {}
        # Called with (label, blocked_until) when an announcement blocks a target (shared state).
        self.on_block: Callable[[str, float], None] | None = None
        # Called with (target, requests, tokens) for targets with rpm / tpm (shared state).
        self.on_use: Callable[[Target, int, int], None] | None = None

    def now(self) -> float:
        return self._clock()

    def _get(self, label: str) -> _State:
        state = self._states.get(label)
        if state is None:
            state = self._states[label] = _State()
        return state

    def wait_time(self, target: Target) -> float:
        label = target.label
        state = self._states.get(label)
        remote = self.remote.get(label, 0.0)
        if state is None and not remote:
            return 0.0
        now = self._clock()
        wait = remote - now
        if state is None:
            return max(0.0, wait)
        wait = max(wait, state.blocked_until - now)
        if target.rpm is not None and len(state.requests) >= target.rpm:
            wait = max(wait, state.requests[-target.rpm] + WINDOW - now)
        if target.tpm is not None:
            wait = max(wait, self._tokens_wait(state, target.tpm, now))
        return max(0.0, wait)

    @staticmethod
    def _tokens_wait(state: _State, tpm: int, now: float) -> float:
        tokens = state.tokens
        while tokens and tokens[0][0] + WINDOW <= now:
            state.token_sum -= tokens.popleft()[1]
        if state.token_sum < tpm:
            return 0.0
        left = state.token_sum
        for at, n in tokens:  # until enough of the window has left it
            left -= n
            if left < tpm:
                return at + WINDOW - now
        return WINDOW

    def started(self, target: Target) -> None:
        """A request goes to ``target`` now (counts towards its rpm)."""
        if target.rpm is None:
            return
        requests = self._get(target.label).requests
        requests.append(self._clock())
        while len(requests) > target.rpm:
            requests.popleft()
        if self.on_use is not None:
            self.on_use(target, 1, 0)

    def used(self, target: Target, tokens: int) -> None:
        """A finished request used ``tokens`` (input + output) of ``target``'s tpm."""
        if target.tpm is None or tokens <= 0:
            return
        state = self._get(target.label)
        state.tokens.append((self._clock(), tokens))
        state.token_sum += tokens
        if self.on_use is not None:
            self.on_use(target, 0, tokens)

    def announce(self, label: str, announced: Announced, *, limited: bool = False) -> None:
        """What an answer's headers said; ``limited``: the answer was a 429 / 503, so its
        ``retry-after`` blocks the target."""
        now = self._clock()
        until = 0.0
        if announced.remaining_requests is not None and announced.remaining_requests <= 0:
            until = now + _or(announced.reset_requests, DEFAULT_RESET)
        if announced.remaining_tokens is not None and announced.remaining_tokens <= 0:
            until = max(until, now + _or(announced.reset_tokens, DEFAULT_RESET))
        if limited and announced.retry_after is not None:
            until = max(until, now + announced.retry_after)
        self.block(label, until)

    def block(self, label: str, until: float) -> None:
        if until <= self._clock():
            return
        state = self._get(label)
        if until > state.blocked_until:
            state.blocked_until = until
            if self.on_block is not None:
                self.on_block(label, until)

    def snapshot(self, targets: list[Target]) -> dict[str, dict[str, object]]:
        """Each target's rate-limit view, for ``/readyz?verbose=1``."""
        out: dict[str, dict[str, object]] = {}
        for target in targets:
            state = self._states.get(target.label)
            view: dict[str, object] = {"wait_seconds": round(self.wait_time(target), 3)}
            if target.rpm is not None:
                view["rpm"] = target.rpm
                view["requests_in_window"] = 0 if state is None else len(state.requests)
            if target.tpm is not None:
                view["tpm"] = target.tpm
                view["tokens_in_window"] = 0 if state is None else state.token_sum
            out[target.label] = view
        return out


def _or(value: float | None, default: float) -> float:
    return default if value is None else value
