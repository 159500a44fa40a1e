"""Fixtures for the docker end-to-end tests: compose projects of docker-compose.yml,
each with a unique name (`SHOAL_E2E_PREFIX` + a counter), its own free loopback host
ports and volumes, always removed with `down -v`. A failing test's report carries the
compose logs of every project it used."""

import itertools
import os
import uuid

import pytest

from compose import ComposeCluster

_PREFIX = os.environ.get("SHOAL_E2E_PREFIX") or f"shoale2e{uuid.uuid4().hex[:8]}"
_counter = itertools.count(1)
_live: list[ComposeCluster] = []


def new_cluster() -> ComposeCluster:
    cluster = ComposeCluster(f"{_PREFIX}{next(_counter)}")
    _live.append(cluster)
    return cluster


def remove(cluster: ComposeCluster) -> None:
    cluster.down()
    if cluster in _live:
        _live.remove(cluster)


@pytest.fixture(scope="module")
def cluster():
    """A running 3-node cluster shared by the tests of one module."""
    c = new_cluster()
    try:
        c.up()
        yield c
    finally:
        remove(c)


@pytest.fixture
def make_cluster():
    """Factory for extra clusters owned by one test (started with `.up()`)."""
    made = []

    def make() -> ComposeCluster:
        c = new_cluster()
        made.append(c)
        return c

    yield make
    for c in made:
        remove(c)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    if report.when == "call" and report.failed:
        for c in list(_live):
            if c.started:
                report.sections.append((f"compose logs {c.project}", c.logs()))
    return report


def pytest_sessionfinish(session, exitstatus):
    for c in list(_live):
        remove(c)
