"""Converting a token cache of requests-ppauth 0.1 (``tokens.json`` and its write-ahead
log) on first use: every entry carried over, the old files gone, and the states a
0.1 cache could be left in (a compactor killed between its two renames, a swap
finished by a purge while others appended, a log holding only its header, torn and
forged lines, an unparsable snapshot) read without losing a committed record.

The old format is written here by hand, from its documentation (see
``requests_ppauth.cache.legacy``), with real tokens from the emulator.
"""

from __future__ import annotations

import json
import re
import uuid
import warnings
import zlib
from pathlib import Path
from typing import Any

import pytest

from requests_ppauth import ClientSecret, DeviceCode, PowerPlatformAuth
from requests_ppauth.cache import CacheWarning, Op
from requests_ppauth.cache.file import FileCache
from requests_ppauth.cache.keys import FIELD_SEPARATOR
from tests._cache_state import entries, load, on_disk, token_entry_key

SNAPSHOT, LOG, NEXT = "tokens.json", "tokens.json.log", "tokens.json.log.next"
PP_SCOPE = "https://api.powerplatform.com/.default"
APPS_SCOPE = "https://service.powerapps.com//.default"


def line(payload: Any) -> bytes:
    body = json.dumps(payload, separators=(",", ":")).encode()
    return b"\n%08x %s\n" % (zlib.crc32(body), body)


def write_old(
    directory: Path,
    state: dict[str, Any],
    records: list[list[list[Any]]] = (),  # type: ignore[assignment]
    *,
    log_at: str = LOG,
    stale_log: bytes | None = None,
) -> str:
    """A 0.1 cache: ``state`` in the snapshot, ``records`` (batches of
    ``[section, key, value, if_secret]``) in its log at ``log_at``; ``stale_log`` at
    ``tokens.json.log`` when the snapshot's log is elsewhere (a swap cut short)."""
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    log_id = uuid.uuid4().hex
    header = line({"log": log_id})
    pointer = {"PPAuthLog": {"log": log_id, "offset": len(header)}}
    (directory / SNAPSHOT).write_text(json.dumps({**pointer, **state}, separators=(",", ":")))
    body = header + b"".join(line({"ops": ops}) for ops in records)
    (directory / log_at).write_bytes(body)
    if stale_log is not None:
        (directory / LOG).write_bytes(stale_log)
    for name in (SNAPSHOT, LOG, NEXT):
        if (directory / name).exists():
            (directory / name).chmod(0o600)
    return log_id


def old_entry(auth: PowerPlatformAuth, scope: str) -> tuple[str, dict[str, Any]]:
    """The (id, PPAuthToken entry) of a token this auth holds, as 0.1 keyed them."""
    entry = entries(Path(auth.provider.cache.location).parent)[
        token_entry_key(auth.provider.key(scope))
    ]
    return token_entry_key(auth.provider.key(scope))[3:], entry


def msal_sections(directory: Path) -> dict[str, Any]:
    """msal's sections (as a 0.1 cache held them) of a cache written by this version."""
    data = load(directory)
    return {k: v for k, v in data.items() if k != "PPAuthToken" and v}


@pytest.fixture
def signed_in(ppauth_emulator, tmp_path):
    """Real tokens: an app's and a person's (device code), in the layout of 0.1."""
    emu = ppauth_emulator
    source = tmp_path / "source"
    app = app_auth(emu, source)
    app.provider.get(PP_SCOPE)
    person = device_auth(emu, source)
    person.provider.sign_in(PP_SCOPE)
    app_id, app_entry = old_entry(app, PP_SCOPE)
    person_id, person_entry = old_entry(person, PP_SCOPE)
    sections = msal_sections(source)
    assert sections["RefreshToken"] and sections["Account"], sections.keys()
    # 0.1 kept msal's copy of each access token as well: it must not survive
    sections["AccessToken"] = {
        f"copy-{i}": {"secret": e["secret"], "credential_type": "AccessToken"}
        for i, e in enumerate((app_entry, person_entry))
    }
    emu.reset_counts()
    return {
        "emu": emu,
        "app": (app_id, app_entry),
        "person": (person_id, person_entry),
        "sections": sections,
        "secrets": [app_entry["secret"], person_entry["secret"]]
        + [rt["secret"] for rt in sections["RefreshToken"].values()],
    }


