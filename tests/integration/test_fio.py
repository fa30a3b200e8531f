# SPDX-License-Identifier: GPL-2.0-or-later
"""fio with data verification on encrypted files: mixed block sizes through
the page cache with two concurrent jobs, and O_DIRECT with libaio; the data
verifies again after a remount (verify_only)."""
import os

import pytest

from vmctest import HDR, is_encrypted, run

SIZE = 64 << 20

JOBS = {
    "psync-mixed": """
[global]
ioengine=psync
rw=randwrite
bssplit=4k/40:64k/40:16k/20
size=64M
numjobs=2
verify=crc32c
do_verify=1
verify_fatal=1
randseed=1234
filename_format=psync.$jobnum.raw
[psync]
""",
    "libaio-direct": """
[global]
ioengine=libaio
direct=1
iodepth=16
rw=randwrite
bsrange=4k-128k
blockalign=4k
size=64M
verify=crc32c
do_verify=1
verify_fatal=1
randseed=5678
filename_format=direct.$jobnum-flat.vmdk
[direct]
""",
}


@pytest.mark.parametrize("job", sorted(JOBS))
def test_fio_verify(ds, tmp_path, job):
    vm = ds.make_vm("vm1")
    jobfile = tmp_path / "job.fio"
    jobfile.write_text(JOBS[job])
    p = run(["fio", f"--directory={vm}", "--output-format=terse", jobfile], cwd=tmp_path,
            check=False, timeout=300)
    assert p.returncode == 0, f"fio failed ({p.returncode}):\n{p.stdout}\n{p.stderr}"
    names = sorted(n for n in os.listdir(vm) if n != "vmcrypt.policy")
    assert names, "fio created no files"
    for n in names:
        assert is_encrypted(ds.b("vm1") / n), f"{n} is not encrypted"
        assert os.stat(ds.b("vm1") / n).st_size == os.stat(vm / n).st_size + HDR
        assert os.stat(vm / n).st_size == SIZE
    ds.remount()
    p = run(["fio", f"--directory={vm}", "--verify_only", "--output-format=terse", jobfile],
            cwd=tmp_path, check=False, timeout=300)
    assert p.returncode == 0, f"fio verify_only failed ({p.returncode}):\n{p.stdout}\n{p.stderr}"
