"""``event.from``: what changed in the database since a token, the way xapi answers it.

xapi does not keep a queue of events for ``event.from`` (``xapi_event.ml``,
``from_inner``): every database row carries the generation at which it was
created and last modified, deleted rows are remembered with the generation of
their deletion, and a call returns one event per row that changed after the
token's generation: ``add`` (created since; no separate ``mod`` then), ``mod``
(modified since), ``del`` (deleted since, and not created since), with the
row's *current* record as ``snapshot`` (none for ``del``).  The token is
``"%020d,%020d"`` (database generation, message generation); ``""`` means
generation 0, so the first call returns every current object as ``add``.
Nothing to report: the call blocks until something relevant changes or the
timeout passes (then an empty batch with the same token).

:class:`Journal` is the pure bookkeeping (the model writes to it);
:class:`EventSource` answers the call without blocking the event loop.
The memory is bounded: live rows are the model's own, deletions are
remembered up to :data:`MAX_DELETED`.
"""

from __future__ import annotations

import asyncio
import math
import re
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..errors import XapiError

#: Deleted rows remembered for ``del`` events; older deletions are forgotten.
MAX_DELETED = 10_000
#: Longest a call may block, whatever it asks (the sim bounds what a client holds).
MAX_TIMEOUT = 3600.0
#: xapi sleeps this long after a wake-up so that a burst of writes is one batch.
BATCH_DELAY = 0.05

_TOKEN = re.compile(r"-?[0-9]+")


class Int32(int):
    """An ``int32`` of the wire (``valid_ref_counts``): a real XML-RPC ``<int>``, not a string."""


class Journal:
    """Creation / modification generations of every row, and recent deletions.

    Class names are kept lower case, as ``event.from`` reports them.  Every
    write bumps the one database generation, like xapi's ``Manifest.generation``.
    """

    def __init__(self, max_deleted: int = MAX_DELETED) -> None:
        self.generation = 0
        self._live: dict[tuple[str, str], list[int]] = {}  # (class, ref) -> [created, modified]
        self._deleted: deque[tuple[str, str, int, int]] = deque(maxlen=max_deleted)
        self._listeners: set[Callable[[], None]] = set()

    def created(self, cls: str, ref: str) -> None:
        gen = self._bump()
        self._live[(cls.lower(), ref)] = [gen, gen]
        self._notify()

    def modified(self, cls: str, ref: str) -> None:
        stat = self._live.get((cls.lower(), ref))
        if stat is None:
            return
        stat[1] = self._bump()
        self._notify()

    def deleted(self, cls: str, ref: str) -> None:
        stat = self._live.pop((cls.lower(), ref), None)
        if stat is None:
            return
        self._deleted.append((cls.lower(), ref, stat[0], self._bump()))
        self._notify()

    def changes_since(
        self, since: int, wanted: Callable[[str, str], bool]
    ) -> list[tuple[str, str, str, int]]:
        """``(operation, class, ref, generation)`` of every wanted row changed after ``since``."""
        out: list[tuple[str, str, str, int]] = []
        for (cls, ref), (created, modified) in self._live.items():
            if not wanted(cls, ref):
                continue
            if created > since:
                out.append(("add", cls, ref, created))
            elif modified > since:
                out.append(("mod", cls, ref, modified))
        for cls, ref, created, deleted in self._deleted:
            if deleted > since and created <= since and wanted(cls, ref):
                out.append(("del", cls, ref, deleted))
        out.sort(key=lambda change: change[3])
        return out

    def wake(self) -> None:
        """Wake every blocked ``event.from`` (e.g. its session is gone)."""
        self._notify()

    def listen(self, callback: Callable[[], None]) -> None:
        self._listeners.add(callback)

    def unlisten(self, callback: Callable[[], None]) -> None:
        self._listeners.discard(callback)

    def _bump(self) -> int:
        self.generation += 1
        return self.generation

    def _notify(self) -> None:
        for callback in list(self._listeners):
            callback()


@dataclass(frozen=True)
class Subscription:
    """One entry of ``classes``: ``*``, a class, or ``class/ref`` (one object)."""

    cls: str | None  # None: every class
    ref: str | None = None

    def matches(self, cls: str, ref: str) -> bool:
        if self.cls is None:
            return True
        return self.cls == cls and (self.ref is None or self.ref == ref)


