"""Who may try a password now: the sign-in budget, taken *before* the host is asked.

A check made before the host call and a failure recorded after it let concurrent
guesses through: all the requests pass the check while the first is still with the
host.  So an attempt takes its place first and gives it back when the host answered:

- one attempt at a time per user name (from anywhere): parallel guesses for one
  account are refused at once, not queued;
- at most ``per_address`` attempts in flight per client address and ``total`` in all,
  so sign-ins (unauthenticated) never hold more than a few of the threads that every
  signed-in user's XenAPI calls share;
- exponential back-off after failures, per (user, address) after ``free`` failures and
  per address (any user name: name spraying) after ``address_free``.

Tables are bounded: past ``max_entries`` the least recently touched entry goes (O(1)),
so a flood of names costs the same per attempt as the first one.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Attempt", "Refused", "SignInBudget"]


@dataclass(frozen=True)
class Attempt:
    user: str
    addr: str


@dataclass(frozen=True)
class Refused:
    status: int  # 429 for this client, 503 when the gateway as a whole is busy
    retry_after: int  # seconds
    message: str


class _Backoff:
    """Failures per key -> a lock-out of ``base * 2**(n - free - 1)`` s, capped."""

    def __init__(self, free: int, base: float, cap: float, forget: float,
                 max_entries: int) -> None:
        self.free, self.base, self.cap, self.forget = free, base, cap, forget
        self.max_entries = max_entries
        self._state: dict[object, tuple[int, float, float]] = {}  # fails, until, last

    def wait(self, key: object, now: float) -> float:
        entry = self._state.get(key)
        return 0.0 if entry is None else max(0.0, entry[1] - now)

    def failed(self, key: object, now: float) -> None:
        fails = self._state.pop(key, (0, 0.0, 0.0))[0] + 1
        excess = fails - self.free
        delay = 0.0 if excess <= 0 else min(self.cap, self.base * 2 ** (excess - 1))
        self._state[key] = (fails, now + delay, now)  # re-inserted: most recent last
        while len(self._state) > self.max_entries:
            del self._state[next(iter(self._state))]

    def forgive(self, key: object) -> None:
        self._state.pop(key, None)

    def prune(self, now: float) -> None:
        for key, (_f, until, last) in list(self._state.items()):
            if now - last > self.forget and now >= until:
                del self._state[key]

    def __len__(self) -> int:
        return len(self._state)


class SignInBudget:
    def __init__(self, *, free: int = 2, base: float = 1.0, cap: float = 300.0,
                 address_free: int = 10, per_address: int = 2, total: int = 4,
                 forget: float = 3600.0, max_entries: int = 100_000) -> None:
        self.per_address, self.total = per_address, total
        self.pairs = _Backoff(free, base, cap, forget, max_entries)
        self.addresses = _Backoff(address_free, base, cap, forget, max_entries)
        self._users: set[str] = set()  # user names with an attempt at the host now
        self._by_addr: dict[str, int] = {}
        self._in_flight = 0

    def take(self, user: str, addr: str, now: float) -> Attempt | Refused:
        """An attempt may go to the host (give it back with :meth:`finish`), or not."""
        name = user.lower()
        wait = max(self.pairs.wait((name, addr), now), self.addresses.wait(addr, now))
        if wait > 0:
            seconds = int(wait) + 1
            return Refused(429, seconds, f"Too many failed attempts; try again in {seconds} s.")
        if name in self._users:
            return Refused(429, 1, "A sign-in for this user is already being checked; "
                                   "try again in a moment.")
        if self._by_addr.get(addr, 0) >= self.per_address:
            return Refused(429, 1, "Too many sign-ins at once from your address; "
                                   "try again in a moment.")
        if self._in_flight >= self.total:
            return Refused(503, 2, "The gateway is busy signing other users in; "
                                   "try again in a few seconds.")
        self._users.add(name)
        self._by_addr[addr] = self._by_addr.get(addr, 0) + 1
        self._in_flight += 1
        return Attempt(name, addr)

    def finish(self, attempt: Attempt, *, ok: bool | None, now: float) -> None:
        """The host answered: ``ok`` True (signed in), False (wrong credentials) or None
        (no verdict: the host could not be reached)."""
        self._users.discard(attempt.user)
        left = self._by_addr.get(attempt.addr, 0) - 1
        if left > 0:
            self._by_addr[attempt.addr] = left
        else:
            self._by_addr.pop(attempt.addr, None)
        self._in_flight -= 1
        if ok is True:
            self.pairs.forgive((attempt.user, attempt.addr))
        elif ok is False:
            self.pairs.failed((attempt.user, attempt.addr), now)
            self.addresses.failed(attempt.addr, now)

    def prune(self, now: float) -> None:
        self.pairs.prune(now)
        self.addresses.prune(now)
