"""The composition root: build everything from the configuration, run it, shut it down.

One event loop (uvloop) hosts the grpc.aio server and the uvicorn HTTP server; both get the
same ``Engine``, which gets the backends. This module is the one owner of signals: uvicorn's
own handlers are switched off. The first SIGTERM/SIGINT starts a drain: readiness goes false
on both surfaces (``/readyz`` 503, gRPC health NOT_SERVING), the listeners stop accepting,
in-flight requests and streams get ``server.grace`` seconds to finish, then the process exits
0. A second signal cuts the grace short.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import signal
import socket
from collections.abc import Iterator
from pathlib import Path

import uvicorn
from grpc_health.v1._async import HealthServicer

from sidecar.auth import TokenCheck
from sidecar.backends import build_backend
from sidecar.config import Config, ConfigError, load_config, parse_address
from sidecar.engine.engine import Engine
from sidecar.engine.shared import SharedState
from sidecar.grpc_api.server import SERVICE_NAME, start_grpc_server
from sidecar.http_api.anthropic_door import AnthropicDoor
from sidecar.http_api.asgi import HttpApp
from sidecar.http_api.openai_door import OpenAIDoor
from sidecar.http_api.ops import OPEN_PATHS, OpsRoutes
from sidecar.logs import log
from sidecar.observe import Telemetry
from sidecar.readiness import Readiness, watch_health


class _HttpServer(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        # Signals belong to the composition root, not to one of the two servers.
        yield


def _read_pem(cert_file: str, key_file: str) -> tuple[bytes, bytes]:
    # Once, at start-up, before anything is served.
    return Path(cert_file).read_bytes(), Path(key_file).read_bytes()


def _bind(address: str) -> socket.socket:
    host, port = parse_address(address, "http")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.setblocking(False)
    return sock


def _address(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


async def _drain(
    engine: Engine,
    lifecycle: Readiness,
    health: HealthServicer,
    force: asyncio.Event,
    grace: float,
) -> None:
    """Not ready first (``/readyz`` 503, gRPC health NOT_SERVING); the listeners stay open so a
    request that still arrives gets a retryable overloaded_error / UNAVAILABLE rather than a
    refused connection; in-flight requests get ``grace`` seconds. What is left then (or at a
    second signal) is ended with an explicit error to each caller."""
    lifecycle.started = False
    engine.draining = True
    await health.enter_graceful_shutdown()
    idle = asyncio.ensure_future(engine.wait_idle())
    forced = asyncio.ensure_future(force.wait())
    await asyncio.wait({idle, forced}, timeout=grace, return_when=asyncio.FIRST_COMPLETED)
    forced.cancel()
    if engine.in_flight:
        log("drain_aborting", requests=engine.abort_all())
        # Time for each caller's error to be written.
        await asyncio.wait({idle}, timeout=2.0)
    idle.cancel()


# The collector's youngest generation runs every GC_YOUNG allocations net of frees (Python's
# default is 700). A busy sidecar allocates a few hundred objects per request and keeps the
# state of every open stream alive, so at the default the collector ran every couple of
# requests and each run walked the live streams again; frozen start-up objects (modules,
# protobuf descriptors, configuration) are never walked at all.
GC_YOUNG = 20_000


def _tune_gc() -> None:
    gc.collect()
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(GC_YOUNG, older, oldest)


def _limits(config: Config) -> dict[str, int]:
    """Each backend's configured connection limit (0: unbounded), held by the engine."""
    return {name: getattr(s, "max_connections", 0) for name, s in config.backends.items()}


def _reload(current: Config, engine: Engine) -> None:
    """SIGHUP: read the configuration file again; a valid one serves new requests from now on,
    an invalid one is rejected with the reason and the running one stays."""
    if current.source == "environment":
        log("reload_skipped", level=30, reason="configured from the environment: no file to read")
        return
    try:
        new = load_config(current.source)
    except ConfigError as exc:
        log("reload_rejected", level=40, reason=str(exc))
        return
    if new.server != current.server:
        log("reload_server_unchanged", level=30, reason="server settings apply at the next start")
    backends = {name: build_backend(name, s) for name, s in new.backends.items()}
    engine.reload(backends, new.routes, _limits(new))
    log("reloaded", config=new.source, chains=engine.model_names())


def _shared_state(config: Config, engine: Engine) -> SharedState | None:
    """Breaker and rate-limit state shared through Redis (``state:``), or None: per pod."""
    if config.state is None:
        return None
    from sidecar.shared_redis import RedisStore  # redis-py is imported only when configured

    shared = SharedState(
        RedisStore(config.state.redis, config.state.timeout),
        prefix=config.state.key_prefix,
        timeout=config.state.timeout,
        breakers=engine.breakers,
        limits=engine.limits,
        targets=lambda: [t for c in engine.routes.chains.values() for t in c.members()],
        owner=f"{socket.gethostname()}:{os.getpid()}",
    )
    engine.loop.claim_probe = shared.claim_probe
    shared.on_mode = lambda mode, error: log(
        "shared_state", level=20 if mode == "shared" else 30, mode=mode, error=error
    )
    return shared


