"""One os.register_at_fork registration for the whole package.

Hooks cannot be unregistered, so objects that must react to a fork (clients, id generators) register
themselves in a WeakSet here and are forgotten when they are garbage collected.
"""

from __future__ import annotations

import os
import weakref
from typing import Protocol


class ForkAware(Protocol):
    def _before_fork(self) -> None: ...
    def _after_fork_in_parent(self) -> None: ...
    def _after_fork_in_child(self) -> None: ...


_registered: weakref.WeakSet[ForkAware] = weakref.WeakSet()


def register(obj: ForkAware) -> None:
    _registered.add(obj)


def _before() -> None:
    for obj in list(_registered):
        obj._before_fork()


def _after_in_parent() -> None:
    for obj in list(_registered):
        obj._after_fork_in_parent()


def _after_in_child() -> None:
    for obj in list(_registered):
        obj._after_fork_in_child()


os.register_at_fork(before=_before, after_in_parent=_after_in_parent, after_in_child=_after_in_child)
