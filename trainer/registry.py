"""Architectures by name (``--arch``), shared by training, prediction, serving, benchmarks.

A name maps to a factory ``factory(n_classes, **options) -> chainer.Link`` whose call maps
a batch of images (N, 3, H, W) to logits (N, n_classes). Besides the registered names,
``--arch`` takes an import path ``package.module:Factory``, resolved from the current
directory as ``python -m`` would (a user's own module needs no ``PYTHONPATH``), or a file
path ``path/to/nets.py:Factory``, so a user's own net trains, predicts and serves through
``main.py`` without editing it. Built-in names are import paths too, resolved only when
used: this package does not import any model package.

The factory's keyword parameters are the model's options (``factory_options``): the command
line offers each as a flag, training records the values given in ``run.json``, and
prediction, serving, export and resume rebuild the model with them. What the trainer
records is ``record_name(arch)``: an import path that another process can resolve (a net
registered from a script is recorded by its module's real name or its file, never as
``__main__``).
"""

import importlib
import importlib.util
import inspect
import os
import re
import sys
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import chainer

from trainer.errors import ArchitectureError

Factory = Callable[..., chainer.Link]

_ARCHITECTURES: dict[str, str | Factory] = {
    'squeezenet': 'squeeze_net:SqueezeNet',
    'resnet20': 'examples.resnet:resnet20',  # CIFAR ResNets (He et al. 2016), written once
    'resnet32': 'examples.resnet:resnet32',
    'resnet56': 'examples.resnet:resnet56',
    'vgg': 'examples.train_vgg:VGG',
}
DEFAULT_ARCH = 'squeezenet'
MAIN = '__main__'
_FILE_MODULES: dict[str, str] = {}  # module name -> the file path it was loaded from


def register(name: str, factory: str | Factory) -> None:
    """Make ``--arch name`` build models with ``factory`` (a callable or 'module:attr')."""
    _ARCHITECTURES[name] = factory


def names() -> list[str]:
    """The registered architecture names."""
    return sorted(_ARCHITECTURES)


def resolve(arch: str) -> Factory:
    """The factory of a registered name, an import path 'module:attr' or 'file.py:attr'."""
    target = _ARCHITECTURES.get(arch, arch)
    if callable(target):
        return target
    module_name, _, attribute = target.rpartition(':')
    if not module_name or not attribute:
        raise ArchitectureError(
            f'--arch {arch}: not a registered architecture ({", ".join(names())}) nor an '
            'import path package.module:Factory or path/to/file.py:Factory'
        )
    if module_name == MAIN:
        raise ArchitectureError(
            f'--arch {arch}: a net defined in a script run as __main__ cannot be imported '
            f'again; give its module (package.module:{attribute}, from the folder you trained '
            f'in) or its file (path/to/script.py:{attribute}) with --arch'
        )
    module = _import(arch, module_name, attribute)
    factory = module
    try:
        for part in attribute.split('.'):
            factory = getattr(factory, part)
    except AttributeError:
        raise ArchitectureError(f'--arch {arch}: {module_name} has no {attribute}') from None
    if not callable(factory):
        raise ArchitectureError(f'--arch {arch}: {target} is not callable')
    if inspect.isbuiltin(factory):
        raise ArchitectureError(
            f'--arch {arch}: {target} is a built-in function, not a model factory (a '
            'chainer.Link class or a function returning one)'
        )
    return factory


def _import(arch: str, module_name: str, attribute: str):
    """The module of an import path (from the current directory first) or of a file."""
    if module_name.endswith('.py'):
        return _import_file(arch, Path(module_name))
    cwd = os.getcwd()
    if cwd not in [os.path.abspath(entry or '.') for entry in sys.path]:
        sys.path.insert(0, cwd)  # what python -m does: the current directory comes first
        importlib.invalidate_caches()
    try:
        return importlib.import_module(module_name)
    except ImportError as error:
        raise ArchitectureError(
            f'--arch {arch}: cannot import {module_name} ({error}); run from the folder that '
            f'holds it, as python -m would, or give its file: path/to/file.py:{attribute}'
        ) from None


