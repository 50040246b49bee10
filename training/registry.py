"""One registry type for everything a config names: loss terms, step strategies, extras providers, encoders.

    LOSSES = Registry("loss")                       # training/losses/registry.py
    @LOSSES.register("ce")
    class CrossEntropy(nn.Module): ...
    LOSSES.get("ce")  # the class; an unknown name fails with the known ones

A registry may name the modules that hold its built-in entries (`builtins`): they are imported on the first
lookup, so the built-in methods (SlimSeg, KA, MGD) are always there without a config listing them, and the
modules defining them may import the registry without an import cycle. Third-party plug-ins register the
same way and are imported through the config's `imports:` list.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from slimseg_ros.errors import SlimsegError

T = TypeVar("T")


class NotRegisteredError(SlimsegError, KeyError):
    """A config names something no module registered (a KeyError too, for callers that catch lookups)."""


class Registry(Generic[T]):
    """Name -> entry table of one kind, filled by the `register` decorator."""

    def __init__(self, kind: str, builtins: tuple[str, ...] = ()) -> None:
        self.kind, self.builtins = kind, builtins
        self._entries: dict[str, T] = {}
        self._loaded = not builtins

    def _load_builtins(self) -> None:
        if not self._loaded:
            self._loaded = True  # before importing: the modules register into this very registry
            for module in self.builtins:
                importlib.import_module(module)

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator: make the decorated entry available under `name` (twice is an error)."""

        def deco(entry: T) -> T:
            self.add(name, entry)
            return entry

        return deco

    def add(self, name: str, entry: T) -> None:
        """Register `entry` under `name` without decorating (e.g. one class under several names)."""
        if name in self._entries:
            raise KeyError(f"{self.kind} already registered: {name}")
        self._entries[name] = entry

    def get(self, name: str) -> T:
        """The entry registered under `name`; fails with the known names."""
        self._load_builtins()
        if name not in self._entries:
            raise NotRegisteredError(f"{self.kind} not registered: {name}, known: {', '.join(self.names())}")
        return self._entries[name]

    def names(self) -> list[str]:
        """Every registered name, sorted (built-ins included)."""
        self._load_builtins()
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        self._load_builtins()
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())
