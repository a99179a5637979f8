"""Exact counters under real concurrency: 64 client processes hit the emulator at once."""

from __future__ import annotations

import inspect
import multiprocessing
import queue
import time
from collections import Counter

import pytest
import requests

from requests_ppauth.testing import Emulator

PROCESSES = 64
REQUESTS_EACH = 5
SCOPE = "https://api.powerplatform.com/.default"


def _client(token_url, form, ca, each, barrier, results):
    """One client process: wait for all the others, then POST the token endpoint."""
    # imported here: the child runs this function's source alone (see _client_process)
    import os

    import requests

    statuses = []
    try:
        barrier.wait(timeout=120)
        with requests.Session() as session:
            for _ in range(each):
                resp = session.post(token_url, data=form, verify=ca, timeout=30)
                statuses.append(resp.status_code)
    except Exception as exc:  # reported to the parent, which fails the test
        statuses.append(f"{type(exc).__name__}: {exc}")
    results.put((os.getpid(), statuses))


def _client_process(ctx, *args) -> multiprocessing.process.BaseProcess:
    """A spawned process running :func:`_client`.

    The child gets the function's source rather than a reference to it: a reference
    would make every child import this test module and so pytest, which on 64 cold
    interpreters costs more CPU than all the requests; this way a child loads
    ``requests`` and nothing else.
    """
    source = inspect.getsource(_client) + "\n_client(*ARGS)\n"
    return ctx.Process(target=exec, args=(source, {"ARGS": args}), daemon=True)


def _collect(procs, results, barrier, timeout: float = 150) -> dict:
    """Every child's report; fails fast (breaking the barrier) if one dies silently."""
    reports: dict = {}
    deadline = time.monotonic() + timeout
    while len(reports) < len(procs):
        try:
            pid, statuses = results.get(timeout=0.5)
        except queue.Empty:
            dead = [p.exitcode for p in procs if p.exitcode not in (None, 0)]
            if dead or time.monotonic() > deadline:
                barrier.abort()
                pytest.fail(f"client processes failed (exit codes {dead}) or timed out")
            continue
        reports[pid] = statuses
    return reports


@pytest.mark.slow
def test_concurrent_processes_are_counted_exactly():
    ctx = multiprocessing.get_context("spawn")
    with Emulator() as emu:
        s = emu.sample
        form = {
            "grant_type": "client_credentials",
            "client_id": s.client_id,
            "client_secret": s.client_secret,
            "scope": SCOPE,
        }
        token_url = f"{emu.authority()}/oauth2/v2.0/token"
        barrier = ctx.Barrier(PROCESSES)
        results = ctx.Queue()
        procs = [
            _client_process(ctx, token_url, form, emu.ca_bundle, REQUESTS_EACH, barrier, results)
            for _ in range(PROCESSES)
        ]
        for proc in procs:
            proc.start()
        try:
            reports = _collect(procs, results, barrier)
        finally:
            for proc in procs:
                proc.join(timeout=30)
                if proc.is_alive():
                    proc.kill()

        assert [proc.exitcode for proc in procs] == [0] * PROCESSES
        assert len(reports) == PROCESSES
        assert all(statuses == [200] * REQUESTS_EACH for statuses in reports.values()), reports

        expected = PROCESSES * REQUESTS_EACH
        assert emu.count("token") == expected
        records = emu.requests("token")
        assert len(records) == expected
        assert Counter(r.status for r in records) == {200: expected}
        assert {r.grant_type for r in records} == {"client_credentials"}
        assert {r.client_id for r in records} == {s.client_id}
        assert len({r.extra["issued_uti"] for r in records}) == expected
        assert emu.counts() == {"token": expected}

        # the admin API over HTTP sees the same numbers
        admin = f"{emu.authority_host}/_emulator"
        counts = requests.post(f"{admin}/counts", verify=emu.ca_bundle, timeout=10)
        assert counts.status_code == 200
        assert counts.json() == {"result": {"token": expected}}
        logged = requests.post(
            f"{admin}/requests", json={"endpoint": "token"}, verify=emu.ca_bundle, timeout=10
        )
        rows = logged.json()["result"]
        assert len(rows) == expected
        assert all(row["status"] == 200 and row["had_authorization"] is False for row in rows)
        assert "authorization" not in rows[0]
        # admin calls are not counted themselves
        assert emu.counts() == {"token": expected}


def test_counts_are_per_endpoint_and_reset():
    with Emulator() as emu:
        s = emu.sample
        form = {
            "grant_type": "client_credentials",
            "client_id": s.client_id,
            "client_secret": s.client_secret,
            "scope": SCOPE,
        }
        for _ in range(3):
            requests.post(
                f"{emu.authority()}/oauth2/v2.0/token", data=form, verify=emu.ca_bundle, timeout=10
            )
        requests.get(
            f"{emu.authority()}/v2.0/.well-known/openid-configuration",
            verify=emu.ca_bundle,
            timeout=10,
        )
        assert emu.counts() == {"token": 3, "discovery": 1}
        assert emu.count("token") == 3
        assert emu.count("vault") == 0

        emu.reset_counts()
        assert emu.counts() == {}
        assert emu.requests() == []
        reply = requests.post(
            f"{emu.authority_host}/_emulator/counts", verify=emu.ca_bundle, timeout=10
        )
        assert reply.json() == {"result": {}}