def _import_file(arch: str, path: Path):
    """Load a Python file as a module, once per file (named after its path)."""
    if not path.is_file():
        raise ArchitectureError(f'--arch {arch}: no such file {path}')
    resolved = str(path.resolve())
    for name, file in _FILE_MODULES.items():
        if file == resolved and name in sys.modules:
            return sys.modules[name]
    name = 'arch_file_' + re.sub(r'\W', '_', resolved)
    spec = importlib.util.spec_from_file_location(name, resolved)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except ImportError as error:
        del sys.modules[name]
        raise ArchitectureError(f'--arch {arch}: cannot import {path} ({error})') from None
    _FILE_MODULES[name] = str(path)
    return module


def import_path(factory: Callable) -> str | None:
    """An import path ``module:qualname`` of ``factory`` that another process can resolve.

    A factory defined in a script run as ``__main__`` gets its module's real name: the
    ``-m`` name, else the script's path relative to the current directory as a dotted name
    when it is one (``examples.train_vgg``), else the file's path (``path/to/file.py``).
    None when it has none (a lambda, a function inside a function).
    """
    module = getattr(factory, '__module__', None)
    qualname = getattr(factory, '__qualname__', None)
    if not module or not qualname or '<' in qualname:
        return None
    if module in _FILE_MODULES:
        return f'{_FILE_MODULES[module]}:{qualname}'
    if module == MAIN:
        main = sys.modules.get(MAIN)
        spec = getattr(main, '__spec__', None)
        if spec is not None and spec.name and spec.name != MAIN:  # python -m package.module
            return f'{spec.name.removesuffix(".__main__")}:{qualname}'
        file = getattr(main, '__file__', None)
        if not file:
            return None  # an interactive session
        return f'{_script_module(Path(file))}:{qualname}'
    return f'{module}:{qualname}'


def _script_module(file: Path) -> str:
    """A script's dotted module name from the current directory, else its file path."""
    path = file.resolve()
    try:
        relative = path.relative_to(Path.cwd())
    except ValueError:
        return str(path)
    parts = relative.with_suffix('').parts
    if relative.suffix == '.py' and all(part.isidentifier() for part in parts):
        return '.'.join(parts)
    return str(relative)


def record_name(arch: str) -> str:
    """What ``run.json`` records for ``--arch arch``: a name another process can resolve.

    A built-in name or an import path as given; a name registered with a callable, by the
    callable's import path (``import_path``), or as given when it has none.
    """
    target = _ARCHITECTURES.get(arch, arch)
    if callable(target):
        return import_path(target) or arch
    return arch


def name_of(factory: Callable) -> str | None:
    """The name to record for a model built by ``factory`` (a registered name if it has one)."""
    for name, target in _ARCHITECTURES.items():
        if target is factory:
            return record_name(name)
        if isinstance(target, str):
            module_name, _, attribute = target.partition(':')
            module = sys.modules.get(module_name)
            if module is not None and getattr(module, attribute, None) is factory:
                return name
    return import_path(factory)


def same_factory(a: str, b: str) -> bool | None:
    """Whether two recorded names resolve to the same factory (same file and name); None
    when one of them cannot be resolved here. A script's net recorded by its dotted module
    name in one run and by its file in another is the same factory."""
    try:
        first, second = resolve(a), resolve(b)
    except ArchitectureError:
        return None
    return first is second or (
        getattr(first, '__qualname__', None) == getattr(second, '__qualname__', None)
        and _source(first) is not None
        and _source(first) == _source(second)
    )


def _source(factory: Callable) -> Path | None:
    try:
        file = inspect.getsourcefile(factory)
    except TypeError:
        return None
    return Path(file).resolve() if file else None


def builds(arch: str, model: chainer.Link) -> bool:
    """False when ``arch`` names a class that ``model`` is not an instance of."""
    factory = resolve(arch)
    return not isinstance(factory, type) or isinstance(model, factory)


def recordable(arch: str) -> bool:
    """True when ``arch`` resolves (so a record of it can be rebuilt)."""
    try:
        resolve(arch)
    except ArchitectureError:
        return False
    return True


# --- the factory's options ----------------------------------------------------------------


@dataclass(frozen=True)
class ModelOption:
    """One keyword parameter of a factory, as the command line offers it.

    Args:
        name: the parameter's name (the flag is ``--name``).
        type: bool, int, float or str: what a value given on the command line becomes.
        default: the factory's default.
        choices: the allowed values when the annotation is a ``Literal``, else None.
        help: the parameter's line in the factory's ``Args:`` docstring section.
    """

    name: str
    type: type
    default: object
    choices: tuple | None = None
    help: str = ''


