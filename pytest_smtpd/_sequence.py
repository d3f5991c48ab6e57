"""The thread-safe sequence under ``MessageStore`` and ``SessionStore``: the
loop thread appends while tests read from their own threads, and every read
sees a consistent snapshot."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from typing import TypeVar, overload

__all__ = ["LockedList"]

T = TypeVar("T")


class LockedList(Sequence[T]):
    """A list guarded by one condition: ``append`` and ``clear`` change it
    and wake whoever waits on ``_changed``; reads copy or index under it.
    ``_changes`` counts the changes, so that a waiter sees that one came."""

    def __init__(self) -> None:
        self._items: list[T] = []
        self._changed = threading.Condition()
        self._changes = 0

    def append(self, item: T) -> None:
        """Add an item at the end and wake the waiters."""
        with self._changed:
            self._items.append(item)
            self._changes += 1
            self._changed.notify_all()
        self._appended()

    def _appended(self) -> None:
        """Called after an append, outside the lock (a subclass wakes more)."""

    def clear(self) -> list[T]:
        """Forget the items so far and return them (taken at once: an item
        appended meanwhile is either returned or kept)."""
        with self._changed:
            forgotten, self._items = self._items, []
            self._changes += 1
            self._changed.notify_all()
        return forgotten

    def snapshot(self) -> list[T]:
        """The items now, as a new list."""
        with self._changed:
            return list(self._items)

    def _after_fork_in_child(self) -> None:
        """A forked child has no thread that could hold the lock: a new one."""
        self._changed = threading.Condition()

    @overload
    def __getitem__(self, index: int) -> T: ...
    @overload
    def __getitem__(self, index: slice) -> list[T]: ...
    def __getitem__(self, index: int | slice) -> T | list[T]:
        with self._changed:
            return self._items[index]

    def __len__(self) -> int:
        with self._changed:
            return len(self._items)

    def __iter__(self) -> Iterator[T]:
        return iter(self.snapshot())
