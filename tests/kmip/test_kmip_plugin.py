# SPDX-License-Identifier: GPL-2.0-or-later
"""The kmip key-provider plugin against real pykmip-servers and against
servers that misbehave, driven through kmip_tool (the plugin loaded from the
build tree with the host services of lib/, one instance per tool process).

Covered: configuration errors (open() fails with -EINVAL naming the option
or file, and never touches the network); Create/Activate/Get checked with
PyKMIP's own client; the error of every KMIP answer (no such key, revoked,
destroyed, rejected certificate); TLS trust failures (wrong CA, host-name
mismatch, client certificate from another CA or without clientAuth);
servers that refuse, stall, trickle, close mid-answer or answer garbage,
each with a time bound; failover, the remembered server, connection reuse
and reconnection; a Create whose answer is lost is found again by Locate;
the test() report; the round-trip times of create and get.
"""
import hashlib
import statistics
import time

import pytest

import kmipenv

TIMEOUT = 1.0      # the provider's time-out in the tests that wait for one
SLACK = 1.5        # scheduling and the second phase of a connection


def fp(key):
    return hashlib.sha256(key).hexdigest()


def quick(extra=""):
    return f'\ttimeout = "{TIMEOUT}"\n' + extra


# --- Configuration -----------------------------------------------------------------

CONFIG_ERRORS = [
    # (what to change, expected words in the message)
    (dict(servers=[]), "no server"),
    (dict(ca=None), '"ca" is required'),
    (dict(cert=None), '"cert" is required'),
    (dict(ca="/nonexistent/ca.crt"), 'ca "/nonexistent/ca.crt": cannot read: No such file'),
    (dict(ca="GARBAGE"), "no usable CA certificate"),
    (dict(cert="GARBAGE", key="KEY"), "not a usable PEM certificate"),
    (dict(key="/nonexistent/client.key"), 'key "/nonexistent/client.key": cannot read'),
    (dict(key="SERVERKEY"), "does not belong to certificate"),
    (dict(key="ENCKEY"), "protected by a passphrase"),
    (dict(key="GARBAGE"), "not a usable PEM private key"),
    (dict(servers=["127.0.0.1:"]), 'server "127.0.0.1:": port "" is not a number'),
    (dict(servers=["127.0.0.1:70000"]), "port \"70000\" is not a number from 1 to 65535"),
    (dict(servers=["kms:abc"]), 'port "abc"'),
    (dict(servers=["[::1"]), "[address]:port"),
    (dict(servers=["[::1]x"]), "[address]:port"),
    (dict(servers=["[kms]:5696"]), "is not an IPv6 address"),
    (dict(servers=["::1:5696:x"]), "[address]:port"),
    (dict(servers=["bad host:5696"]), "is not a host name or IP address"),
    (dict(extra='\tcolour = "blue"'), 'unknown option "colour"'),
    (dict(extra='\ttimeout = "soon"'), 'timeout "soon"'),
    (dict(extra='\ttimeout = "0"'), 'timeout "0"'),
    (dict(extra='\tverify-name = "a b"'), 'verify-name "a b"'),
    (dict(ca="relative/ca.crt"), "absolute path"),
]


@pytest.mark.parametrize("change,words", CONFIG_ERRORS,
                         ids=[w for _, w in CONFIG_ERRORS])
def test_config_errors(env, change, words):
    c = env.certs
    kw = dict(servers=["127.0.0.1:5696"])
    kw.update(change)
    subst = {"GARBAGE": c.dir / "garbage.pem", "SERVERKEY": c.key("server"),
             "ENCKEY": c.dir / "client-enc.key", "KEY": c.key("client")}
    for k in ("ca", "cert", "key"):
        if kw.get(k) in subst:
            kw[k] = str(subst[kw[k]])
    servers = kw.pop("servers")
    t = env.tool(servers, **kw)
    assert not t.opened.ok, t.opened
    assert t.opened.errno_name == "EINVAL", t.opened
    assert words in t.opened.msg, t.opened
    assert "\n" not in t.opened.msg


