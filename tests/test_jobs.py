"""dferjax.jobs with real processes and files: the folder lock, the stop on signals, disk errors."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from dferjax import jobs

REPO = Path(__file__).resolve().parents[1]

HOLD_LOCK = """
import sys, time
from dferjax import jobs
jobs.FolderLock(sys.argv[1], "--out").acquire()
print("locked", flush=True)
time.sleep(60)
"""


def python(code: str, *args: str, **kwargs) -> subprocess.Popen:
    """A Python process running ``code`` in the repository (stdout and stderr piped, text)."""
    return subprocess.Popen([sys.executable, "-c", code, *args], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kwargs)


def test_a_second_process_is_refused_naming_the_first(tmp_path):
    with jobs.FolderLock(tmp_path, "--out"):
        owner = json.loads((tmp_path / jobs.LOCK_FILE).read_text())
        assert owner["pid"] == os.getpid() and owner["host"] and owner["started"]
        second = python("import sys\nfrom dferjax import jobs\n"
                        "try:\n    jobs.FolderLock(sys.argv[1], '--out').acquire()\n"
                        "except jobs.FolderError as e:\n    print(e)\n    sys.exit(1)", str(tmp_path))
        out, err = second.communicate(timeout=60)
        assert second.returncode == 1, err
        assert f"--out {tmp_path} is in use by process {os.getpid()} on " in out
        assert "wait for it to end, or use another folder" in out and out.count("\n") == 1


def test_a_lock_left_by_a_killed_process_is_taken_over(tmp_path, capsys):
    holder = python(HOLD_LOCK, str(tmp_path))
    assert holder.stdout.readline() == "locked\n"
    with pytest.raises(jobs.FolderError, match=f"in use by process {holder.pid} "):
        jobs.FolderLock(tmp_path, "--out").acquire()
    holder.kill()                                       # SIGKILL: no release, the owner record stays
    holder.communicate(timeout=60)
    assert json.loads((tmp_path / jobs.LOCK_FILE).read_text())["pid"] == holder.pid
    with jobs.FolderLock(tmp_path, "--out"):
        assert f"taking over the lock left by process {holder.pid}" in capsys.readouterr().err
        assert json.loads((tmp_path / jobs.LOCK_FILE).read_text())["pid"] == os.getpid()


def test_release_empties_the_owner_and_frees_the_folder(tmp_path, capsys):
    lock = jobs.FolderLock(tmp_path, "--out").acquire()
    assert str(os.getpid()) in (tmp_path / jobs.LOCK_FILE).read_text()
    lock.release()
    assert (tmp_path / jobs.LOCK_FILE).read_text() == ""
    holder = python(HOLD_LOCK, str(tmp_path))         # another process takes it, with no note
    try:
        assert holder.stdout.readline() == "locked\n"
    finally:
        holder.kill()
        _, err = holder.communicate(timeout=60)
    assert "taking over" not in err
    with jobs.FolderLock(tmp_path, "--out"):          # and after it was killed, this one again
        pass
    assert (tmp_path / jobs.LOCK_FILE).read_text() == ""


def test_first_signal_raises_interrupted_a_second_exits_at_once(tmp_path):
    job = python("import time\nfrom dferjax import jobs\n"
                 "with jobs.StopSignals('cleaning up', raise_first=True):\n"
                 "    try:\n        print('ready', flush=True)\n        time.sleep(60)\n"
                 "    except jobs.Interrupted as stop:\n"
                 "        print('interrupted by', stop.signal, flush=True)\n        time.sleep(60)\n")
    assert job.stdout.readline() == "ready\n"
    job.send_signal(signal.SIGTERM)
    assert job.stdout.readline() == "interrupted by SIGTERM\n"
    job.send_signal(signal.SIGINT)
    out, err = job.communicate(timeout=60)
    assert job.returncode == 128 + signal.SIGINT
    assert "SIGTERM: cleaning up (send it again to exit at once)" in err
    assert f"SIGINT again: exiting at once (status {128 + signal.SIGINT})" in err and "Traceback" not in err


def test_without_raise_the_first_signal_is_only_recorded():
    job = python("import os, signal, time\nfrom dferjax import jobs\n"
                 "with jobs.StopSignals('saving') as stop:\n"
                 "    os.kill(os.getpid(), signal.SIGTERM)\n"
                 "    time.sleep(0.1)\n    print(stop.received, flush=True)\n"
                 "print(signal.getsignal(signal.SIGTERM) == signal.SIG_DFL)\n")
    out, err = job.communicate(timeout=60)
    assert job.returncode == 0 and out.split() == ["SIGTERM", "True"], err     # handlers restored on exit


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="no /dev/full on this system")
def test_a_full_disk_is_said_in_one_line():
    with pytest.raises(OSError) as caught:
        with open("/dev/full", "w") as f:              # every write: ENOSPC
            f.write("x")
    assert jobs.is_disk_error(caught.value) and caught.value.errno == errno.ENOSPC
    line = jobs.disk_error(caught.value, "/dev/full")
    assert line.startswith("writing /dev/full failed: No space left on device; ") and "GiB free there" in line
    assert line.endswith("(free some space)") and "\n" not in line
    assert not jobs.is_disk_error(FileNotFoundError(errno.ENOENT, "missing")) and not jobs.is_disk_error(ValueError())


def test_check_output_folder(tmp_path):
    assert jobs.check_output_folder(tmp_path / "a" / "b", "--out").is_dir()
    (tmp_path / "file").write_text("x")
    with pytest.raises(jobs.FolderError, match=r"--out .*file is a file, not a folder"):
        jobs.check_output_folder(tmp_path / "file", "--out")
    with pytest.raises(jobs.FolderError, match=r"cannot be created \(Not a directory\)"):
        jobs.check_output_folder(tmp_path / "file" / "sub", "--out")
