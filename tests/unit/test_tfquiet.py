"""ferops.tfquiet: TensorFlow's import chatter is dropped at entry points, nothing else is."""

from __future__ import annotations

import subprocess
import sys


def run(code: str) -> str:
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=300)
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    return proc.stderr.decode(errors="replace")


def test_a_stage_imports_tensorflow_without_its_start_up_chatter():
    raw = run("import tensorflow")
    assert "oneDNN" in raw or "InitializeLog" in raw  # what TensorFlow 2.21 prints here
    quiet = run("from ferops.stage import quiet_tensorflow\n"
                "quiet_tensorflow()\n"
                "import sys; print('before', file=sys.stderr)\n"
                "import tensorflow as tf\n"
                "print('after', tf.constant(2).numpy(), file=sys.stderr)")
    assert "oneDNN" not in quiet and "InitializeLog" not in quiet and "cudart" not in quiet
    assert quiet.splitlines()[0] == "before" and quiet.splitlines()[-1] == "after 2"


def test_every_other_line_written_meanwhile_comes_back_in_order():
    out = run("import os, sys\n"
              "from ferops.tfquiet import filtered_stderr\n"
              "with filtered_stderr():\n"
              "    os.write(2, b'W0000 real warning one\\n')\n"
              "    os.write(2, b'I0000 port.cc:153] oneDNN custom operations are on. x\\n')\n"
              "    print('real warning two', file=sys.stderr)\n"
              "print('after', file=sys.stderr)\n")
    assert out.splitlines() == ["W0000 real warning one", "real warning two", "after"]