def test_open_does_not_touch_the_network(env):
    """A cluster of names that do not resolve and ports nobody listens on
    opens at once; the first request reports them."""
    t = env.tool(["kms.invalid", "[::1]:1", "127.0.0.1:1"], extra=quick())
    assert t.opened.ok, t.opened
    assert t.opened.ms < 900      # less than one time-out: no network wait
    r = t.get("1")
    assert not r.ok and r.errno_name in ("ECONNREFUSED", "EHOSTUNREACH", "ENETUNREACH"), r
    assert "127.0.0.1:1" in r.msg or "kms.invalid" in r.msg, r
    log = t.log()
    assert "kms.invalid:5696" in log and "[::1]:1" in log and "127.0.0.1:1" in log


def test_warns_about_client_certificate_without_client_auth(env):
    t = env.tool([env.cluster[0]], cert="noeku")
    assert t.opened.ok
    assert "no extended key usage clientAuth" in t.log()


# --- Keys on the KMS ------------------------------------------------------------------

def test_create_and_get_match_the_kms(env):
    t = env.tool([env.cluster[0], env.cluster[1]])
    label = "vmcryptfs-vm-0123456789abcdef0123456789abcdef"
    r = t.create(label)
    assert r.ok, r
    with env.client() as kms:
        key, (alg, bits) = kms.key(r.id)
        attrs = kms.attributes(r.id)
        assert kms.locate(label) == [r.id]
    assert len(key) == 32 and bits == 256 and alg.name == "AES"
    assert fp(key) == r.fp
    assert attrs["Name"] == label
    assert attrs["State"].name == "ACTIVE"
    g = t.get(r.id)
    assert g.ok and g.fp == r.fp, g
    # The other server of the cluster has it too (shared database).
    t2 = env.tool([env.cluster[1]], name="tool2")
    g2 = t2.get(r.id)
    assert g2.ok and g2.fp == r.fp, g2
    # The log has what happened, and never the key.
    log = t.log() + t2.log()
    assert f'created key {r.id} "{label}"' in log
    for form in (key.hex(), key.hex().upper()):
        assert form not in log


def test_name_prefix(env):
    t = env.tool([env.cluster[0]], extra='\tname-prefix = "site-a/"')
    r = t.create("vmcryptfs-vm-prefixed")
    assert r.ok, r
    with env.client() as kms:
        assert kms.locate("site-a/vmcryptfs-vm-prefixed") == [r.id]


def test_answers_map_to_errors(env):
    t = env.tool([env.cluster[0], env.cluster[1]])
    r = t.get("999999")
    assert r.errno_name == "ENOKEY", r
    assert "127.0.0.1" in r.msg and "Item Not Found" in r.msg and "999999" in r.msg
    assert r.ms < 1000
    # "Not found" is an answer: no failover to the second server.
    assert "trying the next server" not in t.log()

    with env.client() as kms:
        pre = kms.create("made-by-another-client")      # Pre-Active: usable
        revoked = t.create("vmcryptfs-vm-revoked").id
        compromised = t.create("vmcryptfs-vm-compromised").id
        destroyed = t.create("vmcryptfs-vm-destroyed").id
        kms.revoke(revoked)
        kms.revoke(compromised, compromised=True)
        kms.revoke(destroyed)
        kms.destroy(destroyed)
        pre_key, _ = kms.key(pre)
    r = t.get(pre)
    assert r.ok and r.fp == fp(pre_key), r
    r = t.get(revoked)
    assert r.errno_name == "EKEYREVOKED" and "Deactivated" in r.msg, r
    r = t.get(compromised)
    assert r.errno_name == "EKEYREVOKED" and "Compromised" in r.msg, r
    r = t.get(destroyed)
    assert r.errno_name == "ENOKEY", r
    # An id the protocol cannot carry.
    r = t.get("x" * 300)
    assert r.errno_name == "EINVAL", r


# --- TLS trust -------------------------------------------------------------------------

def test_wrong_ca(env):
    t = env.tool([env.cluster[0], env.cluster[1]], ca="ca2")
    for op in (lambda: t.get("1"), lambda: t.create("vmcryptfs-vm-wrong-ca")):
        r = op()
        assert r.errno_name == "EACCES", r
        assert "TLS verification of the server certificate failed: " in r.msg, r
        assert ("unable to get local issuer certificate" in r.msg
                or "self-signed certificate in certificate chain" in r.msg), r
        assert r.ms < 2000
    # Both servers were tried (a trust failure still fails over).
    log = t.log()
    assert env.cluster[0].addr in log and env.cluster[1].addr in log


