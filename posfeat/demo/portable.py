"""The same demo world on every x86-64 machine: rendering on the code paths every such CPU has.

numpy and OpenCV pick vectorised kernels at run time by the CPU they find (numpy: AVX2, AVX-512, ...;
OpenCV: its dispatched SSE4/AVX/AVX-512 kernels and Intel IPP). Those kernels round floating-point
sums, transcendental functions and resampling differently, so the same seed rendered on two CPUs gave
two worlds that differed in a few pixel values, and every stage after them differed too. The demo's
rendering processes therefore run with

* ``NPY_DISABLE_CPU_FEATURES`` naming every target numpy dispatches to (numpy then uses its baseline
  build, the same code on every CPU of the architecture; the variable is read when numpy is imported,
  so it is set for the *spawned* worker processes, never in a process that already imported numpy);
* ``cv2.setUseOptimized(False)`` in each worker (OpenCV's dispatched kernels and IPP off; what remains
  is its baseline build).

The JPEG encoder needs nothing: libjpeg-turbo's integer DCT gives the same bytes with or without SIMD
(checked with ``JSIMD_FORCENONE``). Across architectures (x86-64 against ARM) the baselines differ, so
the bytes may too.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

ENV = "NPY_DISABLE_CPU_FEATURES"


def _umath():
    """numpy's ufunc module, where the CPU dispatch tables live (numpy 2 and 1 names)."""
    try:
        from numpy._core import _multiarray_umath as m
    except ImportError:  # numpy < 2
        from numpy.core import _multiarray_umath as m
    return m


def dispatched_targets() -> list[str]:
    """The CPU targets this numpy build can dispatch to above its baseline (build-time list)."""
    return [str(t) for t in _umath().__cpu_dispatch__]


def active_targets() -> list[str]:
    """The dispatched targets this process uses (empty on the baseline code paths)."""
    m = _umath()
    return [t for t in m.__cpu_dispatch__ if m.__cpu_features__.get(t)]


@contextlib.contextmanager
def baseline_environment() -> Iterator[None]:
    """``os.environ`` with every dispatched numpy target disabled, for the processes started in the block."""
    old = os.environ.get(ENV)
    os.environ[ENV] = " ".join(dispatched_targets())
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(ENV, None)
        else:
            os.environ[ENV] = old


def init_worker() -> None:
    """Worker initializer: OpenCV's dispatched kernels and IPP off (numpy is already on its baseline)."""
    import cv2

    cv2.setUseOptimized(False)


def worker_code_paths() -> dict:
    """What a worker renders with: numpy's active dispatched targets and whether OpenCV's are on."""
    import cv2

    return {"numpy_dispatch": active_targets(), "opencv_optimized": bool(cv2.useOptimized())}
