# SPDX-License-Identifier: GPL-2.0-or-later
"""list_keys of the kmip key provider, driven through kmip_tool.

Against two real pykmip-servers sharing one database: keys made through the
plugin with the labels the daemon gives (vmcryptfs-vm-UUID[-N],
vmcryptfs-ds-UUID[-N]) and keys made by PyKMIP's own client under other
names, without a name, or destroyed; the listing must be exactly what
PyKMIP's client sees (its Locate and Get Attributes are the oracle: the
module's servers share one database, so other tests' keys are there too),
with ids and labels, each key once; name-prefix is matched and stripped; a
server that dies halfway through a listing is replaced by the other one.

Against the scripted KMS (kmipenv.FakeKms), for what pykmip-server never
answers: Destroyed keys that are still there, an id Locate repeats, a key
whose attributes we may not read, a KMS that refuses batched requests, one
that has more than 100,000 keys or refuses to answer that many, answers to
batch items that were not asked. Also the native provider (nothing to list)
and the round-trip time of a listing.
"""
import os
import statistics

import kmipenv

PREFIX = "vmcryptfs-"


def uuid_hex():
    return os.urandom(16).hex()


def expected(env, prefix=PREFIX, strip=""):
    """{uid: label} of the keys list_keys must report, from PyKMIP's client:
    the first name starting with strip + prefix (label None for a key
    without a name, with an empty prefix), Destroyed keys left out."""
    out = {}
    with env.client() as kms:
        for uid, (names, state) in kms.objects().items():
            if state in ("DESTROYED", "DESTROYED_COMPROMISED"):
                continue
            match = [n for n in names if n.startswith(strip + prefix)]
            if match:
                out[uid] = match[0][len(strip):]
            elif not names and not strip + prefix:
                out[uid] = None
    return out


def listed(r):
    """{uid: label} of a listing, checking that no key came twice."""
    assert r.ok, r
    ids = [uid for uid, _ in r.keys]
    assert len(ids) == len(set(ids)), f"a key listed twice: {r.keys}"
    assert int(r.fields["n"]) == len(ids)
    return dict(r.keys)


# --- Against pykmip-server ----------------------------------------------------------------

def test_lists_exactly_the_keys_vmcryptfs_made(env):
    t = env.tool([env.cluster[0], env.cluster[1]])
    vm, ds = uuid_hex(), uuid_hex()
    labels = [f"vmcryptfs-vm-{vm}", f"vmcryptfs-vm-{vm}-2", f"vmcryptfs-ds-{ds}",
              f"vmcryptfs-ds-{ds}-1", f"vmcryptfs-vm-{uuid_hex()}"]
    ours = {}
    for label in labels:
        r = t.create(label)
        assert r.ok, r
        ours[r.id] = label
    with env.client() as kms:
        others = {kms.create(name): name for name in
                  ("backup-app-key", "vmcryptfs", "VMCRYPTFS-vm-upper", "x-vmcryptfs-vm-1")}
        unnamed = kms.create()
        destroyed = kms.create(f"vmcryptfs-vm-{uuid_hex()}")   # Pre-Active: destroyable
        kms.destroy(destroyed)

    got = listed(t.list(PREFIX))
    assert got == expected(env)
    assert {uid: got[uid] for uid in ours} == ours          # ids and labels, as made
    assert not set(got) & set(others) and unnamed not in got and destroyed not in got
    # Each of them opens with get_key by the id listed.
    for uid in ours:
        assert t.get(uid).ok

    # Another prefix, and none at all (every key, a nameless one without label).
    vms = listed(t.list(f"vmcryptfs-vm-{vm}"))
    assert vms == {uid: label for uid, label in ours.items() if vm in label}
    every = listed(t.list())
    assert every == expected(env, prefix="")
    assert every[unnamed] is None
    assert {uid: every[uid] for uid in others} == others
    assert listed(t.list("no-key-has-this-name-")) == {}
    log = t.log()
    assert f"listed {len(got)} of {len(every)} symmetric key(s)" in log, log


def test_name_prefix_is_matched_and_stripped(env):
    site = env.tool([env.cluster[0]], name="site", extra='\tname-prefix = "site-a/"')
    plain = env.tool([env.cluster[0]], name="plain")
    label = f"vmcryptfs-vm-{uuid_hex()}"
    mine = site.create(label)
    assert mine.ok, mine
    theirs = plain.create(f"vmcryptfs-vm-{uuid_hex()}")
    assert theirs.ok, theirs

    got = listed(site.list(PREFIX))
    assert got == expected(env, strip="site-a/")
    assert got[mine.id] == label and theirs.id not in got
    other = listed(plain.list(PREFIX))
    assert mine.id not in other and theirs.id in other


def test_listing_survives_a_server_going_down(env):
    """More keys than one batch: the Locate and the first batch go through a
    proxy to server 1 that then dies; server 2 answers the rest, and no key
    is missed or repeated."""
    with env.client() as kms:
        for _ in range(70):
            kms.create(f"vmcryptfs-vm-{uuid_hex()}")
    want = expected(env)
    assert len(want) > 64
    proxy = env.bad("proxy-die", target=env.cluster[0], die_after=2)
    t = env.tool([proxy, env.cluster[1]])
    r = t.list(PREFIX)
    assert listed(r) == want
    assert proxy.forwarded == 2
    log = t.log()
    assert f"now using server {env.cluster[1].addr}" in log, log