def test_host_name_mismatch(env):
    t = env.tool([env.cluster[0]], extra='\tverify-name = "kms.example.com"')
    r = t.get("1")
    assert r.errno_name == "EACCES", r
    assert "hostname mismatch" in r.msg, r
    # The name the certificate carries works, as a server name and as verify-name.
    t2 = env.tool([f"localhost:{env.cluster[0].port}"], name="tool2")
    assert t2.test().ok
    t3 = env.tool([env.cluster[0]], name="tool3", extra='\tverify-name = "localhost"')
    assert t3.test().ok


def test_client_certificate_without_client_auth(env):
    t = env.tool([env.cluster[0], env.cluster[1]], cert="noeku")
    r = t.create("vmcryptfs-vm-noeku")
    assert r.errno_name == "EACCES", r
    assert "rejected our client certificate" in r.msg, r
    assert "Authentication Not Successful" in r.msg, r
    # An answer: the second server is not asked.
    assert "trying the next server" not in t.log()
    tr = t.test()
    assert not tr.ok and tr.errno_name == "EACCES", tr
    assert all("authentication rejected" in line for line in tr.reports), tr.reports


def test_client_certificate_from_another_ca(env):
    t = env.tool([env.cluster[0]], cert="other")
    r = t.get("1")
    assert r.errno_name == "EACCES", r
    assert "the server refused us" in r.msg and "TLS alert" in r.msg, r


# --- Misbehaving servers -------------------------------------------------------------------

@pytest.mark.parametrize("mode,errno_name,words", [
    ("refuse", "ECONNREFUSED", "Connection refused"),
    ("http", "EPROTO", "is it a TLS server?"),
    ("tcp-silent", "ETIMEDOUT", "time-out during the TLS handshake"),
    ("tls-silent", "ETIMEDOUT", "time-out before answering"),
    ("tls-garbage", "EPROTO", "not a KMIP server"),
    ("tls-midclose", "ECONNRESET", "closed the connection after 20 of 280 bytes"),
    ("tls-trickle", "ETIMEDOUT", "of its answer"),
])
def test_misbehaving_server(env, mode, errno_name, words):
    bad = env.bad(mode)
    t = env.tool([bad], extra=quick())
    for op in ("get 1", "create vmcryptfs-vm-bad"):
        start = time.monotonic()
        r = t.cmd(op, timeout=30)
        took = time.monotonic() - start
        assert r.errno_name == errno_name, r
        assert words in r.msg and bad.addr in r.msg, r
        assert took < TIMEOUT + SLACK, f"{op}: {took:.2f} s"
    tr = t.test()
    assert not tr.ok and len(tr.reports) == 1 and bad.addr in tr.reports[0], tr.reports
    # With a good server behind it, every request succeeds through that one.
    t2 = env.tool([bad, env.cluster[0]], name="tool2", extra=quick())
    start = time.monotonic()
    r = t2.create("vmcryptfs-vm-after-" + mode)
    assert r.ok, r
    assert time.monotonic() - start < TIMEOUT + SLACK
    assert "trying the next server" in t2.log()
    g = t2.get(r.id)
    assert g.ok and g.fp == r.fp


def test_every_server_down(env):
    a, b = env.bad("refuse"), env.bad("tcp-silent")
    t = env.tool([a, b], extra=quick())
    r = t.get("1")
    # The last transient error, and a message that points at the log.
    assert r.errno_name == "ETIMEDOUT", r
    assert "no KMS server answered (2 tried" in r.msg, r
    assert r.ms < 2 * TIMEOUT * 1000 + 1500
    tr = t.test()
    assert not tr.ok and len(tr.reports) == 2
    assert "unreachable" in tr.reports[0] and "refused" in tr.reports[0]
    assert "unreachable" in tr.reports[1] and "time-out" in tr.reports[1]


# --- Cluster behaviour ------------------------------------------------------------------------

def connects(tool, server):
    return tool.log().count(f"connected to {server.addr}")


