"""The real FFT of rows of frames: scipy's pocketfft, without the cost of importing ``scipy.fft``.

``import scipy.fft`` takes ~0.17 s, more than numpy itself: it loads scipy.special and, through its
array-API layer, numpy.testing, numpy.f2py and numpy.ma. Every ``audiosim index`` paid it before its
workers could start (and numpy's own FFT is 6x slower on float32 frames). The transform is pocketfft's
extension module, which needs none of that: it is loaded straight from scipy's package, where scipy
keeps it (``scipy/fft/_pocketfft/pypocketfft``), and called as ``scipy.fft.rfft`` calls it, so the
results are the same bits. Should a scipy release keep it elsewhere, ``scipy.fft`` is imported instead.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import sys
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path

import numpy as np

_EXTENSION = "scipy.fft._pocketfft.pypocketfft"
_FORWARD, _NO_SCALING, _ONE_THREAD = True, 0, 1  # what scipy.fft.rfft(x, axis=-1) passes to pocketfft


def rfft_rows(frames: np.ndarray) -> np.ndarray:
    """``scipy.fft.rfft(frames, axis=-1)`` of float32 (complex64 out) or float64 rows."""
    return _rfft()(frames)


@lru_cache(maxsize=1)
def _rfft() -> Callable[[np.ndarray], np.ndarray]:
    pocketfft = _load_pocketfft()
    if pocketfft is None:
        import scipy.fft

        return lambda frames: scipy.fft.rfft(frames, axis=-1)
    return lambda frames: pocketfft.r2c(frames, (frames.ndim - 1,), _FORWARD, _NO_SCALING, None, _ONE_THREAD)


def _load_pocketfft():
    """scipy's pocketfft extension module, without importing the packages around it; None if not found."""
    if _EXTENSION in sys.modules:
        return sys.modules[_EXTENSION]
    try:
        spec = importlib.util.find_spec("scipy")  # finds the package without running its __init__
        if spec is None or not spec.submodule_search_locations:
            return None
        folder = Path(next(iter(spec.submodule_search_locations))) / "fft" / "_pocketfft"
        for suffix in importlib.machinery.EXTENSION_SUFFIXES:
            path = folder / f"pypocketfft{suffix}"
            if path.is_file():
                loader = importlib.machinery.ExtensionFileLoader(_EXTENSION, str(path))
                module_spec = importlib.util.spec_from_file_location(_EXTENSION, path, loader=loader)
                module = importlib.util.module_from_spec(module_spec)
                loader.exec_module(module)
                if not hasattr(module, "r2c"):
                    return None
                sys.modules[_EXTENSION] = module  # scipy.fft, if imported later, takes this one
                return module
    except (ImportError, OSError):
        return None
    return None
