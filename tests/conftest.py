"""Shared fixtures: the simulated host as a real subprocess (``xcpconsole sim``).

``sim_host`` (module scope) starts ``xcpconsole sim --listen 127.0.0.1:0`` with
``XCPSIM_PASSWORD`` set, waits for its ``sim.json`` and terminates it (SIGTERM,
then SIGKILL) on teardown even when the test failed.  ``start_sim`` starts
extra ones (other flags, own state dir) with the same clean-up.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from simproc import REPO, XCPCONSOLE, SimProcess, launch_sim  # noqa: F401 - re-exported


@pytest.fixture(scope="module")
def sim_host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimProcess]:
    """One simulated host (default inventory) shared by a test module."""
    sim = launch_sim(tmp_path_factory.mktemp("sim"))
    try:
        yield sim
    finally:
        sim.stop()


@pytest.fixture
def start_sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., SimProcess]]:
    """Factory for extra simulated hosts (own state dir, extra CLI flags); all stopped after."""
    started: list[SimProcess] = []

    def start(*extra: str, state_dir: Path | None = None) -> SimProcess:
        sim = launch_sim(state_dir or tmp_path_factory.mktemp("sim"), *extra)
        started.append(sim)
        return sim

    try:
        yield start
    finally:
        for sim in started:
            sim.stop()