_SIMPLE = (bool, int, float, str)


def factory_options(factory: Factory) -> list[ModelOption]:
    """The keyword parameters of ``factory`` (after the class count) a command line can set.

    A parameter qualifies when its default or its annotation is a bool, int, float, str (or
    an Optional of one), or a ``Literal``; others (tuples, callables...) keep the default.
    """
    try:
        parameters = list(inspect.signature(factory).parameters.values())
    except (TypeError, ValueError):
        return []
    try:
        hints = typing.get_type_hints(factory.__init__ if isinstance(factory, type) else factory)
    except Exception:  # an annotation that does not evaluate here: fall back on the default
        hints = {}
    docs = _argument_docs(factory)
    options = []
    for parameter in parameters[1:]:
        if parameter.kind not in (parameter.POSITIONAL_OR_KEYWORD, parameter.KEYWORD_ONLY):
            continue
        if parameter.default is parameter.empty:
            continue
        kind, choices = _option_type(hints.get(parameter.name), parameter.default)
        if kind is None:
            continue
        options.append(
            ModelOption(
                parameter.name, kind, parameter.default, choices, docs.get(parameter.name, '')
            )
        )
    return options


def _option_type(annotation, default) -> tuple[type | None, tuple | None]:
    """(the value's type, its Literal choices) of an annotation or a default."""
    if typing.get_origin(annotation) is typing.Literal:
        choices = typing.get_args(annotation)
        kinds = {type(choice) for choice in choices}
        return (kinds.pop(), choices) if len(kinds) == 1 and kinds <= set(_SIMPLE) else (None, None)
    candidates = [annotation]
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        candidates = [arg for arg in typing.get_args(annotation) if arg is not type(None)]
    for candidate in candidates:
        if candidate in _SIMPLE:
            return candidate, None
    if type(default) in _SIMPLE:
        return type(default), None
    return None, None


def _argument_docs(factory: Factory) -> dict[str, str]:
    """name -> its entry in the docstring's ``Args:`` section, up to the first sentence's end."""
    doc = inspect.getdoc(factory) or ''
    match = re.search(r'^Args:\n((?:[ \t]+.*\n?|\n)*)', doc, re.MULTILINE)
    if not match:
        return {}
    docs, name, indent = {}, None, 0
    for line in match.group(1).splitlines():
        entry = re.match(r'^( {2,8})(\w+)(?: \([^)]*\))?: (.*)$', line)
        if entry and (name is None or len(entry.group(1)) <= indent):  # not a nested line
            indent, name = len(entry.group(1)), entry.group(2)
            docs[name] = entry.group(3)
        elif name is not None and line.strip():
            docs[name] += ' ' + line.strip()
    return {key: _first_sentence(text.replace('``', '')) for key, text in docs.items()}


def _first_sentence(text: str) -> str:
    end = re.search(r'[.;](\s|$)', text)
    return text[: end.start()] if end else text


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

    Options whose value is None are left to the factory's defaults. A ValueError or
    TypeError of the factory (a value it refuses) is an ArchitectureError naming the flags.
    """
    given = {name: value for name, value in options.items() if value is not None}
    taken = accepted_options(arch, given)
    refused = sorted(given.keys() - taken.keys())
    if refused:
        flags = ', '.join(f'--{name}' for name in refused)
        raise ArchitectureError(f'--arch {arch}: its factory takes no {flags} option')
    try:
        model = resolve(arch)(n_classes, **taken)
    except (ValueError, TypeError) as error:
        if isinstance(error, ArchitectureError):
            raise
        flags = ''.join(f' {_flag(name, value)}' for name, value in taken.items())
        raise ArchitectureError(f'--arch {arch}{flags}: {error}') from None
    if not isinstance(model, chainer.Link):
        raise ArchitectureError(
            f'--arch {arch}: returned a {type(model).__name__}, not a model (a chainer.Link)'
        )
    return model


def _flag(name: str, value) -> str:
    """An option as the command line gives it: ``--init he``, ``--no-fast``."""
    if isinstance(value, bool):
        return f'--{name}' if value else f'--no-{name}'
    return f'--{name} {value}'
