"""One worker process of ``ppauth demo``: a requests Session with PowerPlatformAuth.

Started with the ``spawn`` context, so it imports only this module and what it uses.
It reports every call on the queue (for the progress bar) and a summary at the end.
"""

from __future__ import annotations

from typing import Any


def work(index: int, jobs: Any, messages: Any) -> None:
    """Import, say ready, take the job (url, hosts, verify, calls) from ``jobs``, run it.

    The parent starts the emulator while the workers import, and hands out the jobs
    once every worker is ready, so all of them start calling at the same moment.
    """
    try:
        _work(index, jobs, messages)
    except KeyboardInterrupt:
        return  # Ctrl-C reaches the whole process group: the parent reports it


def _work(index: int, jobs: Any, messages: Any) -> None:
    import requests

    from requests_ppauth import PowerPlatformAuth
    from requests_ppauth.cli.failures import describe

    messages.put(("ready", index))
    job = jobs.get()
    if job is None:
        return
    url, hosts, verify, calls = job
    session = requests.Session()
    # loopback calls to the emulator: no proxy or netrc from the environment (an
    # HTTPS_PROXY without NO_PROXY=127.0.0.1 would send them away)
    session.trust_env = False
    # the profile, config file and cache directory come from PPAUTH_* set by the parent
    session.auth = PowerPlatformAuth(hosts=hosts)
    ok = failed = 0
    first_error: str | None = None
    for _ in range(calls):
        try:
            resp = session.get(url, verify=verify, timeout=30)
            resp.content  # noqa: B018 - read the body, as a real client would
            if resp.status_code == 200:
                ok += 1
            else:
                failed += 1
                first_error = first_error or f"HTTP {resp.status_code} from {url}"
        except Exception as exc:  # reported to the parent, which fails the demo with it
            failed += 1
            first_error = first_error or ": ".join(describe(exc))
        messages.put(("call", index))
    messages.put(("done", index, ok, failed, first_error))
