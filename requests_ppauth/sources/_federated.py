"""What the two CI federation sources (``github_actions``, ``azure_pipelines``) share:
finding the app's ids and the authority in the environment or the profile.

The ids come from the first family of variables that names a client id, both from
that family (one app's client id is never paired with another's tenant), else from
the profile. A profile the caller named (``--profile``, ``profile=``) comes first:
naming it says which app.
"""

from __future__ import annotations

from dataclasses import dataclass

from requests_ppauth.source_api import SourceRequest


@dataclass(frozen=True)
class AppIds:
    """The federated app's ids, and where each came from (for errors and notes)."""

    client_id: str
    tenant_id: str
    client_from: str
    tenant_from: str
    authority_host: str | None


def app_ids(request: SourceRequest, families: tuple[str, ...]) -> AppIds | None:
    """The ids from ``families`` (``"AZURE_"`` means ``AZURE_CLIENT_ID`` + ``_TENANT_ID``)
    or the profile; None when no client id is anywhere."""
    env, s = request.environ, request.settings
    where = f"[profiles.{request.profile}]"
    # (client id, tenant id, where each came from)
    profile = (
        (
            str(s["client_id"]),
            str(s.get("tenant_id") or ""),
            f"client_id of {where}",
            f"tenant_id of {where}",
        )
        if s.get("client_id")
        else None
    )
    from_env = next(
        (
            (env[p + "CLIENT_ID"], env.get(p + "TENANT_ID", ""), p + "CLIENT_ID", p + "TENANT_ID")
            for p in families
            if env.get(p + "CLIENT_ID", "").strip()
        ),
        None,
    )
    chosen = (profile if request.explicit_profile else None) or from_env or profile
    if chosen is None:
        return None
    client_id, tenant_id, client_from, tenant_from = chosen
    authority = (
        env.get("PPAUTH_AUTHORITY_HOST")
        or env.get("AZURE_AUTHORITY_HOST")
        or s.get("authority_host")
        or None
    )
    return AppIds(client_id.strip(), tenant_id.strip(), client_from, tenant_from, authority)


def setting(request: SourceRequest, variables: tuple[str, ...], key: str) -> tuple[str, str]:
    """The first of ``variables`` that is set, else the profile's ``key``: (value, where)."""
    for name in variables:
        value = request.environ.get(name, "").strip()
        if value:
            return value, name
    value = str(request.settings.get(key) or "").strip()
    return value, f"{key} of [profiles.{request.profile}]"
