"""A small registry that lets a running server swap the view behind a route.

The URLconf names each API route; the view behind a name is looked up on every request, so a
notebook can put a view defined in a cell behind `/api/chat/` while a server is running:

    from labproject import routes
    with routes.override("chat", my_async_chat):
        ...   # requests to /api/chat/ now reach my_async_chat
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from django.urls import URLPattern
from django.urls.resolvers import RoutePattern

_lock = threading.Lock()
_defaults: dict[str, Callable[..., Any]] = {}
_current: dict[str, Callable[..., Any]] = {}


class RegistryPattern(URLPattern):
    """A URL pattern whose callback is whatever view the registry holds for its name now."""

    def __init__(self, pattern: RoutePattern, view: Callable[..., Any], name: str) -> None:
        self.name = name  # the callback setter below needs the name before super() assigns it
        super().__init__(pattern, view, name=name)

    @property
    def callback(self) -> Callable[..., Any]:  # type: ignore[override]
        return _current[self.name]

    @callback.setter
    def callback(self, value: Callable[..., Any]) -> None:
        # URLPattern.__init__ assigns the initial view; it becomes the route's default.
        _defaults[self.name] = value
        _current.setdefault(self.name, value)

    @property
    def lookup_str(self) -> str:  # type: ignore[override]
        # Not cached (unlike URLPattern's), since the view can change between requests.
        view = self.callback
        return f"{view.__module__}.{getattr(view, '__qualname__', type(view).__qualname__)}"


def route(path: str, view: Callable[..., Any], name: str) -> RegistryPattern:
    """Like `django.urls.path`, but the view can be replaced at run time through `use()`."""
    if not name:
        raise ValueError("a registry route needs a name")
    pattern = RoutePattern(path, name=name, is_endpoint=True)
    return RegistryPattern(pattern, view, name=name)


def names() -> list[str]:
    """Return the names of the routes the registry knows."""
    return sorted(_defaults)


def current(name: str) -> Callable[..., Any]:
    """Return the view serving route `name` now."""
    return _current[_known(name)]


def use(name: str, view: Callable[..., Any]) -> None:
    """Serve route `name` with `view` from the next request on (sync or async views)."""
    if not callable(view):
        raise TypeError(f"route {name!r}: expected a view function, got {type(view).__name__}")
    with _lock:
        _current[_known(name)] = view


def reset(name: str | None = None) -> None:
    """Put the project's own view back behind `name`, or behind every route."""
    with _lock:
        for key in [_known(name)] if name else list(_defaults):
            _current[key] = _defaults[key]


@contextmanager
def override(name: str, view: Callable[..., Any]) -> Iterator[None]:
    """Serve route `name` with `view` inside the block, then restore the previous view."""
    previous = current(name)
    use(name, view)
    try:
        yield
    finally:
        use(name, previous)


def _known(name: str) -> str:
    if name not in _defaults:
        from importlib import import_module

        from django.conf import settings

        import_module(settings.ROOT_URLCONF)  # importing the URLconf registers the routes
    if name not in _defaults:
        known = ", ".join(sorted(_defaults)) or "none"
        raise KeyError(f"no route named {name!r}; the registry has: {known}")
    return name
