"""Driver errors become ``StoreUnavailable``, so every backend's outage is the same 503."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import ParamSpec, TypeVar

from core.errors import StoreUnavailable

P = ParamSpec("P")
R = TypeVar("R")


def unavailable_on(store: str, errors: type[Exception] | tuple[type[Exception], ...],
                   describe: Callable[[Exception], str] = lambda e: f"{type(e).__name__}: {e}",
                   ) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """A decorator: the driver's ``errors`` become ``StoreUnavailable(store, ...)``, which the entrypoint maps to 503."""

    def decorate(func: Callable[P, R]) -> Callable[P, R]:
        @functools.wraps(func)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            try:
                return func(*args, **kwargs)
            except errors as e:
                raise StoreUnavailable(store, describe(e)) from e

        return wrapper

    return decorate