def test_failover_and_reconnect(env):
    k1, k2 = env.cluster[0], env.cluster[1]
    t = env.tool([k1, k2])
    r = t.create("vmcryptfs-vm-failover")
    assert r.ok
    for _ in range(3):
        assert t.get(r.id).fp == r.fp
    assert connects(t, k1) == 1, "the connection is not reused"

    k1.kill()
    g = t.get(r.id)
    assert g.ok and g.fp == r.fp, g
    assert f"now using server {k2.addr}" in t.log()
    warnings = t.log().count(f"server {k1.addr}:")
    # The server that answered last is asked first: no new attempt on k1.
    assert t.get(r.id).ok and t.create("vmcryptfs-vm-failover-2").ok
    assert t.log().count(f"server {k1.addr}:") == warnings
    assert connects(t, k2) == 1

    # k1 back, k2 down: back to k1.
    k1.start()
    k2.kill()
    g = t.get(r.id)
    assert g.ok, g
    assert connects(t, k1) == 2
    # k2 restarted on its port: its old connection is stale and is replaced.
    k2.start()
    k1.kill()
    g = t.get(r.id)
    assert g.ok, g
    assert connects(t, k2) == 2


def test_reused_connection_closed_by_server(env):
    """A connection the server dropped while idle, seen only once the next
    request is on its way: reconnect once, transparently, also for Create,
    which must not leave a second key behind."""
    proxy = env.bad("proxy-drop", target=env.cluster[0])
    t = env.tool([proxy])
    r = t.create("vmcryptfs-vm-drop-1")
    assert r.ok, r
    t.cmd("sleep 0.7")
    g = t.get(r.id)
    assert g.ok and g.fp == r.fp, g
    assert "closed the reused connection; reconnecting once" in t.log()
    t.cmd("sleep 0.7")
    label = "vmcryptfs-vm-drop-2"
    c = t.create(label)
    assert c.ok, c
    assert "during Create; retrying" in t.log()
    with env.client() as kms:
        assert kms.locate(label) == [c.id]


def test_lost_create_answer_is_found_by_locate(env):
    """A Create that reached the KMS but whose answer never came back: the
    next server Locates the key by its name and uses it."""
    proxy = env.bad("proxy-mute", target=env.cluster[0])
    t = env.tool([proxy, env.cluster[1]], extra=quick())
    label = "vmcryptfs-vm-lost-answer"
    r = t.create(label)
    assert r.ok, r
    assert r.ms < TIMEOUT * 1000 + 1500
    log = t.log()
    assert "time-out" in log and "was made by a request whose answer was lost" in log, log
    with env.client() as kms:
        assert kms.locate(label) == [r.id]        # one key, the one we use
        key, _ = kms.key(r.id)
        assert kms.attributes(r.id)["State"].name == "ACTIVE"
    assert fp(key) == r.fp


# --- test() -------------------------------------------------------------------------------

def test_report(env):
    k1, k2 = env.cluster[0], env.cluster[1]
    t = env.tool([k1, k2])
    r = t.test()
    assert r.ok, r
    assert len(r.reports) == 2
    for line, k in zip(r.reports, (k1, k2)):
        assert line.startswith(f"server {k.addr}: ok, TLSv1.2 "), line
        assert "KMIP 1.1 (server offers 2.0 1.4 1.3 1.2 1.1 1.0)" in line, line
        assert "round trip" in line and "TLS handshake" in line, line
    k2.kill()
    r = t.test()
    assert r.ok, r          # usable while one server is
    assert "ok," in r.reports[0]
    assert r.reports[1] == (f"server {k2.addr}: unreachable: cannot connect: "
                            "Connection refused"), r.reports


# --- Round trips --------------------------------------------------------------------------

def test_round_trip_times(env):
    """Median create and get times on loopback, for the record (printed and
    written to kmip-rtt.txt in the build directory)."""
    t = env.tool([env.cluster[0]])
    assert t.test().ok          # connection set up outside the measurement
    creates, gets = [], []
    ids = []
    for i in range(7):
        r = t.create(f"vmcryptfs-vm-rtt-{i}")
        assert r.ok
        creates.append(r.ms)
        ids.append(r.id)
    for uid in ids:
        r = t.get(uid)
        assert r.ok
        gets.append(r.ms)
    text = (f"kmip create (Create+Activate+Get): median {statistics.median(creates):.1f} ms "
            f"(min {min(creates):.1f}, max {max(creates):.1f}, n={len(creates)})\n"
            f"kmip get (Get Attributes+Get): median {statistics.median(gets):.1f} ms "
            f"(min {min(gets):.1f}, max {max(gets):.1f}, n={len(gets)})\n")
    print(text)
    try:
        (kmipenv.BUILD_DIR / "kmip-rtt.txt").write_text(text)
    except OSError:
        pass
    assert statistics.median(gets) < 1000 and statistics.median(creates) < 2000
