"""Let the frozen Chainer 7.8.1 import and run on Python 3.12+, NumPy 2 and setuptools 82+.

Chainer is no longer maintained (chainer/chainer#8632) and its last release uses names that
newer stacks removed. Rather than forking or vendoring it, this module puts back exactly
those names, each only when it is missing, so on the pinned stack (Python 3.11, NumPy 1.26,
setuptools<82) it changes nothing. Import it before Chainer; it applies itself on import:

- ``numpy.sctypes`` (removed in NumPy 2.0): read at import time by
  ``chainer.functions.array.as_strided``.
- ``numpy.distutils.system_info`` (gone on Python 3.12+ and in recent NumPy): imported by
  ``chainer._environment_check``, which calls ``get_info('blas_opt')`` on macOS only.
- ``pkg_resources`` (removed in setuptools 82): imported by ``chainer._environment_check``,
  which calls ``require``, ``get_distribution`` and catches ``DistributionNotFound`` and
  ``VersionConflict`` to warn about unsupported CuPy or iDeep versions.
- On setuptools 80.9 to 81, where ``pkg_resources`` is still there but warns on import, that
  ``UserWarning`` is ignored when Chainer's import triggers it, so that importing Chainer
  prints nothing (``PATCHED`` then holds ``'warning:pkg_resources'``).

CuPy is left alone: CuPy 14 has no cuDNN, and Chainer then falls back to im2col by itself.
"""

import importlib.metadata
import importlib.util
import operator
import re
import sys
import types
import warnings
from typing import Any

import numpy

PATCHED: tuple[str, ...] = ()
"""What :func:`apply` has done, in order (names put back, or the silenced warning).

Empty on the pinned stack.
"""

_STAND_IN_DOC = 'Stand-in from chainer_compat for Chainer 7.8.1 (chainer/chainer#8632).'
_CLAUSE = re.compile(r'\s*(==|!=|<=|>=|<|>)\s*([0-9][0-9A-Za-z.+!-]*)\s*$')
_COMPARE = {
    '==': operator.eq,
    '!=': operator.ne,
    '<=': operator.le,
    '>=': operator.ge,
    '<': operator.lt,
    '>': operator.gt,
}


def _missing(name: str) -> bool:
    """True when module ``name`` cannot be imported; it is not imported to find out."""
    if name in sys.modules:
        return sys.modules[name] is None
    try:
        return importlib.util.find_spec(name) is None
    except ImportError:
        return True


def _release(version: str) -> tuple[int, ...]:
    """Release numbers of a version, trailing zeros dropped: '7.7.0rc1' -> (7, 7)."""
    match = re.match(r'\d+(\.\d+)*', version)
    numbers = [int(part) for part in match.group().split('.')] if match else []
    while numbers and numbers[-1] == 0:
        numbers.pop()
    return tuple(numbers)


def _pkg_resources_warns() -> bool:
    """True when the installed pkg_resources warns on import (setuptools 80.9 and later)."""
    try:
        return _release(importlib.metadata.version('setuptools')) >= (80, 9)
    except importlib.metadata.PackageNotFoundError:
        return False


def _pkg_resources() -> types.ModuleType:
    """The part of ``pkg_resources`` that ``chainer._environment_check`` calls.

    Versions are compared by release numbers only (pre, post and local tags are ignored),
    which is enough for Chainer's warning about unsupported CuPy or iDeep versions.
    """
    module = types.ModuleType('pkg_resources', _STAND_IN_DOC)

    class DistributionNotFound(Exception):
        """The requested distribution is not installed."""

    class VersionConflict(Exception):
        """The installed distribution does not satisfy the requirement."""

    def get_distribution(name: str) -> Any:
        try:
            version = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            raise DistributionNotFound(name) from None
        return types.SimpleNamespace(project_name=name, version=version)

    def require(requirement: str) -> list[Any]:
        name, spec = re.match(r'\s*([A-Za-z0-9._-]+)(.*)', requirement).groups()
        dist = get_distribution(name)
        for clause in filter(str.strip, spec.split(',')):
            op, version = _CLAUSE.match(clause).groups()
            if not _COMPARE[op](_release(dist.version), _release(version)):
                raise VersionConflict(dist, requirement)
        return [dist]

    module.DistributionNotFound = DistributionNotFound
    module.VersionConflict = VersionConflict
    module.get_distribution = get_distribution
    module.require = require
    return module


def _numpy_distutils() -> tuple[types.ModuleType, types.ModuleType]:
    """``numpy.distutils`` with a ``system_info.get_info`` that finds no library."""
    package = types.ModuleType('numpy.distutils', _STAND_IN_DOC)
    package.__path__ = []
    system_info = types.ModuleType('numpy.distutils.system_info', _STAND_IN_DOC)
    system_info.get_info = lambda name, notfound_action=0: {}
    package.system_info = system_info
    return package, system_info


def apply() -> tuple[str, ...]:
    """Put back what Chainer 7.8.1 needs and the running stack lacks; return :data:`PATCHED`.

    Idempotent: a second call finds nothing missing and changes nothing.
    """
    global PATCHED
    patched = []
    # NumPy 1.x's value; chainer.functions.array.as_strided reads 'int' and 'float' at import.
    if not hasattr(numpy, 'sctypes'):
        numpy.sctypes = {
            'int': [numpy.int8, numpy.int16, numpy.int32, numpy.int64],
            'uint': [numpy.uint8, numpy.uint16, numpy.uint32, numpy.uint64],
            'float': [numpy.float16, numpy.float32, numpy.float64, numpy.longdouble],
            'complex': [numpy.complex64, numpy.complex128, numpy.clongdouble],
            'others': [bool, object, bytes, str, numpy.void],
        }
        patched.append('numpy.sctypes')
    # chainer._environment_check imports numpy.distutils.system_info (get_info: macOS only).
    if _missing('numpy.distutils'):
        package, system_info = _numpy_distutils()
        sys.modules[package.__name__] = package
        sys.modules[system_info.__name__] = system_info
        numpy.distutils = package
        patched.append('numpy.distutils')
    # chainer._environment_check imports pkg_resources to check CuPy and iDeep versions.
    if _missing('pkg_resources'):
        sys.modules['pkg_resources'] = _pkg_resources()
        patched.append('pkg_resources')
    # setuptools 80.9 to 81: Chainer's import of pkg_resources would print a UserWarning.
    # (Not where pkg_resources is this module's stand-in, which never warns: setuptools 82+.)
    elif (
        _pkg_resources_warns()
        and 'warning:pkg_resources' not in PATCHED
        and getattr(sys.modules.get('pkg_resources'), '__doc__', None) != _STAND_IN_DOC
    ):
        warnings.filterwarnings(
            'ignore',
            'pkg_resources is deprecated as an API',
            UserWarning,
            r'chainer\._environment_check$',
        )
        patched.append('warning:pkg_resources')
    PATCHED += tuple(patched)
    return PATCHED


apply()