def test_round_trip_times(env):
    """Listing time on loopback for the record (printed and written to
    kmip-list-rtt.txt in the build directory): one Locate, then Get
    Attributes in batches of 32 keys."""
    with env.client() as kms:
        have = len(kms.objects())
        for _ in range(max(0, 150 - have)):
            kms.create(f"vmcryptfs-vm-{uuid_hex()}")
        total = len(kms.objects())
    t = env.tool([env.cluster[0]])
    assert t.test().ok          # connection set up outside the measurement
    times = []
    for _ in range(5):
        r = t.list()
        assert listed(r) and len(r.keys) == total
        times.append(r.ms)
    med = statistics.median(times)
    text = (f"kmip list_keys of {total} keys (Locate + {-(-total // 32)} batched Get "
            f"Attributes): median {med:.1f} ms, {med / total:.2f} ms per key "
            f"(min {min(times):.1f}, max {max(times):.1f}, n={len(times)})\n")
    print(text)
    try:
        (kmipenv.BUILD_DIR / "kmip-list-rtt.txt").write_text(text)
    except OSError:
        pass
    assert med < 100 * total


# --- Against the scripted KMS ----------------------------------------------------------

SCRIPT = {
    "k1": (["vmcryptfs-vm-aa"], 2),                       # Active
    "k2": (["backup", "vmcryptfs-ds-bb-1"], 1),          # the second name matches
    "k3": (["vmcryptfs-vm-cc"], 5),                       # Destroyed: left out
    "k4": (["vmcryptfs-vm-dd"], 6),                       # Destroyed Compromised
    "k5": (["vmcryptfs-vm-ee"], 3),                       # Deactivated: still a key
    "k6": ([], 2),                                        # no name
    "k7": "denied",                                       # Permission Denied
    "k8": (["other"], 2),
}
SCRIPT_LOCATE = ["k1", "k2", "k3", "k1", "k4", "k5", "k6", "k7", "k8", "gone"]
SCRIPT_WANT = {"k1": "vmcryptfs-vm-aa", "k2": "vmcryptfs-ds-bb-1", "k5": "vmcryptfs-vm-ee"}


def test_scripted_kms(env):
    kms = env.fake(SCRIPT, locate=SCRIPT_LOCATE)
    t = env.tool([kms])
    assert listed(t.list(PREFIX)) == SCRIPT_WANT
    assert kms.max_items == [100001]
    # One batch for the nine distinct ids ("k1" was located twice).
    assert kms.batches[-1] == 9
    every = listed(t.list())
    assert every == dict(SCRIPT_WANT, k2="backup", k6=None, k8="other")   # first name
    log = t.log()
    assert "1 key(s) that Locate found could not be read (permission denied" in log, log


def test_kms_that_refuses_batches(env):
    kms = env.fake(SCRIPT, locate=SCRIPT_LOCATE, refuse_batches=True)
    t = env.tool([kms])
    assert listed(t.list(PREFIX)) == SCRIPT_WANT
    assert kms.batches[:2] == [1, 9] and set(kms.batches[2:]) == {1}
    assert len(kms.batches) == 2 + 9
    log = t.log()
    assert "does not take batched requests (Invalid Message" in log, log
    assert "one key per request" in log


def test_too_many_keys(env):
    many = [str(i) for i in range(100001)]
    t = env.tool([env.fake({}, locate=many)], name="many")
    r = t.list(PREFIX)
    assert r.errno_name == "E2BIG", r
    assert "more than 100000 symmetric keys" in r.msg, r
    assert r.keys == []
    # Exactly the limit is listed (all unknown to Get Attributes here: none reported).
    t2 = env.tool([env.fake({}, locate=many[:100000])], name="limit")
    r = t2.list(PREFIX, timeout=300)
    assert r.ok and r.keys == [], r
    t3 = env.tool([env.fake({}, locate_reason=0x02)], name="large")
    r = t3.list(PREFIX)
    assert r.errno_name == "E2BIG" and "Response Too Large" in r.msg, r


def test_batch_answers_that_were_not_asked(env):
    t = env.tool([env.fake(SCRIPT, bad_batch_id=True)], extra='\ttimeout = "2"')
    r = t.list(PREFIX)
    assert r.errno_name == "EPROTO", r
    assert "not a valid KMIP answer to Get Attributes" in r.msg and "was not sent" in r.msg, r
    assert r.keys == []


def test_native_provider_has_nothing_to_list(env):
    text = (f'key-provider "local" {{\n\ttype = "native"\n'
            f'\tkey-file = "{env.path / "native.key"}"\n}}\n')
    t = env.tool_text(text, provider="local")
    assert t.opened.ok, t.opened
    r = t.list(PREFIX)
    assert r.errno_name == "EOPNOTSUPP", r