async def serve(config: Config) -> int:
    """Run the sidecar until a signal; returns the process exit code."""
    loop = asyncio.get_running_loop()
    backends = {name: build_backend(name, s) for name, s in config.backends.items()}
    telemetry = Telemetry()
    engine = Engine(
        backends=backends,
        routes=config.routes,
        observer=telemetry,
        max_concurrent=config.server.max_concurrent_requests,
        report_degradations=config.server.report_degradations,
        limits=_limits(config),
    )
    auth = TokenCheck(config.server.auth_tokens)
    telemetry.watch_breakers(engine.breakers.snapshot)
    shared = _shared_state(config, engine)
    lifecycle = Readiness(
        engine, requires_upstream=config.server.ready_requires_upstream, shared=shared
    )
    telemetry.watch_traffic(engine.in_flight_by_target.counts, shared)
    if not auth.enabled and config.server.allow_unauthenticated_non_loopback:
        log(
            "unauthenticated_listener",
            level=30,
            message="listening beyond loopback without auth_tokens (allowed by "
            "server.allow_unauthenticated_non_loopback): make sure nothing else can connect",
        )
    if config.demo:
        log(
            "demo_mode",
            level=30,
            message="no real upstream is configured: answering from the built-in demo backend. "
            "Set OPENAI_API_KEY / OPENAI_BASE_URL / ANTHROPIC_API_KEY or pass --config.",
        )

    tls = config.server.tls
    grpc_server, grpc_port, health = await start_grpc_server(
        engine,
        config.server.grpc,
        max_message_bytes=config.server.max_message_bytes,
        auth=auth,
        tls=None if tls is None else _read_pem(tls.cert_file, tls.key_file),
    )
    sock = _bind(config.server.http)
    # The HTTP surface: each door its own module, assembled here (the first shows the errors
    # of requests no route matched). Both API doors serve GET /v1/models: the Anthropic door
    # claims the requests with an anthropic-version header, the OpenAI door the rest.
    http_api = HttpApp(
        [
            AnthropicDoor(engine, engine.model_names),
            OpenAIDoor(
                engine,
                engine.model_names,
                report_degradations=config.server.report_degradations,
            ),
            OpsRoutes(
                readiness=lifecycle,
                breakers=engine.breakers.snapshot,
                metrics=telemetry.render,
                details=lifecycle.details,
            ),
        ],
        max_body_bytes=config.server.max_body_bytes,
        auth=auth,
        open_paths=OPEN_PATHS,
    )
    http_server = _HttpServer(
        uvicorn.Config(
            http_api,
            lifespan="off",
            http="httptools",
            log_config=None,
            access_log=False,
            timeout_graceful_shutdown=int(config.server.grace) or 1,
            timeout_keep_alive=30,
            # Nothing stands between the app and us in the pod: no proxy headers to trust, and
            # per-response Server/Date headers cost CPU on every request for nothing.
            proxy_headers=False,
            server_header=False,
            date_header=False,
            ssl_certfile=None if tls is None else tls.cert_file,
            ssl_keyfile=None if tls is None else tls.key_file,
        )
    )
    http_task = asyncio.create_task(http_server.serve(sockets=[sock]))
    while not http_server.started:
        if http_task.done():
            await http_task
            return 1
        await asyncio.sleep(0.01)

    stop = asyncio.Event()
    force = asyncio.Event()
    signals = 0

    def on_signal(signum: int) -> None:
        nonlocal signals
        signals += 1
        if signals == 1:
            log("draining", signal=signal.Signals(signum).name, grace_seconds=config.server.grace)
            stop.set()
        else:
            log("forced_stop", signal=signal.Signals(signum).name)
            force.set()

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, on_signal, signum)
    loop.add_signal_handler(signal.SIGHUP, _reload, config, engine)

    _tune_gc()
    lifecycle.started = True
    background = []
    if shared is not None:
        background.append(asyncio.create_task(shared.run()))
    if config.server.ready_requires_upstream:
        services = ("", SERVICE_NAME)
        background.append(asyncio.create_task(watch_health(lifecycle, health, services)))
    grpc_host = config.server.grpc.rpartition(":")[0]
    log(
        "ready",
        http=_address(sock),
        grpc=f"{grpc_host}:{grpc_port}",
        config=config.source,
        backends={name: b.kind for name, b in backends.items()},
        chains=engine.model_names(),
    )
    waiter = asyncio.create_task(stop.wait())
    await asyncio.wait({waiter, http_task}, return_when=asyncio.FIRST_COMPLETED)

    await _drain(engine, lifecycle, health, force, config.server.grace)
    http_server.should_exit = True
    await asyncio.gather(grpc_server.stop(1.0), http_task, return_exceptions=True)
    for task in background:
        task.cancel()
    await asyncio.gather(*background, return_exceptions=True)
    if shared is not None:
        await shared.aclose()
    await engine.aclose()
    waiter.cancel()
    log("stopped")
    return 0
