"""The shared-state store on Redis (redis-py's asyncio client), for ``engine/shared.py``.

One client per process with a small connection pool; every command's socket (and connect) is
bounded by ``state.timeout``, and the engine bounds each call again as a whole. Writes go in one
pipeline (``SET ... PX``, ``DEL``, ``INCRBY`` + ``EXPIRE``), reads in one ``MGET``; a probe is
claimed with ``SET ... NX PX``. The URL (which may hold a password) is never logged.
"""

from __future__ import annotations

import redis.asyncio as redis


class RedisStore:
    def __init__(self, url: str, timeout: float) -> None:
        self._client = redis.Redis.from_url(
            url,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            max_connections=8,
            retry_on_timeout=False,
            health_check_interval=0,
        )

    async def read(self, keys: list[str]) -> list[bytes | None]:
        values = await self._client.mget(keys)
        return [v.encode() if isinstance(v, str) else v for v in values]

    async def write(
        self,
        sets: list[tuple[str, str, int]],
        deletes: list[str],
        increments: list[tuple[str, int, int]],
    ) -> None:
        async with self._client.pipeline(transaction=False) as pipe:
            for key, value, ttl_ms in sets:
                pipe.set(key, value, px=max(1, ttl_ms))
            if deletes:
                pipe.delete(*deletes)
            for key, amount, ttl_s in increments:
                pipe.incrby(key, amount)
                pipe.expire(key, ttl_s)
            await pipe.execute()

    async def claim(self, key: str, value: str, ttl_ms: int) -> bool:
        return bool(await self._client.set(key, value or "1", px=ttl_ms, nx=True))

    async def aclose(self) -> None:
        await self._client.aclose()
