"""No secret shows in a traceback's frame locals (``pytest --showlocals``, Sentry).

Error reporters record the locals of every frame of a traceback; pytest prints them
with ``--showlocals``. So a secret must never sit in a frame an exception passes
through: not the certificate password next to the key bytes in the certificate
parser, not the decrypted key in the dict handed to msal, not ``os.environ`` (whose
repr shows every variable, ``PPAUTH_CLIENT_SECRET`` included) in a source or the
config loader.

Each case writes a small failing test, runs it in a child ``pytest -vv --showlocals
--tb=long`` (``-vv``: locals are not truncated) whose environment and files hold the
secrets, and searches the whole output. The child test itself holds no secret: the
library reads them from the environment and files, as it would in production. A
positive control shows the search finds each secret when a test does hold it.
"""

from __future__ import annotations

import os
import pprint
import re
import secrets
import subprocess
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

import requests_ppauth
from requests_ppauth.testing import Emulator
from requests_ppauth.testing._certs import make_client_certificate

SCOPE = "https://service.powerapps.com//.default"
# -vv: pytest prints locals whole (pprint) instead of truncating them
CHILD_OPTIONS = ("-vv", "--showlocals", "--tb=long", "-p", "no:cacheprovider", "-p", "no:xdist")
BAP_PATH = (
    "/providers/Microsoft.BusinessAppPlatform/scopes/admin/environments?api-version=2020-10-01"
)

CHILD_REQUEST = """
import os

import requests

from requests_ppauth import PowerPlatformAuth


def test_request():
    session = requests.Session()
    session.auth = PowerPlatformAuth(
        hosts={os.environ["LEAKCHECK_HOST"]: os.environ["LEAKCHECK_SCOPE"]}
    )
    session.get(os.environ["LEAKCHECK_URL"], timeout=30)
"""

# The same request, with the context our error suppresses (``raise ... from None``)
# shown: its frames, msal's constructor among them, stay reachable from the error, for
# a debugger or a reporter that walks ``__context__``.
CHILD_REQUEST_WITH_CONTEXT = CHILD_REQUEST.replace(
    '    session.get(os.environ["LEAKCHECK_URL"], timeout=30)\n',
    """    try:
        session.get(os.environ["LEAKCHECK_URL"], timeout=30)
    except Exception as exc:
        exc.__suppress_context__ = False
        raise
""",
)

# The positive control: a test that does hold every secret as a local.
CHILD_HOLDS_SECRETS = """
import os
from pathlib import Path


def test_holds_secrets():
    certificate_password = os.environ["PPAUTH_CLIENT_CERTIFICATE_PASSWORD"]
    wrong_password = os.environ["LEAKCHECK_WRONG_PASSWORD"]
    encrypted_pem = Path(os.environ["PPAUTH_CLIENT_CERTIFICATE_PATH"]).read_bytes()
    decrypted_key = Path(os.environ["LEAKCHECK_PLAIN_KEY"]).read_text()
    pfx = Path(os.environ["LEAKCHECK_PFX"]).read_bytes()
    client_secret = os.environ["PPAUTH_CLIENT_SECRET"]
    user_password = os.environ["PPAUTH_PASSWORD"]
    environ = os.environ
    assert not certificate_password, "deliberately failing with secrets in its locals"
"""


