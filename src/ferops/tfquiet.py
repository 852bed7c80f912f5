"""TensorFlow's import chatter, dropped at entry points (never by the library).

TensorFlow 2.19+ prints its start-up lines (oneDNN, the CUDA stub, absl's "before
InitializeLog" notice) from C++ before its own log level applies, so TF_CPP_MIN_LOG_LEVEL
no longer hides them (tensorflow/tensorflow#100442): every stage of `dvc repro` printed
them twice. `install()` wraps the one `import tensorflow` of the process: for those seconds
file descriptor 2 goes to a temporary file, and afterwards every line that is not one of
the known chatter lines is written back to the real stderr, in order. Real warnings and
errors stay; a crash during the import still shows its output.
"""

from __future__ import annotations

import contextlib
import importlib.abc
import importlib.machinery
import os
import re
import sys
import tempfile

CHATTER = re.compile(
    rb"All log messages before absl::InitializeLog\(\) is called"
    rb"|port\.cc:\d+\] oneDNN custom operations are on"
    rb"|cudart_stub\.cc:\d+\] Could not find cuda drivers"
    rb"|cuda_(dnn|fft|blas)\.cc:\d+\] Unable to register cu\w+ factory"
    rb"|This TensorFlow binary is optimized to use available CPU instructions"
    rb"|To enable the following instructions: .* in other operations, rebuild TensorFlow")


@contextlib.contextmanager
def filtered_stderr():
    """Route fd 2 to a file for the block, then replay all but the chatter lines."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as held:
        os.dup2(held.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            held.seek(0)
            kept = [line for line in held.read().splitlines(keepends=True)
                    if not CHATTER.search(line)]
            if kept:
                os.write(2, b"".join(kept))


class _QuietLoader(importlib.abc.Loader):
    def __init__(self, real) -> None:
        self.real = real

    def create_module(self, spec):
        return self.real.create_module(spec)

    def exec_module(self, module) -> None:
        with filtered_stderr():
            self.real.exec_module(module)


class _QuietFinder(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name != "tensorflow":
            return None
        sys.meta_path.remove(self)  # once: the package's own imports go the usual way
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is not None and spec.loader is not None:
            spec.loader = _QuietLoader(spec.loader)
        return spec


def install() -> None:
    """Filter the chatter of TensorFlow's import, if it has not been imported yet."""
    if "tensorflow" in sys.modules or any(isinstance(f, _QuietFinder) for f in sys.meta_path):
        return
    sys.meta_path.insert(0, _QuietFinder())
