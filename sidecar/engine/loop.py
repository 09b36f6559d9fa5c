"""The fallback loop: one generic walk over a chain's targets for one request.

``Loop.run`` expands the chain's steps into an ordered queue (a group becomes its members in the
order its strategy gives, engine/balance.py), then repeatedly:

1. **picks** the first target that is neither open in its breaker nor predicted over its rate
   limit (engine/limits.py); the ones passed over go to the outcome's ``skipped`` with their
   reason. When every one left is waiting and nothing was tried yet, the one that frees first
   is tried anyway;
2. **tries** it (``_target``): each attempt (``_once``) takes a backend slot first (a wait there
   is the sidecar's own, not the upstream's), then runs the ``AttemptFn`` within its timers;
   the breaker gets its one verdict in ``_settle`` (success, failure, or none: cancelled, or the
   caller's fault), the upstream's rate-limit headers are read, and a failure that moves on is
   retried on the same target while the policy allows;
3. with ``hedge_after`` set, step 2 is a **race** (engine/hedge.py) when the attempt has not
   committed in time: the next target starts alongside, the first answer wins.

A failure that stops the chain, a spent budget or a local limit raises at once; when the queue
is empty the chain is exhausted (``ChainExhaustedError`` with every attempt's error).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import TypeVar

from sidecar.backends.base import RESPONSE_HEADERS, Backend
from sidecar.errors import (
    ChainExhaustedError,
    DeadlineExceededError,
    LocalLimitError,
    SidecarError,
    UpstreamError,
)
from sidecar.translate.ratelimit_headers import read_rate_limits, says_exhausted

from .attempt import AttemptFn, Failed, Lease, Try, Won
from .balance import Balancer, InFlight
from .breaker import Breakers
from .classify import Verdict, classify, retry_delay
from .hedge import HEDGE_LOST, HedgeBudget, race
from .limits import RateLimits
from .outcome import Attempt, Observer, Outcome
from .policy import Chain, Group, Policy, Routes, Target
from .slots import NO_SLOT, Slot, Slots

T = TypeVar("T")
LIMITED = (429, 503)  # statuses whose retry-after says the target is rate-limited


class Run:
    """One request's walk: what is left to try, the policy in force, the failures so far."""

    def __init__(
        self,
        chain: Chain,
        outcome: Outcome,
        deadline: float,
        backends: Mapping[str, Backend],
        slots: Slots,
    ) -> None:
        self.chain = chain
        self.outcome = outcome
        self.policy: Policy = chain.policy
        self.deadline = deadline
        self.backends = backends
        self.slots = slots
        self.queue: list[Target] = []
        self.overflowed = False
        self.last: SidecarError | None = None
        self.hedged = False

    def fail(self, error: SidecarError | None) -> SidecarError:
        """The error to raise, with the outcome's metadata attached; None: exhausted."""
        outcome = self.outcome
        if error is None:
            if self.last is None:  # every target was skipped and none could be tried
                error = DeadlineExceededError("the request's time budget ran out")
            else:
                outcome.exhausted = True
                failures = [a.error for a in outcome.attempts if a.error is not None]
                error = ChainExhaustedError(self.last, len(outcome.attempts), failures)
        error.metadata = outcome.error_metadata()
        return error

    def record(self, target: Target, started: float, error: SidecarError | None, kind: str) -> None:
        status = error.status if isinstance(error, UpstreamError) else None
        self.outcome.attempts.append(
            Attempt(
                target=target.label,
                backend=target.backend,
                outcome=kind,
                status=status,
                duration=asyncio.get_running_loop().time() - started,
                error=error,
            )
        )


def _kind(error: SidecarError) -> str:
    return error.kind.value if isinstance(error, UpstreamError) else error.error_type


