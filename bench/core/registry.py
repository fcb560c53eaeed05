"""Name → object registries with 'did you mean' suggestions (tasks, backbones, methods all use this)."""

from __future__ import annotations

import difflib
import logging
import types
from typing import Callable, Generic, Iterator, TypeVar

from bench.core.errors import TicketbenchError

T = TypeVar("T")
log = logging.getLogger(__name__)


def suggest(name: str, known: list[str]) -> str:
    """' (did you mean 'x'?)' for the closest known name, or '' when nothing is close."""
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.5)
    return f" (did you mean '{close[0]}'?)" if close else ""


class Registry(Generic[T]):
    """A named collection; `get` of an unknown name raises a one-line error with a suggestion."""

    def __init__(self, kind: str, entry_point_group: str | None = None):
        self.kind = kind
        self.entry_point_group = entry_point_group
        self._items: dict[str, T] = {}
        self._entry_points_loaded = False
        self.broken: dict[str, str] = {}  # entry point name -> why it was not loaded

    def register(self, name: str, obj: T | None = None, override: bool = False) -> Callable[[T], T] | T:
        """Register `obj` under `name`; without `obj`, return a decorator. A name already registered
        (a built-in) is replaced only with `override=True`, said in the code that replaces it."""

        def add(item: T) -> T:
            if name in self._items and self._items[name] is not item:
                if not override:
                    raise TicketbenchError(f"{self.kind} '{name}' is already registered (a plugin replaces it "
                                           "only with override=True)")
                log.warning("%s '%s' replaced by %s (override=True)", self.kind, name,
                            getattr(item, "__module__", None) or type(item).__module__)
            self._items[name] = item
            return item

        return add(obj) if obj is not None else add

    def _load_entry_points(self) -> None:
        # Plugins installed by other distributions register themselves on import. Each is isolated: one
        # that fails to import (or registers a name that is taken) is skipped with a warning and named
        # when asked for, instead of breaking every command; an entry point named like a registered
        # (built-in) name does not replace it.
        if self._entry_points_loaded or not self.entry_point_group:
            return
        self._entry_points_loaded = True
        from importlib.metadata import entry_points

        for ep in entry_points(group=self.entry_point_group):
            if ep.name in self._items:
                log.warning("plugin entry point '%s' (%s) is named like a registered %s and is ignored; a "
                            "plugin replaces one only by registering it with override=True", ep.name, ep.value,
                            self.kind)
                continue
            try:
                obj = ep.load()
            except Exception as e:  # noqa: BLE001 - a third party's error of any kind
                why = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
                self.broken[ep.name] = f"plugin entry point '{ep.name}' ({ep.value}) failed to load: {why}"
                log.warning("%s; skipped", self.broken[ep.name])
                continue
            # An entry point naming a module registers on import (a module is never the item: it may
            # be one still importing, which looked up this registry before registering).
            if ep.name not in self._items and not isinstance(obj, types.ModuleType):
                self._items[ep.name] = obj

    def get(self, name: str) -> T:
        self._load_entry_points()
        try:
            return self._items[name]
        except KeyError:
            if self.broken.get(name):
                raise TicketbenchError(self.broken[name]) from None
            known = sorted(self._items)
            raise TicketbenchError(
                f"unknown {self.kind} '{name}'{suggest(name, known)}; known: {', '.join(known)}"
            ) from None

    def names(self) -> list[str]:
        self._load_entry_points()
        return list(self._items)

    def __contains__(self, name: object) -> bool:
        self._load_entry_points()
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def items(self) -> list[tuple[str, T]]:
        self._load_entry_points()
        return list(self._items.items())
