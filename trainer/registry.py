"""Architectures by name (``--arch``), shared by training, prediction, serving, benchmarks.

A name maps to a factory ``factory(n_classes, **options) -> chainer.Link`` whose call maps
a batch of images (N, 3, H, W) to logits (N, n_classes). Besides the registered names,
``--arch`` takes an import path ``package.module:Factory``, so a user's own net trains,
predicts and serves through ``main.py`` without editing it. Built-in names are import
paths too, resolved only when used: this package does not import any model package.
"""

import importlib
import inspect
from collections.abc import Callable

import chainer

from trainer.errors import ArchitectureError

Factory = Callable[..., chainer.Link]

_ARCHITECTURES: dict[str, str | Factory] = {'squeezenet': 'squeeze_net:SqueezeNet'}
DEFAULT_ARCH = 'squeezenet'


def register(name: str, factory: str | Factory) -> None:
    """Make ``--arch name`` build models with ``factory`` (a callable or 'module:attr')."""
    _ARCHITECTURES[name] = factory


def names() -> list[str]:
    """The registered architecture names."""
    return sorted(_ARCHITECTURES)


def resolve(arch: str) -> Factory:
    """The factory of a registered name or of an import path 'module:attr'."""
    target = _ARCHITECTURES.get(arch, arch)
    if callable(target):
        return target
    module_name, _, attribute = target.partition(':')
    if not module_name or not attribute:
        raise ArchitectureError(
            f'--arch {arch}: not a registered architecture ({", ".join(names())}) nor an '
            'import path package.module:Factory'
        )
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise ArchitectureError(f'--arch {arch}: cannot import {module_name} ({error})') from None
    try:
        factory = getattr(module, attribute)
    except AttributeError:
        raise ArchitectureError(f'--arch {arch}: {module_name} has no {attribute}') from None
    if not callable(factory):
        raise ArchitectureError(f'--arch {arch}: {target} is not callable')
    return factory


def accepted_options(arch: str, options: dict) -> dict:
    """The subset of ``options`` (name -> value) that the factory of ``arch`` takes.

    A factory taking ``**kwargs`` takes them all.
    """
    parameters = inspect.signature(resolve(arch)).parameters.values()
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters):
        return dict(options)
    taken = {p.name for p in parameters}
    return {name: value for name, value in options.items() if name in taken}


def build(arch: str, n_classes: int, **options) -> chainer.Link:
    """A model of ``arch`` for ``n_classes``; options it does not take are an error.

    Options whose value is None are left to the factory's defaults.
    """
    given = {name: value for name, value in options.items() if value is not None}
    taken = accepted_options(arch, given)
    refused = sorted(given.keys() - taken.keys())
    if refused:
        flags = ', '.join(f'--{name}' for name in refused)
        raise ArchitectureError(f'--arch {arch}: its factory takes no {flags} option')
    return resolve(arch)(n_classes, **taken)
