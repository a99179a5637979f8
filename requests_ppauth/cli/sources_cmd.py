"""``ppauth sources``: plugins and credential sources, in precedence order, and what each says.

Every source is asked through the public :class:`~requests_ppauth.SourceRequest`, as
``PowerPlatformAuth`` asks it: the first credential wins; the sources before it say why
they declined; the ones after it are asked too, so a credential they hold shows as
shadowed rather than unknown. No secret is printed: only kind, client, tenant and user.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from requests_ppauth._redacted import EnvironView
from requests_ppauth.cli import common
from requests_ppauth.cli.failures import CLIError, describe
from requests_ppauth.errors import NO_CREDENTIAL_HINT
from requests_ppauth.plugins import DISABLE_VAR, get_plugins
from requests_ppauth.source_api import ANSWERED, FAILED, SHADOWED


def add(subparsers: Any, parents: list[argparse.ArgumentParser]) -> None:
    """Register ``sources``."""
    p = subparsers.add_parser(
        "sources",
        parents=parents,
        help="credential sources in precedence order, and which one answers",
        description=common.plain(
            "List installed plugins and credential sources in the order they are "
            "asked for the profile, which one answers, and why each other one passed."
        ),
    )
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=run)


_ORDER_WORDS = {
    "profile": "in the order the profile's sources list names",
    "priority": "by priority, lowest number first",
}


def ask_sources(args: argparse.Namespace) -> dict[str, Any]:
    """Ask every source for the profile; the report ``run`` prints.

    The asking is :func:`requests_ppauth.explain_sources`'s (the public API); this adds
    the installed plugins, resolvers and cache backends. ``status`` in ``--json`` keeps
    its old values (``answers``, ``shadowed``, ``error``, ``passed`` for a source that
    declined), so scripts reading it keep working; the text says "declined".
    """
    plugins = get_plugins()
    selected = common.profile(args)
    order = selected.get("sources")
    resolvers = plugins.resolvers()
    report = plugins.explain(
        selected, EnvironView(), explicit_profile=common.explicit_profile(args)
    )
    modules = {s.name: type(s).__module__ for s in plugins.sources()}
    rows: list[dict[str, Any]] = []
    for o in report.outcomes:
        row: dict[str, Any] = {
            "name": o.name,
            "priority": o.priority,
            "module": modules.get(o.name),
            "plugin": o.plugin,
            "outcome": o.outcome,
        }
        if o.outcome in (ANSWERED, SHADOWED):
            row["status"] = "answers" if o.outcome == ANSWERED else "shadowed"
            row["credential"] = dict(o.credential or {})
        elif o.outcome == FAILED:
            error, hint = describe(o.error) if o.error is not None else (o.reason, "")
            row.update(
                status="error", reason=error, hint=hint, stops_search=report.failed_by == o.name
            )
        else:
            row.update(status="passed", reason=o.reason)
        rows.append(row)
    return {
        "profile": selected.name,
        "config": str(selected.path),
        "profile_in_config": selected.exists,
        "profiles_in_config": list(selected.available),
        "order": "the profile's sources list" if order else "ascending priority",
        "order_words": _ORDER_WORDS["profile" if order else "priority"],
        "plugins": plugins.plugin_names(),
        "blocked": sorted(plugins.blocked),
        "skipped": dict(plugins.skipped),
        "sources": rows,
        "answered_by": report.answered_by,
        "stopped_by": report.failed_by,
        "resolvers": [
            {"name": r.name, "schemes": list(r.schemes), "module": type(r).__module__}
            for r in resolvers
        ],
        "cache_backends": sorted(plugins.cache_backends()),
    }


def run(args: argparse.Namespace) -> int:
    """Print the report; exit status 1 when no source answers."""
    report = ask_sources(args)
    if args.json:
        common.print_json(report)
    else:
        _print(report)
    stopped = next((r for r in report["sources"] if r.get("stops_search")), None)
    if stopped is not None:
        raise CLIError(f"source {stopped['name']!r} failed: {stopped['reason']}", stopped["hint"])
    if report["answered_by"] is None:
        raise CLIError(
            f"no source has a credential for profile {report['profile']!r}",
            NO_CREDENTIAL_HINT,
        )
    return 0


def _print(report: dict[str, Any]) -> None:
    out = sys.stdout
    where = ""
    if not report["profile_in_config"]:
        others = ", ".join(report["profiles_in_config"]) or "none"
        where = f" (not in it; profiles there: {others})"
    out.write(f"profile {report['profile']!r}; config file {report['config']}{where}\n")
    out.write(f"plugins: {', '.join(report['plugins']) or 'none'}")
    if report["blocked"]:
        out.write(f" (blocked by {DISABLE_VAR}: {', '.join(report['blocked'])})")
    for why in report["skipped"].values():
        out.write(f"\n  skipped: {why}")
    out.write(
        f"\nsources, asked one after another {report['order_words']}; the first to answer wins:\n"
    )
    width = max((len(row["name"]) for row in report["sources"]), default=0)
    for i, row in enumerate(report["sources"], 1):
        head = f"  {i}. {row['name']:<{max(width, 10)}} priority {row['priority']:<4} "
        status = row["status"]
        if status in ("answers", "shadowed"):
            c = row["credential"]
            who = f"user {c['user']}" if c["user"] else f"tenant {c['tenant_id']}"
            text = f"{c['kind']} for client {c['client_id']}, {who}"
            if c.get("identity"):
                text = f"{c['kind']} {c['identity']}"
            if status == "answers":
                out.write(f"{head}ANSWERS: {text}\n")
            else:
                first = report["answered_by"] or report["stopped_by"]
                out.write(f"{head}has one too, not used ({first} comes first): {text}\n")
        elif status == "error":
            out.write(f"{head}ERROR: {row['reason']}\n")
        else:
            out.write(f"{head}declined: {row['reason']}\n")
    resolvers = [f"{r['name']} ({', '.join(r['schemes'])})" for r in report["resolvers"]]
    out.write(f"secret resolvers: {', '.join(resolvers) or 'none'}\n")
    out.write(f"cache backends: {', '.join(report['cache_backends'])}\n")
