"""``ppauth sources``: plugins and credential sources, in precedence order, and what each says.

Every source is asked through the public :class:`~requests_ppauth.SourceRequest`, as
``PowerPlatformAuth`` asks it: the first credential wins; the sources before it say why
they passed; the ones after it are asked too, so a credential they hold shows as
shadowed rather than unknown. No secret is printed: only kind, client, tenant and user.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from requests_ppauth._redacted import EnvironView, SettingsView
from requests_ppauth.cli import common
from requests_ppauth.cli.failures import CLIError, describe
from requests_ppauth.credentials import Credential, ManagedIdentity
from requests_ppauth.errors import PPAuthError
from requests_ppauth.plugins import DISABLE_VAR, get_plugins
from requests_ppauth.source_api import SourceRequest


def add(subparsers: Any, parents: list[argparse.ArgumentParser]) -> None:
    """Register ``sources``."""
    p = subparsers.add_parser(
        "sources",
        parents=parents,
        help="credential sources in precedence order, and which one answers",
        description="List installed plugins and credential sources in the order they are "
        "asked for the profile, which one answers, and why each other one passed.",
    )
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=run)


def credential_summary(cred: Credential) -> dict[str, Any]:
    """What a credential may show: never its secret."""
    summary = {
        "kind": cred.kind,
        "client_id": cred.client_id,
        "tenant_id": cred.tenant_id,
        "user": cred.user,
        "authority_host": cred.authority_host,
    }
    if isinstance(cred, ManagedIdentity):  # which identity: its client id may be empty
        summary["identity"] = (
            cred.client_id
            or (f"object_id:{cred.object_id}" if cred.object_id else None)
            or cred.resource_id
            or "system"
        )
    return summary


def ask_sources(args: argparse.Namespace) -> dict[str, Any]:
    """Ask every source for the profile; the report ``run`` prints."""
    plugins = get_plugins()
    selected = common.profile(args)
    order = selected.get("sources")
    resolvers = plugins.resolvers()
    rows: list[dict[str, Any]] = []
    answered: str | None = None
    stopped: dict[str, Any] | None = None  # the error PowerPlatformAuth would raise
    for source in plugins.ordered_sources(order):
        request = SourceRequest(
            profile=selected.name,
            settings=SettingsView(selected.settings),
            environ=EnvironView(),  # its repr hides the values: frames that raise hold it
            config_path=selected.path,
            settings_mode=selected.file_mode,
            explicit_profile=common.explicit_profile(args),
            resolvers=resolvers,
        )
        row: dict[str, Any] = {
            "name": source.name,
            "priority": source.priority,
            "module": type(source).__module__,
        }
        decided = answered is not None or stopped is not None
        try:
            cred = source.credential(request)
        except PPAuthError as exc:
            error, hint = describe(exc)
            row.update(status="error", reason=error, hint=hint, stops_search=not decided)
            if not decided:
                stopped = row
        else:
            if isinstance(cred, Credential):
                row["credential"] = credential_summary(cred)
                row["status"] = "shadowed" if decided else "answers"
                if not decided:
                    answered = source.name
            elif cred is not None:
                row.update(
                    status="error",
                    reason=f"returned {type(cred).__name__}, not a Credential",
                    hint=f"the plugin {type(source).__module__} breaks the source contract",
                    stops_search=not decided,
                )
                if not decided:
                    stopped = row
            else:
                row["status"] = "passed"
                row["reason"] = request.notes[-1] if request.notes else "passed (no reason given)"
        rows.append(row)
    return {
        "profile": selected.name,
        "config": str(selected.path),
        "profile_in_config": selected.exists,
        "profiles_in_config": list(selected.available),
        "order": "the profile's sources list" if order else "ascending priority",
        "plugins": plugins.plugin_names(),
        "blocked": sorted(plugins.blocked),
        "sources": rows,
        "answered_by": answered,
        "stopped_by": stopped["name"] if stopped else None,
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
            "set PPAUTH_TENANT_ID, PPAUTH_CLIENT_ID and PPAUTH_CLIENT_SECRET, or add a "
            "profile with `ppauth profile add`",
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
    out.write(f"\nsources, in the order they are asked ({report['order']}):\n")
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
            out.write(f"{head}passed: {row['reason']}\n")
    resolvers = [f"{r['name']} ({', '.join(r['schemes'])})" for r in report["resolvers"]]
    out.write(f"secret resolvers: {', '.join(resolvers) or 'none'}\n")
    out.write(f"cache backends: {', '.join(report['cache_backends'])}\n")
