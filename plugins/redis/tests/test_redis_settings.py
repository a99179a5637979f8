"""Settings that cannot work are refused before any token moves, with a message that
names the setting and the fix and never the password or the key."""

from __future__ import annotations

import pytest
from requests_ppauth_redis import make_redis_cache
from requests_ppauth_redis._settings import redact_url
from requests_ppauth_redis.testing import free_port

from requests_ppauth import CacheError, ConfigurationError, PowerPlatformAuth, UnsafeFileError
from requests_ppauth.cache.select import resolve


def test_a_wrong_password_is_a_configuration_error_without_the_password(
    redis_server, ppauth_env, cache_key
):
    wrong = "not-the-password-" + redis_server.password[:4]
    url = f"redis://:{wrong}@127.0.0.1:{redis_server.port}/0"
    ppauth_env.set(PPAUTH_REDIS_URL=url, PPAUTH_CACHE_KEY=cache_key)
    with pytest.raises(ConfigurationError) as caught:
        resolve("redis", where="PPAUTH_CACHE")
    message = str(caught.value)
    assert wrong not in message and cache_key not in message
    assert redis_server.url_without_password in message, message
    assert "password" in message and "PPAUTH_REDIS_URL" in message
    assert caught.value.__cause__ is None and caught.value.__suppress_context__


def test_a_wrong_password_fails_powerplatformauth_the_same_way(redis_server, ppauth_env, cache_key):
    ppauth_env.set(PPAUTH_CACHE_KEY=cache_key, PPAUTH_REDIS_PASSWORD="wrong-password-x")
    ppauth_env.set(PPAUTH_REDIS_URL=redis_server.url_without_password)
    auth = PowerPlatformAuth(cache="redis", credential=None)
    with pytest.raises(ConfigurationError, match="refused the credentials") as caught:
        _ = auth.provider
    assert "wrong-password-x" not in str(caught.value)


def test_without_a_key_it_refuses_to_start_and_says_how_to_make_one(redis_server, ppauth_env):
    ppauth_env.set(PPAUTH_REDIS_URL=redis_server.url)
    with pytest.raises(ConfigurationError) as caught:
        resolve("redis")
    message = str(caught.value)
    assert "ppauth cache keygen" in message and "PPAUTH_CACHE_KEY" in message, message
    assert 'encryption = "none"' in message
    assert redis_server.password not in message


def test_encryption_none_must_be_explicit_and_stores_plain_json(redis_server, ppauth_env):
    ppauth_env.set(PPAUTH_REDIS_URL=redis_server.url)
    cache = resolve({"backend": "redis", "encryption": "none"})
    from requests_ppauth.cache import Op

    cache.apply([Op("at:k", {"secret": "s"})])
    assert redis_server.client().get("{ppauth}:e:at:k") == b'{"secret":"s"}'


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ({}, "PPAUTH_REDIS_URL"),
        ({"url": "http://127.0.0.1:6379"}, "redis://, rediss:// .TLS. or unix://"),
        ({"url": "redis://"}, "needs a host"),
        ({"url": "unix://"}, "socket path"),
        ({"url": "redis://h:99999"}, "is not a URL"),
        ({"url": "redis://h", "colour": "red"}, "does not know"),
        ({"url": "redis://h", "prefix": "a b"}, "prefix"),
        ({"url": "redis://h", "encryption": "rot13"}, "encryption"),
        ({"url": "redis://h", "fallback": "maybe"}, "fallback"),
        ({"url": "redis://h", "socket_timeout": 0}, "socket_timeout"),
        ({"url": "redis://h", "ca_bundle": "/nonexistent/ca.pem"}, "ca_bundle"),
    ],
)
def test_bad_settings_name_the_setting(ppauth_env, cache_key, options, expected):
    ppauth_env.set(PPAUTH_CACHE_KEY=cache_key)
    with pytest.raises(ConfigurationError, match=expected):
        resolve({"backend": "redis", **options})


def test_a_bad_url_is_shown_without_its_password(ppauth_env, cache_key):
    ppauth_env.set(PPAUTH_CACHE_KEY=cache_key, PPAUTH_REDIS_URL="http://:hunter2@host:1/0")
    with pytest.raises(ConfigurationError) as caught:
        resolve("redis")
    assert "hunter2" not in str(caught.value) and "http://host:1/0" in str(caught.value)