def _body_line(pem: bytes) -> str:
    """A line from the middle of a PEM block's base64 body (64 characters)."""
    lines = [ln for ln in pem.decode().splitlines() if ln and not ln.startswith("-----")]
    return lines[len(lines) // 2]


def _bytes_fragment(data: bytes) -> str:
    """How 24 bytes from the middle of ``data`` look inside a bytes repr: a window
    without quotes or backslashes, whose escaping does not depend on the quote repr picks."""
    for start in range(len(data) // 2, len(data) - 24):
        window = data[start : start + 24]
        if not any(c in window for c in b"'\"\\"):
            return repr(window)[2:-1]
    raise AssertionError("no quote-free window in the PFX")


# pprint (what pytest -vv uses for locals) splits long bytes and strings into adjacent
# literals on several lines; join them back so a secret split across two still matches.
_CONTINUATION = re.compile(r"""['"]\s*\n\s*b?['"]""")


def _shown(output: str, needles: dict[str, str]) -> list[str]:
    joined = _CONTINUATION.sub("", output)
    return sorted(name for name, text in needles.items() if text in output or text in joined)


@dataclass(frozen=True, repr=False)
class Material:
    """The secrets of one test, the files that hold them, and what to search for."""

    certificate_password: str
    wrong_password: str
    client_secret: str
    user_password: str
    other_secret: str  # an unrelated variable: a repr of os.environ would show it
    encrypted_pem: Path  # encrypted key + matching certificate
    encrypted_key_only: Path
    mismatched_pem: Path  # encrypted key + someone else's certificate
    pfx_path: Path
    plain_key: Path
    needles: dict[str, str]

    def __repr__(self) -> str:
        return "<Material>"


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    path.chmod(0o600)
    return path


@pytest.fixture
def material(ppauth_session_emulator: Emulator, tmp_path: Path) -> Material:
    sample = ppauth_session_emulator.sample
    assert sample is not None
    cert = sample.certificate
    password = "cert-pw-" + secrets.token_hex(12)
    key = serialization.load_pem_private_key(cert.key_pem, None)
    plain = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    encrypted = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(password.encode()),
    )
    other = make_client_certificate("someone else", slot="leak-other")
    pfx = cert.pfx(password)
    files = tmp_path / "secrets"
    files.mkdir(mode=0o700)
    m = Material(
        certificate_password=password,
        wrong_password="wrong-pw-" + secrets.token_hex(12),
        client_secret="client~" + secrets.token_hex(16),
        user_password="user-pw-" + secrets.token_hex(12),
        other_secret="other-" + secrets.token_hex(16),
        encrypted_pem=_write(files / "encrypted.pem", encrypted + cert.cert_pem),
        encrypted_key_only=_write(files / "key-only.pem", encrypted),
        mismatched_pem=_write(files / "mismatch.pem", encrypted + other.cert_pem),
        pfx_path=_write(files / "client.pfx", pfx),
        plain_key=_write(files / "plain-key.pem", plain),
        needles={},
    )
    m.needles.update(
        {
            "certificate password": m.certificate_password,
            "wrong certificate password": m.wrong_password,
            "client secret": m.client_secret,
            "user password": m.user_password,
            "unrelated environment variable": m.other_secret,
            "encrypted private key": _body_line(encrypted),
            "decrypted private key": _body_line(plain),
            "PFX bytes": _bytes_fragment(pfx),
        }
    )
    return m


def _child_env(emu: Emulator, tmp_path: Path, m: Material, case: dict[str, str]) -> dict[str, str]:
    """The parent's isolated environment (tests/conftest.py) plus the case's variables."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    package_root = str(Path(requests_ppauth.__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
    env.update(
        PPAUTH_AUTHORITY_HOST=emu.authority_host,
        PPAUTH_CA_BUNDLE=emu.ca_bundle,
        PPAUTH_CACHE_DIR=str(tmp_path / "child-cache"),
        LEAKCHECK_URL=emu.api_url + BAP_PATH,
        LEAKCHECK_HOST=emu.api_url.split("//", 1)[1],
        LEAKCHECK_SCOPE=SCOPE,
        OTHER_APP_SECRET=m.other_secret,
    )
    env.update(case)
    return env


def _run_child(tmp_path: Path, env: dict[str, str], source: str) -> str:
    child = tmp_path / "child"
    child.mkdir()
    (child / "pytest.ini").write_text("[pytest]\n")  # rootdir here: no conftest of ours
    (child / "test_child.py").write_text(source)
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", *CHILD_OPTIONS, "test_child.py"],
        cwd=child,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 1 and "1 failed" in output, output[-3000:]
    return output


def _redacted(output: str, m: Material) -> str:
    for name, text in m.needles.items():
        output = output.replace(text, f"<{name}>")
    return output


def _cert(m: Material, path: Path, password: str | None, emu: Emulator) -> dict[str, str]:
    sample = emu.sample
    assert sample is not None
    env = {
        "PPAUTH_TENANT_ID": sample.tenant_id,
        "PPAUTH_CLIENT_ID": sample.cert_client_id,
        "PPAUTH_CLIENT_CERTIFICATE_PATH": str(path),
    }
    if password is not None:
        env["PPAUTH_CLIENT_CERTIFICATE_PASSWORD"] = password
    return env


def _config(tmp: Path, *, mode: int = 0o600, **settings: str) -> str:
    """A config file with these settings in ``[profiles.default]``; its path."""
    lines = ["[profiles.default]"] + [f'{k} = "{v}"' for k, v in settings.items()]
    path = _write(tmp / "config.toml", ("\n".join(lines) + "\n").encode())
    path.chmod(mode)
    return str(path)


Case = Callable[[Material, Emulator, Path], dict[str, str]]
# msal's constructor fails: the child also shows the context of our error
MSAL_CASES = frozenset(
    {"certificate-unknown-tenant", "certificate-discovery-fails", "secret-unknown-tenant"}
)
# each case: the child's variables, and (a regex of) the error the child must fail with
CASES: dict[str, tuple[Case, str]] = {
    "key-certificate-mismatch": (
        lambda m, emu, _: _cert(m, m.mismatched_pem, m.certificate_password, emu),
        r"ConfigurationError: .*matches its private key",
    ),
    "key-without-certificate": (
        lambda m, emu, _: _cert(m, m.encrypted_key_only, m.certificate_password, emu),
        r"ConfigurationError: .*holds a private key but no certificate",
    ),
    "wrong-certificate-password": (
        lambda m, emu, _: _cert(m, m.encrypted_pem, m.wrong_password, emu),
        r"ConfigurationError: .*wrong certificate password",
    ),
    "encrypted-key-no-password": (
        lambda m, emu, _: _cert(m, m.encrypted_pem, None, emu),
        r"ConfigurationError: .*is encrypted: set the certificate password",
    ),
    "pfx-wrong-password": (
        lambda m, emu, _: _cert(m, m.pfx_path, m.wrong_password, emu),
        r"ConfigurationError: .*as PKCS#12: wrong certificate password",
    ),
    "certificate-unknown-tenant": (
        lambda m, emu, _: {
            **_cert(m, m.encrypted_pem, m.certificate_password, emu),
            "PPAUTH_TENANT_ID": "00000000-0000-4000-8000-00000000dead",
        },
        r"TokenAcquisitionError: .*AADSTS90002",
    ),
    "certificate-discovery-fails": (  # msal's constructor raises, past our handlers
        lambda m, emu, _: _cert(m, m.encrypted_pem, m.certificate_password, emu),
        r"(HTTPError: 500|TokenAcquisitionError: .*500)",
    ),
    "config-secret-without-tenant": (  # the file source: a literal secret in the profile
        lambda m, emu, tmp: {
            "PPAUTH_CONFIG": _config(
                tmp,
                client_id=emu.sample.client_id if emu.sample else "",
                client_secret=m.client_secret,
            ),
        },
        r"SourceError: \[file\] .*has a client credential but no tenant_id",
    ),
    "config-malformed-with-literal-secret": (  # the file's text is a local of the reader
        lambda m, emu, tmp: {
            "PPAUTH_CONFIG": str(
                _write(
                    tmp / "config.toml",
                    f'[profiles.default]\nclient_secret = "{m.client_secret}"\n[broken\n'.encode(),
                )
            ),
        },
        r"ConfigurationError: .*is not valid TOML",
    ),
    "config-invalid-with-literal-secret": (  # ...and its parsed tables, of the validator
        lambda m, emu, tmp: {
            "PPAUTH_CONFIG": str(
                _write(
                    tmp / "config.toml",
                    f'[profiles.default]\nclient_secret = "{m.client_secret}"\n'
                    "cloud = 1\n".encode(),
                )
            ),
        },
        r"ConfigurationError: .*cloud must be a string",
    ),
    "secret-unknown-tenant": (  # msal's constructor holds the secret as it fails
        lambda m, emu, _: {
            "PPAUTH_TENANT_ID": "00000000-0000-4000-8000-00000000dead",
            "PPAUTH_CLIENT_ID": emu.sample.client_id if emu.sample else "",
            "PPAUTH_CLIENT_SECRET": m.client_secret,
        },
        r"TokenAcquisitionError: .*AADSTS90002",
    ),
    "config-certificate-wrong-password": (
        lambda m, emu, tmp: {
            "PPAUTH_CONFIG": _config(
                tmp,
                tenant_id=emu.sample.tenant_id if emu.sample else "",
                client_id=emu.sample.cert_client_id if emu.sample else "",
                certificate_path=str(m.encrypted_pem),
                certificate_password=m.wrong_password,
            ),
        },
        r"ConfigurationError: .*wrong certificate password",
    ),
    "config-certificate-file-missing": (
        lambda m, emu, tmp: {
            "PPAUTH_CONFIG": _config(
                tmp,
                tenant_id=emu.sample.tenant_id if emu.sample else "",
                client_id=emu.sample.cert_client_id if emu.sample else "",
                certificate_path=str(tmp / "absent.pem"),
                certificate_password=m.certificate_password,
            ),
        },
        r"SourceError: \[file\] certificate_path .*which does not exist",
    ),
    "config-readable-by-others": (  # a plaintext secret in a file of mode 0644
        lambda m, emu, tmp: {
            "PPAUTH_CONFIG": _config(
                tmp,
                mode=0o644,
                tenant_id=emu.sample.tenant_id if emu.sample else "",
                client_id=emu.sample.client_id if emu.sample else "",
                client_secret=m.client_secret,
            ),
        },
        r"UnsafeFileError: .*holds a plaintext client_secret",
    ),
    "certificate-file-missing": (
        lambda m, emu, tmp: _cert(m, tmp / "absent.pem", m.certificate_password, emu),
        r"SourceError: \[env\] PPAUTH_CLIENT_CERTIFICATE_PATH .*which does not exist",
    ),
    "secret-without-tenant": (
        lambda m, emu, _: {
            "PPAUTH_CLIENT_ID": emu.sample.client_id if emu.sample else "",
            "PPAUTH_CLIENT_SECRET": m.client_secret,
        },
        r"SourceError: .*PPAUTH_CLIENT_SECRET are set but PPAUTH_TENANT_ID is not",
    ),
    "secret-malformed-config": (
        lambda m, emu, tmp: {
            "PPAUTH_TENANT_ID": emu.sample.tenant_id if emu.sample else "",
            "PPAUTH_CLIENT_ID": emu.sample.client_id if emu.sample else "",
            "PPAUTH_CLIENT_SECRET": m.client_secret,
            "PPAUTH_CONFIG": str(_write(tmp / "broken.toml", b"[profiles.default\ncloud = 1\n")),
        },
        r"ConfigurationError: .*is not valid TOML",
    ),
    "secret-unknown-cache-backend": (
        lambda m, emu, _: {
            "PPAUTH_TENANT_ID": emu.sample.tenant_id if emu.sample else "",
            "PPAUTH_CLIENT_ID": emu.sample.client_id if emu.sample else "",
            "PPAUTH_CLIENT_SECRET": m.client_secret,
            "PPAUTH_CACHE": "no-such-backend",
        },
        r"ConfigurationError: .*no cache backend is named 'no-such-backend'",
    ),
    "wrong-user-password": (
        lambda m, emu, _: {
            "PPAUTH_TENANT_ID": emu.sample.tenant_id if emu.sample else "",
            "PPAUTH_CLIENT_ID": emu.sample.public_client_id if emu.sample else "",
            "PPAUTH_USERNAME": emu.sample.username if emu.sample else "",
            "PPAUTH_PASSWORD": m.user_password,
        },
        r"TokenAcquisitionError: .*invalid_grant",
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_no_secret_in_traceback_locals(
    case: str, material: Material, ppauth_session_emulator: Emulator, tmp_path: Path
) -> None:
    """The child fails with the expected error, and its full output (every frame's
    locals, unabridged) shows none of the secrets."""
    emu = ppauth_session_emulator
    build, expected = CASES[case]
    env = _child_env(emu, tmp_path, material, build(material, emu, tmp_path))
    if case == "certificate-discovery-fails":
        emu.inject("discovery", status=500, times=None)
    try:
        output = _run_child(
            tmp_path, env, CHILD_REQUEST_WITH_CONTEXT if case in MSAL_CASES else CHILD_REQUEST
        )
    finally:
        emu.clear_faults()
    assert re.search(expected, output), (
        f"the child did not fail with {expected!r}\n" + (_redacted(output, material)[-4000:])
    )
    if case in MSAL_CASES:  # the frames that hold msal's client_credential are shown
        assert re.search(r"^client_credential += ", output, re.MULTILINE), _redacted(
            output, material
        )[-3000:]
    shown = _shown(output, material.needles)
    assert not shown, f"shown in the traceback: {shown}\n" + _redacted(output, material)


def test_search_finds_secrets_held_as_locals(
    material: Material, ppauth_session_emulator: Emulator, tmp_path: Path
) -> None:
    """Positive control: with every secret in a failing test's locals, the search
    finds each one (so the cases above would see a leak, in any form pprint gives it)."""
    m = material
    env = _child_env(
        ppauth_session_emulator,
        tmp_path,
        m,
        {
            "PPAUTH_CLIENT_CERTIFICATE_PASSWORD": m.certificate_password,
            "LEAKCHECK_WRONG_PASSWORD": m.wrong_password,
            "PPAUTH_CLIENT_CERTIFICATE_PATH": str(m.encrypted_pem),
            "LEAKCHECK_PLAIN_KEY": str(m.plain_key),
            "LEAKCHECK_PFX": str(m.pfx_path),
            "PPAUTH_CLIENT_SECRET": m.client_secret,
            "PPAUTH_PASSWORD": m.user_password,
        },
    )
    output = _run_child(tmp_path, env, CHILD_HOLDS_SECRETS)
    assert "deliberately failing" in output
    assert _shown(output, m.needles) == sorted(m.needles)


def test_emulator_repr_shows_no_secret(ppauth_session_emulator: Emulator) -> None:
    """The emulator and its sample credentials may sit in a test's locals: their
    reprs name no secret."""
    emu = ppauth_session_emulator
    sample = emu.sample
    assert sample is not None
    shown = repr(emu) + repr(sample) + repr(sample.certificate)
    for secret in (
        sample.client_secret,
        sample.password,
        sample.admin_password,
        _body_line(sample.certificate.key_pem),
    ):
        assert secret not in shown


def test_holders_stay_what_libraries_expect_and_hide_their_values(
    monkeypatch: pytest.MonkeyPatch, ppauth_session_emulator: Emulator
) -> None:
    """The environment and settings views are read-only Mappings a source can use as
    before (the environment read live); msal's credential is a dict with the key in
    it; none shows a value in a repr, in pprint (pytest -vv) or to Sentry."""
    from requests_ppauth._redacted import EnvironView, Secret, SettingsView
    from requests_ppauth.certificates import msal_credential, parse_certificate

    hidden = "hidden-" + secrets.token_hex(8)
    monkeypatch.setenv("LEAKCHECK_VIEW", hidden)
    env = EnvironView()
    assert isinstance(env, Mapping)
    assert env["LEAKCHECK_VIEW"] == hidden and "LEAKCHECK_VIEW" in env
    assert env.get("LEAKCHECK_ABSENT") is None and dict(env) == dict(os.environ)
    monkeypatch.setenv("LEAKCHECK_LATER", "1")
    assert env.get("LEAKCHECK_LATER") == "1" and len(env) == len(os.environ)
    with pytest.raises(TypeError):
        env["LEAKCHECK_VIEW"] = "x"  # type: ignore[index]
    settings = SettingsView({"client_secret": hidden, "keyvault": {"hosts": []}})
    assert settings["keyvault"] == {"hosts": []} and type(settings["keyvault"]) is dict
    assert bool(settings) and not SettingsView({})
    sample = ppauth_session_emulator.sample
    assert sample is not None
    parsed = parse_certificate(sample.certificate.pem_bundle, None, "the sample")
    credential = msal_credential(parsed, send_chain=False)
    assert isinstance(credential, dict) and isinstance(credential["private_key"], str)
    assert credential == {"private_key": parsed.key_pem, "thumbprint": parsed.thumbprint}
    key_line = _body_line(parsed.key_pem.encode())
    for holder, secret in (
        (env, hidden),
        (settings, hidden),
        (credential, key_line),
        (credential["private_key"], key_line),
        (Secret(hidden), hidden),
    ):
        for shown in (repr(holder), pprint.pformat(holder), type(holder).__sentry_repr__(holder)):
            assert secret not in shown
    assert repr(env) == f"<environment: {len(os.environ)} variables>"
    assert repr(settings) == "<settings: client_secret, keyvault>"
    assert repr(credential) == "<secrets: private_key, thumbprint>"