CODE = re.compile(r"enter the code (\S+)")


def device_auth(emu, cache: Path) -> PowerPlatformAuth:
    """A person's device code sign-in; the prompt approves the code at once."""

    def approve(message: str) -> None:
        match = CODE.search(message)
        assert match, message
        emu.approve_device(match.group(1))

    return PowerPlatformAuth(
        credential=DeviceCode(
            tenant_id="organizations",
            client_id=emu.sample.public_client_id,
            authority_host=emu.authority_host,
            prompt=approve,
        ),
        verify=emu.ca_bundle,
        cache=cache,
    )


def app_auth(emu, cache: Path) -> PowerPlatformAuth:
    return PowerPlatformAuth(
        credential=ClientSecret(
            tenant_id=emu.sample.tenant_id,
            client_id=emu.sample.client_id,
            secret=emu.sample.client_secret,
            authority_host=emu.authority_host,
        ),
        verify=emu.ca_bundle,
        cache=cache,
    )


# -- conversion ---------------------------------------------------------------------------


def test_a_0_1_cache_is_converted_on_first_use_and_its_files_removed(signed_in, tmp_path):
    emu = signed_in["emu"]
    directory = tmp_path / "old"
    app_id, app_entry = signed_in["app"]
    person_id, person_entry = signed_in["person"]
    # the person's token in the snapshot, the app's in the log, plus a removed one
    state = {**signed_in["sections"], "PPAuthToken": {person_id: person_entry}}
    write_old(
        directory,
        state,
        [
            [["PPAuthToken", "gone", {"secret": "removed-token"}, None]],
            [["PPAuthToken", app_id, app_entry, None]],
            [["PPAuthToken", "gone", None, "removed-token"]],
        ],
    )
    (directory / "tokens.json.journal").write_bytes(b"0.0 journal: held tokens too")

    with warnings.catch_warnings():
        warnings.simplefilter("error", CacheWarning)
        converted = entries_via(directory)

    assert converted["at:" + app_id]["secret"] == app_entry["secret"]
    assert converted["at:" + person_id]["secret"] == person_entry["secret"]
    assert "at:gone" not in converted
    partitions = {k: v for k, v in converted.items() if k.startswith("msal:")}
    (fields,) = partitions.values()  # one app with a person signed in: one partition
    sections = {name.split(FIELD_SEPARATOR, 1)[0] for name in fields}
    assert sections == {"RefreshToken", "Account", "IdToken", "AppMetadata"}
    assert len(converted) == 3  # msal's copies of the access tokens were not carried
    # the old files are gone, and no token is left in any file but the database
    leftover = sorted(p.name for p in directory.iterdir() if p.name.startswith("tokens.json"))
    assert leftover in ([], ["tokens.json.lock"])
    for secret in signed_in["secrets"]:
        assert secret.encode() not in b"".join(
            p.read_bytes() for p in directory.iterdir() if p.is_file() and "cache.db" not in p.name
        )
    assert b"removed-token" not in on_disk(directory)

    # and the converted cache works: warm start, then a new scope from the refresh token
    assert app_auth(emu, directory).provider.get(PP_SCOPE).token == app_entry["secret"]
    person = device_auth(emu, directory)
    assert person.provider.get(PP_SCOPE).token == person_entry["secret"]
    assert emu.counts() == {}
    person.provider.get(APPS_SCOPE)
    assert emu.count("devicecode") == 0
    assert emu.requests("token")[-1].grant_type == "refresh_token"


def entries_via(directory: Path) -> dict[str, Any]:
    """Open the cache with the library (which converts), then read it independently."""
    FileCache(directory).get(["at:nothing"])
    return entries(directory)


