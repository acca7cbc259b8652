"""The completeness calls of the catalog, awaited (one worker-thread hop per transaction, through
the ``AsyncCatalog``'s own limiter, exactly as its other calls)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TypeVar

from recorder.catalog.aio import AsyncCatalog
from recorder.completeness.model import CompletenessCatalog

T = TypeVar("T")


async def call(catalog: AsyncCatalog, fn: Callable[[CompletenessCatalog], T]) -> T:
    """Run ``fn(catalog.sync)`` as one catalog call (``AsyncCatalog`` rule: one hop, never
    abandoned half-way)."""
    return await catalog._call(functools.partial(fn, catalog.sync))


async def run(catalog: AsyncCatalog, fn: Callable[[], T]) -> T:
    """``call`` for a prepared call (``functools.partial(catalog.sync.method, ...)``)."""
    return await catalog._call(fn)
