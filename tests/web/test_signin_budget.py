"""Issue 11, findings 3 and 17: the sign-in budget is taken before the host is asked,
so concurrency does not bypass it, and its tables stay bounded."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from xcpconsole.web.gateway import GATEWAY
from xcpconsole.web.signin import Attempt, Refused, SignInBudget

from .test_gateway import make_gw  # noqa: F401 - a fixture


def test_one_attempt_per_user_at_a_time_and_caps_per_address_and_in_all() -> None:
    budget = SignInBudget(per_address=2, total=3)
    first = budget.take("Alice", "10.0.0.1", 0)
    assert isinstance(first, Attempt)
    again = budget.take("alice", "10.0.0.2", 0)  # the same account, from anywhere
    assert isinstance(again, Refused) and again.status == 429
    assert isinstance(budget.take("bob", "10.0.0.1", 0), Attempt)
    third = budget.take("carol", "10.0.0.1", 0)  # a third at once from one address
    assert isinstance(third, Refused) and "your address" in third.message
    assert isinstance(budget.take("dave", "10.0.0.3", 0), Attempt)
    busy = budget.take("erin", "10.0.0.4", 0)  # three in flight in all
    assert isinstance(busy, Refused) and busy.status == 503
    budget.finish(first, ok=False, now=0)
    assert isinstance(budget.take("erin", "10.0.0.4", 0), Attempt)  # a place came free


def test_back_off_per_pair_and_per_address() -> None:
    budget = SignInBudget(free=2, base=1.0, address_free=4, per_address=9, total=9)
    for n in range(3):
        attempt = budget.take("alice", "a", n * 10)
        assert isinstance(attempt, Attempt)
        budget.finish(attempt, ok=False, now=n * 10)
    locked = budget.take("alice", "a", 20.5)  # third failure: one second
    assert isinstance(locked, Refused) and locked.retry_after == 1
    assert isinstance(budget.take("alice", "b", 20.5), Attempt)  # not another address
    for n in range(2):  # name spraying from address "c": four failures are free
        for user in ("u1", "u2"):
            attempt = budget.take(user + str(n), "c", 30)
            assert isinstance(attempt, Attempt)
            budget.finish(attempt, ok=False, now=30)
    attempt = budget.take("u9", "c", 30)
    assert isinstance(attempt, Attempt)
    budget.finish(attempt, ok=False, now=30)  # the fifth: one second
    assert isinstance(budget.take("fresh-name", "c", 30.5), Refused)
    assert isinstance(budget.take("fresh-name", "c", 31.5), Attempt)


def test_tables_stay_bounded_under_a_flood_of_names() -> None:
    budget = SignInBudget(max_entries=1000, per_address=9, total=9, address_free=10**9)
    for n in range(50_000):
        attempt = budget.take(f"user{n}", f"10.{n >> 16}.{(n >> 8) & 255}.{n & 255}", n)
        assert isinstance(attempt, Attempt)
        budget.finish(attempt, ok=False, now=n)
    assert len(budget.pairs) == 1000 and len(budget.addresses) == 1000


async def _guess(gw: Any, users: list[str]) -> list[int]:
    csrf = await gw.login_form()

    async def one(user: str) -> int:
        resp = await gw.client.post("/login", data={"username": user, "password": "guess",
                                                    "csrf": csrf},
                                    headers={"Origin": gw.origin}, allow_redirects=False)
        return int(resp.status)

    return list(await asyncio.gather(*(one(u) for u in users)))


async def test_concurrent_guesses_do_not_reach_the_host(
        make_gw: Callable[..., Any]) -> None:  # noqa: F811
    gw = await make_gw()
    real_login = gw.host.login

    async def slow_login(settings: Any) -> Any:  # PAM delays a failure by a while
        await asyncio.sleep(0.5)
        return await real_login(settings)

    gw.client.app[GATEWAY].backend.login = slow_login
    statuses = await _guess(gw, ["alice"] * 300)  # one account, 300 at once
    assert gw.host.login_attempts == 1, gw.host.login_attempts
    assert statuses.count(401) == 1 and statuses.count(429) == 299
    statuses = await _guess(gw, [f"user{n}" for n in range(300)])  # 300 names at once
    assert gw.host.login_attempts <= 1 + 2, gw.host.login_attempts  # per_address = 2
    assert statuses.count(429) >= 298
    resp = await gw.login()  # the real user, from the same address, still gets in
    assert resp.status == 303, await resp.text()
