"""A 3-node Redis Cluster on loopback (``redis-cli --cluster create``): every key of
a cache carries one hash tag, so batches (MULTI/EXEC), MGET, WATCH, the listing
script and the leases all run in one slot; the shipped contract passes, requests
share one token, and a cluster node met without ``cluster = true`` is named as such."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
import redis
from requests_ppauth_redis import make_redis_cache
from requests_ppauth_redis.testing import RedisServer, start_cluster

from requests_ppauth import ConfigurationError, PowerPlatformAuth
from requests_ppauth.cache import Op
from requests_ppauth.testing.cache_contract import CacheBackendContract

from .conftest import _need_redis_server

pytestmark = pytest.mark.slow

APPS_SCOPE = "https://service.powerapps.com//.default"


@pytest.fixture(scope="module")
def cluster() -> Iterator[list[RedisServer]]:
    _need_redis_server()
    with start_cluster(3) as servers:
        yield servers


def _options(servers: list[RedisServer], **more: object) -> dict[str, object]:
    return {
        "url": servers[0].url,
        "cluster": True,
        "prefix": f"cl-{os.urandom(6).hex()}",
        **more,
    }


class TestClusterRedisCacheContract(CacheBackendContract):
    shared_across_processes = True
    processes = 4

    @pytest.fixture
    def backend(self, cluster, ppauth_env, cache_key):
        ppauth_env.set(PPAUTH_CACHE_KEY=cache_key)
        return make_redis_cache(_options(cluster))


def _owner(servers: list[RedisServer], name: str) -> list[int]:
    """The ports of the nodes holding ``name`` (a key)."""
    ports = []
    for server in servers:
        client = redis.Redis.from_url(server.url)
        try:
            slot = client.cluster("keyslot", name)
            if client.cluster("countkeysinslot", slot) and client.exists(name):
                ports.append(server.port)
        except redis.ResponseError:
            pass  # MOVED: not this node's key
        finally:
            client.close()
    return ports


def test_every_key_of_a_cache_lives_on_one_node(cluster, ppauth_env, cache_key):
    ppauth_env.set(PPAUTH_CACHE_KEY=cache_key)
    options = _options(cluster)
    cache = make_redis_cache(options)
    entries = {f"at:{i:04d}": {"secret": f"t{i}", "expires_on": 4e9} for i in range(50)}
    cache.apply([Op(k, v) for k, v in entries.items()])
    assert cache.get(list(entries)) == entries
    assert set(cache.read_all()) == set(entries)
    names = [cache.store.name(k) for k in entries]
    holders = {tuple(_owner(cluster, name)) for name in names}
    assert len(holders) == 1 and len(next(iter(holders))) == 1, holders
    # a patch batch (WATCH, MGET, MULTI/EXEC) runs in that one slot too
    cache.apply([Op("at:0001", fields={"secret": "patched"}), Op("at:0002", None)])
    got = cache.get(["at:0001", "at:0002"])
    assert got == {"at:0001": {"secret": "patched", "expires_on": 4e9}}


def test_requests_share_one_token_through_a_cluster(
    cluster, ppauth_env, ppauth_emulator, cache_key
):
    emu = ppauth_emulator
    ppauth_env.use_emulator(emu)
    ppauth_env.set(PPAUTH_CACHE_KEY=cache_key)
    options = _options(cluster)
    tokens = [
        PowerPlatformAuth(cache={"backend": "redis", **options}, verify=emu.ca_bundle)
        .provider.get(APPS_SCOPE)
        .token
        for _ in range(3)
    ]
    assert len(set(tokens)) == 1
    assert emu.count("token") == 1, f"3 instances on one cluster: {emu.count('token')} requests"


def test_a_cluster_node_without_cluster_true_is_a_configuration_error(
    cluster, ppauth_env, cache_key
):
    ppauth_env.set(PPAUTH_CACHE_KEY=cache_key)
    options = _options(cluster)
    del options["cluster"]
    with pytest.raises(ConfigurationError, match=r"Redis Cluster node: set cluster = true") as exc:
        make_redis_cache(options)
    assert cluster[0].password not in str(exc.value)
    ppauth_env.set(PPAUTH_REDIS_CLUSTER="1")  # the variable says it too
    assert make_redis_cache(options).get(["at:x"]) == {}


def test_cluster_with_a_unix_socket_is_refused(ppauth_env, cache_key):
    ppauth_env.set(PPAUTH_CACHE_KEY=cache_key)
    with pytest.raises(ValueError, match="cluster = true needs a redis://"):
        make_redis_cache({"url": "unix:///run/redis.sock", "cluster": True}, check=False)