class Loop:
    def __init__(
        self,
        *,
        breakers: Breakers,
        limits: RateLimits,
        balancer: Balancer,
        in_flight: InFlight,
        hedges: HedgeBudget,
        sleep: Callable[[float], Awaitable[None]],
        jitter: Callable[[], float],
        report_degradations: bool,
        observer: Observer,
    ) -> None:
        self.observer = observer
        self.breakers = breakers
        self.limits = limits
        self.balancer = balancer
        self.in_flight = in_flight
        self.hedges = hedges
        self._sleep = sleep
        self._jitter = jitter
        self._report_degradations = report_degradations
        # Shared state (engine/shared.py): asked before a probe; None: per-pod only.
        self.claim_probe: Callable[[str, float], Awaitable[bool]] | None = None

    def plan(self, chain: Chain) -> list[Target]:
        queue: list[Target] = []
        for step in chain.targets:
            if isinstance(step, Group):
                queue += self.balancer.order(step)
            else:
                queue.append(step)
        return queue

    async def run(
        self,
        chain: Chain,
        outcome: Outcome,
        backends: Mapping[str, Backend],
        slots: Slots,
        routes: Routes,
        deadline: float | None,
        attempt: AttemptFn[T],
    ) -> Won[T]:
        """The first answer; the caller releases its lease."""
        own = asyncio.get_running_loop().time() + chain.policy.timeout
        run = Run(chain, outcome, own if deadline is None else min(deadline, own), backends, slots)
        run.queue = self.plan(chain)
        if chain.policy.hedge_after is not None:
            self.hedges.request(chain.name)
        while run.queue:
            target = self.pick(run, fallback=True)
            if target is None:
                break
            if run.policy.hedge_after is not None and not run.hedged:
                won = await race(self, run, target, attempt, routes)
            else:
                won = await self.target(run, target, attempt, routes)
            if won is not None:
                return won
        raise run.fail(None)

    def wait(self, target: Target) -> tuple[float, str]:
        """Seconds until ``target`` may be tried, and why it waits."""
        breaker = self.breakers.wait_time(target.label)
        limit = self.limits.wait_time(target)
        if breaker >= limit:
            return breaker, "breaker_open"
        return limit, "rate_limited"

    def pick(self, run: Run, *, fallback: bool) -> Target | None:
        """The next target to try (see the module docstring); ``fallback``: when all wait, the
        one that frees first, if nothing was tried yet."""
        queue, skipped = run.queue, run.outcome.skipped
        waits: list[tuple[float, str]] = []
        for i, target in enumerate(queue):
            wait, reason = self.wait(target)
            if wait == 0.0:
                passed = zip(queue[:i], waits, strict=True)
                skipped += [{"target": t.label, "reason": w[1]} for t, w in passed]
                del queue[: i + 1]
                return target
            waits.append((wait, reason))
        if not fallback:
            return None
        if run.outcome.attempts or not queue:
            passed = zip(queue, waits, strict=True)
            skipped += [{"target": t.label, "reason": w[1]} for t, w in passed]
            queue.clear()
            return None
        best = min(range(len(queue)), key=lambda i: waits[i][0])
        return queue.pop(best)

    async def target(
        self, run: Run, target: Target, attempt: AttemptFn[T], routes: Routes
    ) -> Won[T] | None:
        """Attempts on one target (with retries); None when the chain should move on."""
        claim = self.claim_probe
        if (
            claim is not None
            and self.breakers.is_probe(target.label)
            and not await claim(target.label, run.policy.attempt_timeout)
            and (run.queue or run.outcome.attempts)  # else: the one try of an all-open chain
        ):
            run.outcome.skipped.append({"target": target.label, "reason": "breaker_open"})
            return None  # another sidecar is probing it
        backend = run.backends[target.backend]
        loop = asyncio.get_running_loop()
        retries = 0
        while True:
            result = await self._once(run, target, backend, attempt)
            if not isinstance(result, Failed):
                return result
            exc, verdict = result.error, result.verdict
            if isinstance(exc, DeadlineExceededError):
                raise run.fail(exc) from None
            if verdict is Verdict.STOP:
                raise run.fail(exc) from None
            run.last = exc
            if verdict is Verdict.OVERFLOW and not run.overflowed:
                run.overflowed = True
                bigger = routes.chains[run.policy.on_context_overflow or ""]
                run.queue, run.policy = self.plan(bigger), bigger.policy
                run.outcome.degradations.append(f"context_overflow:{bigger.name}")
                return None
            delay = retry_delay(
                exc, retries, run.policy, run.deadline - loop.time(), self._jitter()
            )
            if delay is None:
                return None
            retries += 1
            await self._sleep(delay)

    async def _once(
        self, run: Run, target: Target, backend: Backend, attempt: AttemptFn[T]
    ) -> Won[T] | Failed:
        loop = asyncio.get_running_loop()
        policy, outcome, label = run.policy, run.outcome, target.label
        if run.slots.limited(target.backend) or loop.time() >= run.deadline:
            slot = await self._slot(run, target)  # waits for one, or refuses (529, budget)
        else:
            slot = NO_SLOT  # a backend without a limit: nothing to wait for
        started = loop.time()
        self.breakers.acquire(label)
        self.limits.started(target)
        self.in_flight.add(label)
        lease = Lease(slot, self.in_flight, label)
        headers: list[tuple[str, str]] = []
        token = RESPONSE_HEADERS.set(headers)
        settle = "none"  # the breaker's verdict: "ok", "failure", or "none" (no verdict)
        notes: list[str] = []
        try:
            value = await attempt(
                Try(
                    backend,
                    target,
                    policy,
                    notes,
                    min(started + policy.attempt_timeout, run.deadline),
                    run.deadline,
                )
            )
            settle = "ok"
        except SidecarError as exc:
            lease.release()
            run.record(target, started, exc, _kind(exc))
            verdict = classify(exc, policy)
            if isinstance(exc, DeadlineExceededError):
                verdict = Verdict.STOP  # the budget's end says nothing about the target
            if verdict is not Verdict.STOP:
                settle = "failure"
            self._limited(target, headers, exc)
            return Failed(exc, verdict)
        except asyncio.CancelledError as exc:
            lease.release()
            if HEDGE_LOST in exc.args:  # a lost hedge: no failure of its target
                run.record(target, started, None, "hedge_lost")
            raise
        except BaseException:
            lease.release()
            raise
        finally:
            RESPONSE_HEADERS.reset(token)
            self._settle(label, settle, policy)
        run.record(target, started, None, "ok")
        self._limited(target, headers, None)
        self.balancer.observe(label, loop.time() - started)
        outcome.answered_by = backend.name
        outcome.answered_target = label
        if self._report_degradations:
            outcome.degradations.extend(notes)
        return Won(value, target, lease)

    async def _slot(self, run: Run, target: Target) -> Slot:
        """A slot of the target's backend, before any timer of the attempt: a wait here (and
        a refusal, 529) is the sidecar's own, not the upstream's."""
        outcome = run.outcome
        now = asyncio.get_running_loop().time()
        if now >= run.deadline:
            raise run.fail(DeadlineExceededError("the request's time budget ran out"))
        try:
            return await run.slots.take(
                target.backend,
                min(now + run.policy.pool_timeout, run.deadline),
                outcome.pool_waits,
            )
        except LocalLimitError as exc:
            outcome.rejected = exc.limit
            self.observer.request_rejected(outcome.surface, outcome.kind, exc.limit)
            raise run.fail(exc) from None

    def _settle(self, label: str, settle: str, policy: Policy) -> None:
        """The breaker's one verdict on an attempt, in one place."""
        if settle == "ok":
            self.breakers.success(label)
        elif settle == "failure":
            self.breakers.failure(
                label, threshold=policy.breaker.failures, cooldown=policy.breaker.cooldown
            )
        else:  # cancelled, a lost hedge, or the caller's fault: the probe is released
            self.breakers.release(label)

    def _limited(
        self, target: Target, headers: list[tuple[str, str]], error: SidecarError | None
    ) -> None:
        status = error.status if isinstance(error, UpstreamError) else None
        limited = status in LIMITED
        if headers and (limited or says_exhausted(headers)):
            self.limits.announce(
                target.label, read_rate_limits(headers, time.time()), limited=limited
            )
        if limited and error is not None and error.retry_after is not None:
            self.limits.block(target.label, self.limits.now() + error.retry_after)
