"""A Cacher per resource, started with the server (`--watch-cache-sizes resource#0`
switches one off, as upstream's flag does; other sizes cap that resource's buffer)."""
from __future__ import annotations

import asyncio

from ...store.interface import Store
from ..registry.resources import ResourceInfo
from .cacher import Cacher


def parse_sizes(text: str) -> dict[str, int]:
    """"pods#0,events#1000" -> {"pods": 0, "events": 1000}; names may carry a group
    ("deployments.apps#0")."""
    out: dict[str, int] = {}
    for part in (p.strip() for p in (text or "").split(",")):
        if not part:
            continue
        name, sep, size = part.partition("#")
        if not sep or not size.isdigit():
            raise ValueError(f"--watch-cache-sizes: {part!r} is not RESOURCE#SIZE")
        out[name.strip()] = int(size)
    return out


class CacheManager:
    def __init__(self, store: Store, sizes: dict[str, int] | None = None, enabled: bool = True):
        self.store = store
        self.sizes = sizes or {}
        self.enabled = enabled
        self.cachers: dict[str, Cacher] = {}      # by key prefix (a CRD's versions share one)

    def _size(self, info: ResourceInfo) -> int | None:
        for name in (info.qualified, info.plural):
            if name in self.sizes:
                return self.sizes[name]
        return None

    def cacher(self, info: ResourceInfo) -> Cacher | None:
        """The resource's cacher (started on first use), or None when disabled."""
        if not self.enabled:
            return None
        c = self.cachers.get(info.key_prefix)
        if c is not None:
            return c
        size = self._size(info)
        if size == 0:
            return None
        kwargs = {} if size is None else {"max_events": max(size, 1), "min_events": min(100, max(size, 1))}
        c = self.cachers[info.key_prefix] = Cacher(info, self.store, **kwargs)
        c.start()
        return c

    def drop(self, info: ResourceInfo) -> None:
        """Forget a resource's cacher (its CRD was deleted)."""
        c = self.cachers.pop(info.key_prefix, None)
        if c is not None:
            asyncio.ensure_future(c.stop())

    async def stop(self) -> None:
        for c in list(self.cachers.values()):
            await c.stop()
        self.cachers.clear()
