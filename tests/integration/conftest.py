# SPDX-License-Identifier: GPL-2.0-or-later
"""pytest fixtures of the vmcryptfs integration tests.

    ds        a datastore mounted for the test (backing, mount point, keys,
              config in a temporary tree), unmounted in teardown
    make_ds   factory for more datastores in the same tree:
              make_ds("other", backing=..., keydir=..., mount=True)

Every datastore made here is unmounted in teardown, even when the test
failed, and the test fails if a daemon exited non-zero or logged an error
that the test did not declare (ds.expect_error) or a sanitizer report.

VMC_BUILD_DIR selects the build directory (default /work/main/build-integ).
"""
import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))
import vmctest  # noqa: E402


def pytest_report_header(config):
    return [f"vmcryptfs daemon: {vmctest.DAEMON}"]


@pytest.fixture(autouse=True)
def _need_root_and_daemon():
    if os.geteuid() != 0:
        pytest.skip("integration tests run as root (FUSE mounts, chown)")
    if not os.path.exists("/dev/fuse"):
        pytest.skip("/dev/fuse is not available")
    assert vmctest.DAEMON.exists(), \
        f"{vmctest.DAEMON} is not built; set VMC_BUILD_DIR to the build directory"


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
    if problems:
        pytest.fail("datastore teardown:\n" + "\n".join(problems), pytrace=False)


@pytest.fixture
def ds(make_ds):
    return make_ds("ds")
