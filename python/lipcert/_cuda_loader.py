"""Optional CUDA kernels, loaded lazily. "Compiled with CUDA" and "a GPU is present" are two facts."""
from __future__ import annotations

import functools
import logging

logger = logging.getLogger("lipcert")


@functools.lru_cache(maxsize=None)
def cuda_module():
    """The compiled CUDA module, or None when lipcert was built without CUDA."""
    try:
        from . import _cuda
    except ImportError as e:
        logger.debug("lipcert CUDA module not available: %s", e)
        return None
    return _cuda


def cuda_compiled() -> bool:
    """True when this build of lipcert contains the CUDA kernels."""
    return cuda_module() is not None


@functools.lru_cache(maxsize=None)
def cuda_available() -> bool:
    """True when the CUDA kernels are compiled in and a CUDA device can be used."""
    module = cuda_module()
    if module is None:
        return False
    count = module.device_count()
    logger.debug("lipcert CUDA module loaded, %d device(s)", count)
    return count > 0