def test_a_cache_left_by_a_compactor_killed_between_its_renames(signed_in, tmp_path):
    """The snapshot names the new log, still at .next; the old log, already folded,
    is at tokens.json.log (the state the 0.1 lost-commit race started from)."""
    directory = tmp_path / "old"
    app_id, app_entry = signed_in["app"]
    person_id, person_entry = signed_in["person"]
    folded = {"secret": "folded-already", "expires_on": 2e9, "refresh_on": 2e9}
    stale = line({"log": uuid.uuid4().hex}) + line({"ops": [["PPAuthToken", "f", folded, None]]})
    write_old(
        directory,
        {**signed_in["sections"], "PPAuthToken": {"f": folded}},
        [
            [["PPAuthToken", app_id, app_entry, None]],
            [["PPAuthToken", person_id, person_entry, None]],
        ],
        log_at=NEXT,
        stale_log=stale,
    )

    with warnings.catch_warnings():
        warnings.simplefilter("error", CacheWarning)
        converted = entries_via(directory)

    assert {k for k in converted if k.startswith("at:")} == {
        "at:f",
        "at:" + app_id,
        "at:" + person_id,
    }
    assert not (directory / NEXT).exists() and not (directory / LOG).exists()


def test_a_swap_finished_by_a_purge_keeps_what_others_appended_after_it(signed_in, tmp_path):
    """0.1 lost these: a purge finished the dead swap (``.next`` renamed to the log),
    other writers appended to it, then the purge's stale view moved that log aside.
    Every record of the snapshot's log, wherever the swap left it, is carried."""
    directory = tmp_path / "old"
    app_id, app_entry = signed_in["app"]
    person_id, person_entry = signed_in["person"]
    write_old(
        directory,
        dict(signed_in["sections"]),
        [
            [["PPAuthToken", app_id, app_entry, None]],  # appended after the rename
            [["PPAuthToken", person_id, person_entry, None]],
        ],
    )
    converted = entries_via(directory)
    assert converted["at:" + app_id]["secret"] == app_entry["secret"]
    assert converted["at:" + person_id]["secret"] == person_entry["secret"]


def test_a_log_holding_only_its_header_is_read_without_a_warning(signed_in, tmp_path):
    directory = tmp_path / "old"
    person_id, person_entry = signed_in["person"]
    write_old(directory, {**signed_in["sections"], "PPAuthToken": {person_id: person_entry}})
    with warnings.catch_warnings():
        warnings.simplefilter("error", CacheWarning)
        converted = entries_via(directory)
    assert converted["at:" + person_id] == person_entry
    assert not list(directory.glob("*.corrupt-*"))


def test_torn_and_forged_lines_of_the_old_log_are_skipped(signed_in, tmp_path):
    directory = tmp_path / "old"
    app_id, app_entry = signed_in["app"]
    write_old(directory, {}, [[["PPAuthToken", app_id, app_entry, None]]])
    forged = b'\n00000000 {"ops":[["PPAuthToken","forged",{"secret":"f"},null]]}\n'
    with open(directory / LOG, "ab") as fh:
        fh.write(b'\n1234abcd {"ops":[["PPAuthToken","torn"')  # a writer killed mid-write
        fh.write(forged)
    converted = entries_via(directory)
    assert set(converted) == {"at:" + app_id}


@pytest.mark.parametrize(
    "content", [b"{not json", b"[1, 2]", b"\xff\xfe"], ids=["garbage", "list", "non-utf8"]
)
def test_an_unparsable_old_snapshot_is_set_aside_and_reported(tmp_path, content):
    directory = tmp_path / "old"
    directory.mkdir(mode=0o700)
    (directory / SNAPSHOT).write_bytes(content)
    (directory / SNAPSHOT).chmod(0o600)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert entries_via(directory) == {}
    (aside,) = directory.glob("tokens.json.corrupt-*")
    assert aside.read_bytes() == content
    assert any(
        issubclass(w.category, CacheWarning) and "tokens.json" in str(w.message) for w in caught
    )
    FileCache(directory).apply([Op("at:x", {"secret": "s"})])  # and the new cache works
    assert entries(directory) == {"at:x": {"secret": "s"}}


def test_a_converted_cache_is_not_converted_again(signed_in, tmp_path):
    directory = tmp_path / "old"
    app_id, app_entry = signed_in["app"]
    write_old(directory, {"PPAuthToken": {app_id: app_entry}})
    entries_via(directory)
    FileCache(directory).apply([Op("at:" + app_id)])  # removed after the conversion
    # a 0.1 process recreates its files later (mixed versions): they are ignored
    write_old(directory, {"PPAuthToken": {app_id: app_entry}})
    assert "at:" + app_id not in entries_via(directory)
