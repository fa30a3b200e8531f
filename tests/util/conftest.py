# SPDX-License-Identifier: GPL-2.0-or-later
"""pytest fixtures of the vmcryptfs-util tests: the integration harness's
datastores (tests/integration/vmctest.py), unmounted and checked in teardown
like there, and afterwards the first 4096 bytes of every file they left in
their backing directories go to the fuzz corpus (VMC_UTIL_CORPUS).

    ds        a datastore mounted for the test
    make_ds   factory for more: make_ds("other", config=..., mount=False)
"""
import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))
import utiltest  # noqa: E402
import vmctest  # noqa: E402  (utiltest put tests/integration on the path)


def pytest_report_header(config):
    return [f"vmcryptfs-util: {utiltest.UTIL}", f"daemon: {vmctest.DAEMON}"]


@pytest.fixture(autouse=True)
def _need_root_and_build():
    if os.geteuid() != 0:
        pytest.skip("these tests mount datastores: they run as root")
    if not os.path.exists("/dev/fuse"):
        pytest.skip("/dev/fuse is not available")
    for p in (vmctest.DAEMON, utiltest.UTIL, utiltest.CTL):
        assert p.exists(), f"{p} is not built; set VMC_BUILD_DIR to the build directory"


@pytest.fixture
def make_ds(tmp_path):
    made = []

    def make(name="ds", mount=True, **kw):
        d = vmctest.Datastore(tmp_path, name, **kw)
        made.append(d)
        if mount:
            d.mount()
        return d

    yield make
    problems = []
    for d in reversed(made):
        try:
            d.close()
        except AssertionError as e:
            problems.append(f"[{d.name}] {e}")
        utiltest.corpus_add_tree(d.backing)
    if problems:
        pytest.fail("datastore teardown:\n" + "\n".join(problems), pytrace=False)


@pytest.fixture
def ds(make_ds):
    return make_ds("ds")
