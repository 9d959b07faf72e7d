"""utils.files: atomic writes leave the file whole and with the mode a plain open() gives; a
failed write leaves the old file and no temporary; the folder lock names its holder."""

from __future__ import annotations

import os
import stat
import subprocess
import sys

import pytest

from sfrik_plugin.utils.files import FolderLock, OutputError, atomic_write


def test_an_atomic_write_has_the_mode_of_a_plain_open(tmp_path):
    with open(tmp_path / "plain.csv", "w") as f:
        f.write("x\n")
    with atomic_write(tmp_path / "atomic.csv") as f:
        f.write("x\n")
    mode = stat.S_IMODE((tmp_path / "atomic.csv").stat().st_mode)
    assert mode == stat.S_IMODE((tmp_path / "plain.csv").stat().st_mode)


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "results.csv"
    target.write_text("recorded\n")
    with pytest.raises(RuntimeError), atomic_write(target) as f:
        f.write("half")
        raise RuntimeError("the writer failed")
    assert target.read_text() == "recorded\n" and os.listdir(tmp_path) == ["results.csv"]


@pytest.mark.fresh_interpreter
def test_the_folder_lock_refuses_a_second_process_naming_the_holder(tmp_path):
    with FolderLock(tmp_path, "prog"):
        code = f"from sfrik_plugin.utils.files import FolderLock; FolderLock({str(tmp_path)!r}, 'other').acquire()"
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
        assert proc.returncode != 0 and f"is in use by pid {os.getpid()}" in proc.stderr
    FolderLock(tmp_path, "prog").acquire().release()  # released: free again
    with pytest.raises(OutputError):
        with FolderLock(tmp_path, "prog"):
            FolderLock(tmp_path, "prog").acquire()  # a second lock in one process is refused too