def test_redact_url_keeps_the_user_and_drops_the_password():
    assert (
        redact_url("rediss://app:s3cret@cache.example:6380/2")
        == "rediss://app@cache.example:6380/2"
    )
    assert redact_url("redis://:s3cret@[::1]:6379/0") == "redis://[::1]:6379/0"
    # unencoded '/', '?', '#' in a password make the URL unparsable: still hidden
    for password in ("ab+c/d=e=", "pa?ss", "pa#ss", "a@b"):
        shown = redact_url(f"redis://az:{password}@127.0.0.1:43025/0")
        assert shown == "redis://az@127.0.0.1:43025/0", shown
    assert "x1" not in redact_url("redis://127.0.0.1:6379/0?password=x1")


def test_an_unparsable_url_with_a_password_is_not_shown(ppauth_env, cache_key):
    ppauth_env.set(
        PPAUTH_REDIS_URL="redis://az:ab+c/d=e=@127.0.0.1:notaport/0", PPAUTH_CACHE_KEY=cache_key
    )
    with pytest.raises(ConfigurationError) as exc:
        PowerPlatformAuth(cache="redis").provider.cache  # noqa: B018 - builds the backend
    assert "ab+c" not in str(exc.value) and "d=e=" not in str(exc.value)
    assert redact_url("unix:///run/redis.sock") == "unix:///run/redis.sock"


def test_the_environment_url_wins_over_the_options(redis_server, ppauth_env, cache_key):
    ppauth_env.set(PPAUTH_CACHE_KEY=cache_key, PPAUTH_REDIS_URL=redis_server.url)
    cache = resolve({"backend": "redis", "url": f"redis://127.0.0.1:{free_port()}/0"})
    assert cache.location.startswith(redis_server.url_without_password)


def test_a_password_option_may_be_a_secret_reference(redis_server, ppauth_env, cache_key, tmp_path):
    # a reference no installed plugin resolves is an error naming the setting, not a
    # password sent to Redis
    ppauth_env.set(PPAUTH_CACHE_KEY=cache_key)
    with pytest.raises(ConfigurationError, match="password.*pip install|unknown secret scheme"):
        make_redis_cache(
            {"url": redis_server.url_without_password, "password": {"ref": "nosuch:thing"}}
        )


def test_an_unreachable_redis_at_start_is_not_an_error(ppauth_env, cache_key):
    ppauth_env.set(PPAUTH_CACHE_KEY=cache_key)
    with pytest.warns(Warning, match="did not answer"):
        cache = resolve({"backend": "redis", "url": f"redis://127.0.0.1:{free_port()}/0"})
    assert cache.get(["at:k"]) == {}


def test_a_failed_pipeline_command_is_named_without_its_arguments(
    redis_server, ppauth_env, cache_key
):
    """redis-py quotes a failed pipeline command with its arguments; the value of a
    SET is a token (in clear with encryption = "none"), so the error keeps the name."""
    ppauth_env.set(PPAUTH_CACHE_KEY=cache_key)
    cache = make_redis_cache({"url": redis_server.url})
    store = cache.store
    client = redis_server.client()
    client.set("a-string", "x")  # LPUSH on it fails: WRONGTYPE

    def failing() -> object:
        pipe = client.pipeline(transaction=False)
        pipe.lpush("a-string", "token-value-never-shown")
        return pipe.execute()

    with pytest.raises(CacheError) as exc:
        store.call("storing tokens", failing)
    message = str(exc.value)
    assert "token-value-never-shown" not in message
    assert "LPUSH" in message and "WRONGTYPE" in message, message
    assert redis_server.password not in message


# -- a plaintext password in a config file others can read ------------------------------
REDIS_PROFILE = '[profiles.default]\ncache = "redis"\n[profiles.default.redis]\nurl = "{url}"\n'


def redis_profile(redis_server, extra: str = "") -> str:
    """A default profile on this Redis (its URL without the password), plus ``extra``."""
    return REDIS_PROFILE.format(url=redis_server.url_without_password) + extra


