"""The output lock against real second processes: the refusal names the holder's pid (read by runs that open the
lock file after the holder wrote it), and a released lock leaves no file behind."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from headcls.errors import HeadclsError
from headcls.files.outputs import output_lock

HOLDER = textwrap.dedent("""
    import sys
    from pathlib import Path
    from headcls.files.outputs import output_lock

    with output_lock(Path(sys.argv[1])):
        print("held", flush=True)
        sys.stdin.readline()  # hold until the test says so
""")

CONTENDER = textwrap.dedent("""
    import sys
    from pathlib import Path
    from headcls.errors import HeadclsError
    from headcls.files.outputs import output_lock

    try:
        with output_lock(Path(sys.argv[1])):
            print("locked")
    except HeadclsError as e:
        print(e)
""")


def hold(output):
    child = subprocess.Popen([sys.executable, "-c", HOLDER, str(output)], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True)
    assert child.stdout.readline().strip() == "held"
    return child


def release(child) -> None:
    child.stdin.write("\n")
    child.stdin.close()
    assert child.wait(timeout=60) == 0


def test_a_held_output_is_refused_with_the_holders_pid(tmp_path):
    out = tmp_path / "sub" / "model"
    holder = hold(out)
    try:
        message = f"--output {out}: another headcls run (pid {holder.pid}) is writing it; wait for it to finish " \
                  "or choose another output"
        for _ in range(2):  # a refused run's open of the lock file keeps the pid for the next one
            with pytest.raises(HeadclsError) as refused, output_lock(out):
                pass
            assert str(refused.value) == message
        other = subprocess.run([sys.executable, "-c", CONTENDER, str(out)], capture_output=True, text=True,
                               timeout=120, check=True)
        assert other.stdout.strip() == message
        assert (out.parent / ".model.lock").read_text() == str(holder.pid)
    finally:
        release(holder)
    assert not list(out.parent.glob(".model.*")), "no lock file left behind"
    with output_lock(out):
        assert (out.parent / ".model.lock").is_file()
    assert list(out.parent.iterdir()) == [], "released: nothing left"


def test_a_released_lock_is_taken_by_the_next_run(tmp_path):
    out = tmp_path / "model"
    release(hold(out))
    assert not list(tmp_path.glob(".model.*"))
    second = subprocess.run([sys.executable, "-c", CONTENDER, str(out)], capture_output=True, text=True,
                            timeout=120, check=True)
    assert second.stdout.strip() == "locked"
    assert list(tmp_path.iterdir()) == []


def test_a_failed_block_removes_the_folders_it_created(tmp_path):
    out = tmp_path / "a" / "b" / "model"
    with pytest.raises(RuntimeError), output_lock(out):
        raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []
