# SPDX-License-Identifier: GPL-2.0-or-later
"""pytest fixtures of the kmip key-provider tests.

    certs    a throwaway PKI (per test module)
    cluster  two pykmip-servers on loopback sharing one database (per test
             module); before each test, a server a previous test stopped is
             started again; both are stopped at the end, also on failure
    env      per test: a work directory and a Cleanup for tools,
             misbehaving servers and scripted ones, all stopped at the end

VMC_BUILD_DIR selects the build directory; VMC_KMIP_TOOL the driver.
"""
import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))
import kmipenv  # noqa: E402


class Env:
    def __init__(self, path, certs, cluster):
        self.path = path
        self.certs = certs
        self.cluster = cluster
        self.cleanup = kmipenv.Cleanup()

    def tool(self, servers, name="tool", **kw):
        text = kmipenv.config_text([getattr(s, "addr", s) for s in servers], self.certs, **kw)
        return self.cleanup.add(kmipenv.Tool(self.path, text, name=name))

    def tool_text(self, text, name="tool", provider="kms"):
        return self.cleanup.add(kmipenv.Tool(self.path, text, provider=provider, name=name))

    def bad(self, mode, target=None, **kw):
        return self.cleanup.add(kmipenv.BadServer(mode, self.certs, target, **kw))

    def fake(self, keys, **kw):
        return self.cleanup.add(kmipenv.FakeKms(self.certs, keys, **kw))

    def client(self, server=None):
        return kmipenv.Client(server or self.cluster[0], self.certs, self.path)


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    if not kmipenv.have_pykmip():
        pytest.skip("needs /usr/bin/pykmip-server (python3-pykmip) and openssl")
    assert kmipenv.TOOL.exists(), f"{kmipenv.TOOL} is not built (VMC_BUILD_DIR?)"
    return kmipenv.Certs(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def cluster(tmp_path_factory, certs):
    cleanup = kmipenv.Cleanup()
    try:
        c = kmipenv.Cluster(tmp_path_factory.mktemp("kms"), certs, cleanup)
        c.start()
        yield c
    finally:
        errors = cleanup.close()
        assert not errors, errors


@pytest.fixture
def env(tmp_path, certs, cluster):
    cluster.start()   # servers stopped by an earlier test come back
    e = Env(tmp_path, certs, cluster)
    yield e
    errors = e.cleanup.close()
    assert not errors, "cleanup: " + "; ".join(errors)