@pytest.mark.parametrize(
    ("table", "named"),
    [
        (REDIS_PROFILE + 'password = "{pw}"\n', "plaintext password"),
        (REDIS_PROFILE.replace("{url}", "{url_pw}"), "plaintext url (a URL with a password)"),
        (
            '[profiles.default]\ncache = {{ backend = "redis", url = "{url}", '
            'password = "{pw}" }}\n',
            "plaintext password",
        ),
        (REDIS_PROFILE + 'password = "literal:{pw}"\n', "plaintext password"),
        (REDIS_PROFILE + 'key = "{key}"\n', "plaintext key"),
    ],
    ids=["password-option", "password-in-url", "cache-table", "literal-form", "cache-key"],
)
def test_a_plaintext_password_in_a_readable_config_is_refused_before_redis_is_asked(
    redis_server, ppauth_env, cache_key, table, named
):
    """As the file source refuses a plaintext client_secret in a file others can read:
    a user of this machine could read the Redis password, and with it every token."""
    text = table.format(
        url=redis_server.url_without_password,
        url_pw=redis_server.url,
        pw=redis_server.password,
        key=cache_key,
    )
    ppauth_env.write_config(text, mode=0o644)
    ppauth_env.set(PPAUTH_CACHE_KEY=cache_key)
    before = redis_server.client().info("stats")["total_connections_received"]

    auth = PowerPlatformAuth(credential=None)
    with pytest.raises(UnsafeFileError) as caught:
        _ = auth.provider

    message = str(caught.value)
    assert named in message and "chmod 600" in message and "mode 644" in message, message
    assert redis_server.password not in message + repr(caught.value)
    assert cache_key not in message + repr(caught.value)
    after = redis_server.client().info("stats")["total_connections_received"]
    assert after == before + 1  # only this check's own connection: the cache never dialled


def test_the_same_config_at_0600_is_used(redis_server, ppauth_env, cache_key):
    ppauth_env.write_config(
        redis_profile(redis_server, f'password = "{redis_server.password}"\n'), mode=0o600
    )
    ppauth_env.set(PPAUTH_CACHE_KEY=cache_key)

    auth = PowerPlatformAuth(credential=None)
    assert auth.provider.cache.location.startswith(redis_server.url_without_password)


def test_a_reference_in_a_readable_config_is_fine(redis_server, ppauth_env, cache_key):
    """A reference holds no secret: a file others can read may hold it (the resolver
    is then asked; an unknown scheme is its own error, not UnsafeFileError)."""
    ppauth_env.write_config(
        redis_profile(redis_server, 'password = "nosuch:redis/prod"\n'), mode=0o644
    )
    ppauth_env.set(PPAUTH_CACHE_KEY=cache_key)
    auth = PowerPlatformAuth(credential=None)
    with pytest.raises(ConfigurationError) as caught:
        _ = auth.provider
    assert not isinstance(caught.value, UnsafeFileError)
    assert "nosuch" in str(caught.value)


def test_options_passed_in_code_are_not_the_files_business(redis_server, ppauth_env, cache_key):
    ppauth_env.write_config('[profiles.default]\ntenant_id = "t.example"\n', mode=0o644)
    ppauth_env.set(PPAUTH_CACHE_KEY=cache_key)
    auth = PowerPlatformAuth(
        credential=None,
        cache={
            "backend": "redis",
            "url": redis_server.url_without_password,
            "password": redis_server.password,
        },
    )
    assert auth.provider.cache.location.startswith(redis_server.url_without_password)


def test_a_key_file_named_in_a_readable_config_is_fine(redis_server, ppauth_env, cache_key):
    """``key = "file:..."`` names where the keys are (that file must be 0600 itself)."""
    key_file = ppauth_env.root / "cache.key"
    key_file.write_text(cache_key)
    key_file.chmod(0o600)
    ppauth_env.write_config(redis_profile(redis_server, f'key = "file:{key_file}"\n'), mode=0o644)
    ppauth_env.set(PPAUTH_REDIS_PASSWORD=redis_server.password)
    auth = PowerPlatformAuth(credential=None)
    assert auth.provider.cache.location.startswith(redis_server.url_without_password)