def parse_subscriptions(classes: Any) -> list[Subscription]:
    """``classes`` as xapi reads it; ``EVENT_SUBSCRIPTION_PARSE_FAILURE`` for non-strings."""
    if not isinstance(classes, list | tuple):
        raise XapiError("EVENT_SUBSCRIPTION_PARSE_FAILURE", [str(classes)])
    subs: list[Subscription] = []
    for entry in classes:
        if not isinstance(entry, str):
            raise XapiError("EVENT_SUBSCRIPTION_PARSE_FAILURE", [str(entry)])
        if entry == "*":
            subs.append(Subscription(None))
            continue
        cls, sep, ref = entry.partition("/")
        subs.append(Subscription(cls.lower(), ref if sep else None))
    return subs


def parse_token(token: Any) -> int:
    """The database generation of a token; ``EVENT_FROM_TOKEN_PARSE_FAILURE`` if malformed."""
    if token == "":
        return 0
    parts = token.split(",") if isinstance(token, str) else []
    if len(parts) != 2 or not all(_TOKEN.fullmatch(p) for p in parts):
        raise XapiError("EVENT_FROM_TOKEN_PARSE_FAILURE", [str(token)])
    return int(parts[0])


def format_token(generation: int) -> str:
    """Zero-padded, so tokens compare as strings, like xapi's ``Token.to_string``."""
    return f"{generation:020d},{0:020d}"


def parse_timeout(timeout: Any) -> float:
    """Seconds to block (a XenAPI ``float``); ``FIELD_TYPE_ERROR`` when not a number."""
    try:
        value = float(timeout) if not isinstance(timeout, bool) else math.nan
    except (TypeError, ValueError):
        value = math.nan
    if math.isnan(value):
        raise XapiError("FIELD_TYPE_ERROR", ["timeout"])
    return min(max(value, 0.0), MAX_TIMEOUT)


class EventSource:
    """Answers ``event.from`` from a :class:`Journal`.

    ``snapshot(cls, ref)`` gives a row's current record (raising when it is
    gone, then the row is skipped as xapi does); ``counts()`` the number of
    rows per class (``valid_ref_counts``).
    """

    def __init__(
        self, journal: Journal, snapshot: Callable[[str, str], dict[str, Any]],
        counts: Callable[[], dict[str, int]],
    ) -> None:
        self.journal = journal
        self.snapshot = snapshot
        self.counts = counts

    async def event_from(
        self, classes: Any, token: Any, timeout: Any, check_session: Callable[[], object]
    ) -> dict[str, Any]:
        """One call; ``check_session`` raises ``SESSION_INVALID`` once the caller logged out."""
        subs = parse_subscriptions(classes)
        since = parse_token(token)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + parse_timeout(timeout)

        def wanted(cls: str, ref: str) -> bool:
            return any(sub.matches(cls, ref) for sub in subs)

        while True:
            events = self._events(self.journal.changes_since(since, wanted))
            if events or loop.time() >= deadline:
                break
            if await self._wait(deadline - loop.time()):
                await asyncio.sleep(BATCH_DELAY)
            check_session()
        last = max([since, *(int(ev["id"]) for ev in events)])
        return {
            "events": events,
            "valid_ref_counts": {cls: Int32(n) for cls, n in self.counts().items()},
            "token": format_token(last),
        }

    def _events(self, changes: list[tuple[str, str, str, int]]) -> list[dict[str, Any]]:
        events: list[dict[str, Any]] = []
        for op, cls, ref, gen in changes:
            event: dict[str, Any] = {
                "id": str(gen), "timestamp": "0.0", "class": cls, "operation": op, "ref": ref,
            }
            if op != "del":
                try:
                    event["snapshot"] = self.snapshot(cls, ref)
                except XapiError:
                    continue
            events.append(event)
        return events

    async def _wait(self, seconds: float) -> bool:
        """Wait until the journal changes (True) or ``seconds`` pass (False)."""
        changed = asyncio.Event()
        self.journal.listen(changed.set)
        try:
            await asyncio.wait_for(changed.wait(), max(seconds, 0.0))
            return True
        except TimeoutError:
            return False
        finally:
            self.journal.unlisten(changed.set)
