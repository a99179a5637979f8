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
    profile = (
        AppIds(
            str(s.get("client_id") or "").strip(),
            str(s.get("tenant_id") or "").strip(),
            f"client_id of {where}",
            f"tenant_id of {where}",
            None,
        )
        if s.get("client_id")
        else None
    )
    found: AppIds | None = profile if request.explicit_profile else None
    for prefix in families if found is None else ():
        if env.get(prefix + "CLIENT_ID", "").strip():
            found = AppIds(
                env[prefix + "CLIENT_ID"].strip(),
                env.get(prefix + "TENANT_ID", "").strip(),
                prefix + "CLIENT_ID",
                prefix + "TENANT_ID",
                None,
            )
            break
    found = found or profile
    if found is None:
        return None
    authority = (
        env.get("PPAUTH_AUTHORITY_HOST")
        or env.get("AZURE_AUTHORITY_HOST")
        or s.get("authority_host")
        or None
    )
    return AppIds(found.client_id, found.tenant_id, found.client_from, found.tenant_from, authority)


def setting(request: SourceRequest, variables: tuple[str, ...], key: str) -> tuple[str, str]:
    """The first of ``variables`` that is set, else the profile's ``key``: (value, where)."""
    for name in variables:
        value = request.environ.get(name, "").strip()
        if value:
            return value, name
    value = str(request.settings.get(key) or "").strip()
    return value, f"{key} of [profiles.{request.profile}]"
