"""Architectures by name or import path, with the options their factories take."""

import sys
import types
from pathlib import Path
from typing import Literal

import chainer.links as L
import pytest
from conftest import TINY_NET

from squeeze_net import SqueezeNet
from trainer import registry
from trainer.registry import ArchitectureError


def test_squeezenet_is_the_default_and_built_lazily():
    assert registry.DEFAULT_ARCH == 'squeezenet' and 'squeezenet' in registry.names()
    assert registry.resolve('squeezenet') is SqueezeNet
    model = registry.build('squeezenet', 100, init='he')
    assert isinstance(model, SqueezeNet) and model.n_classes == 100


def test_an_import_path_needs_no_registration():
    model = registry.build('chainer.links:Linear', 7)
    assert isinstance(model, L.Linear) and model.out_size == 7


def test_registered_callable():
    registry.register('tiny-linear', lambda n_classes: L.Linear(4, n_classes))
    assert registry.build('tiny-linear', 3).W.shape == (3, 4)


@pytest.mark.parametrize(
    'arch, message',
    [
        ('nonesuch', 'not a registered architecture'),
        ('no_such_module_xyz:Net', 'cannot import no_such_module_xyz'),
        ('squeeze_net:NoSuchNet', 'squeeze_net has no NoSuchNet'),
        ('squeeze_net:FIRES', 'is not callable'),
        ('builtins:print', 'is a built-in function, not a model factory'),  # issue 24, 10
    ],
)
def test_unknown_architectures_are_one_line(arch, message):
    with pytest.raises(ArchitectureError, match=message):
        registry.build(arch, 10)


def test_a_factory_that_returns_no_model_is_one_line():
    registry.register('returns-none', lambda n_classes: None)
    with pytest.raises(ArchitectureError, match='returned a NoneType, not a model'):
        registry.build('returns-none', 10)


def test_options_the_factory_does_not_take_are_refused_unless_none():
    assert isinstance(registry.build('chainer.links:Linear', 3, init=None), L.Linear)
    with pytest.raises(ArchitectureError, match='takes no --init option'):
        registry.build('chainer.links:Linear', 3, init='he')


def user_factory(
    n_classes: int,
    width: int = 8,
    ratio: float = 0.5,
    mode: Literal['a', 'b'] = 'a',
    bias: bool = True,
    name: str = 'net',
    depth: int | None = None,
    sizes: tuple = (1, 2),
    *args,
    **kwargs,
):
    """A factory of every kind of keyword parameter.

    Args:
        n_classes: number of classes.
        width: channels of the first layer. More
            words on a second line.
        ratio: a fraction; the rest is not help.
        mode: which way.
    """


def test_factory_options_come_from_the_signature_and_the_docstring():
    options = {option.name: option for option in registry.factory_options(user_factory)}
    assert list(options) == ['width', 'ratio', 'mode', 'bias', 'name', 'depth']  # no tuple
    assert [options[n].type for n in options] == [int, float, str, bool, str, int]
    assert options['mode'].choices == ('a', 'b') and options['width'].choices is None
    assert (options['width'].default, options['depth'].default) == (8, None)
    assert options['width'].help == 'channels of the first layer'
    assert options['ratio'].help == 'a fraction' and options['bias'].help == ''


def test_squeezenets_options():
    options = {option.name: option for option in registry.factory_options(SqueezeNet)}
    assert {name: (o.type, o.default) for name, o in options.items()} == {
        'dropout': (float, 0.5),
        'init': (str, 'orthonormal'),
        'fast': (bool, True),
    }


def test_a_value_the_factory_refuses_is_one_line_naming_the_flag():
    with pytest.raises(ArchitectureError) as error:
        registry.build('squeezenet', 10, init='bogus', fast=False)
    message = str(error.value)
    assert message.startswith('--arch squeezenet --init bogus --no-fast: unknown initializer')
    assert '\n' not in message


@pytest.fixture
def clean_imports(monkeypatch):
    """Restore sys.path and sys.modules after a test that imports a user's module."""
    monkeypatch.setattr(sys, 'path', list(sys.path))
    yield
    for name in [n for n in sys.modules if n.startswith(('usernets_cwd', 'arch_file_'))]:
        del sys.modules[name]


def test_an_import_path_resolves_from_the_current_directory(tmp_path, monkeypatch, clean_imports):
    (tmp_path / 'usernets_cwd').mkdir()
    (tmp_path / 'usernets_cwd' / 'tiny.py').write_text(TINY_NET)
    monkeypatch.chdir(tmp_path)
    model = registry.build('usernets_cwd.tiny:Net', 3, width=4)
    assert model.head.W.shape == (3, 4)


def test_a_file_path_resolves(tmp_path, clean_imports):
    (tmp_path / 'nets.py').write_text(TINY_NET)
    arch = f'{tmp_path / "nets.py"}:Net'
    factory = registry.resolve(arch)
    assert registry.resolve(arch) is factory  # loaded once
    assert registry.import_path(factory) == arch  # recorded as it was given
    with pytest.raises(ArchitectureError, match='no such file'):
        registry.resolve(f'{tmp_path / "none.py"}:Net')


def test_a_record_of_main_is_one_line_that_says_to_give_arch():
    with pytest.raises(ArchitectureError, match=r'__main__:VGG: .* give .*--arch'):
        registry.resolve('__main__:VGG')


def fake_main(monkeypatch, file, spec_name=None):
    main = types.ModuleType('__main__')
    main.__file__ = str(file)
    main.__spec__ = None if spec_name is None else types.SimpleNamespace(name=spec_name)
    monkeypatch.setitem(sys.modules, '__main__', main)
    return type('VGG', (), {'__module__': '__main__', '__qualname__': 'VGG'})


def test_a_scripts_net_is_recorded_by_its_real_module_or_file(monkeypatch, tmp_path):
    root = Path(__file__).resolve().parents[1]
    monkeypatch.chdir(root)
    script = root / 'examples' / 'train_vgg.py'
    assert registry.import_path(fake_main(monkeypatch, script)) == 'examples.train_vgg:VGG'
    net = fake_main(monkeypatch, script, 'examples.train_vgg')  # python -m examples.train_vgg
    assert registry.import_path(net) == 'examples.train_vgg:VGG'
    outside = tmp_path / 'my-scripts' / 'train.py'
    assert registry.import_path(fake_main(monkeypatch, outside)) == f'{outside}:VGG'
    registry.register('vgg-test', fake_main(monkeypatch, script))
    assert registry.record_name('vgg-test') == 'examples.train_vgg:VGG'
    assert registry.record_name('squeezenet') == 'squeezenet'
    assert registry.name_of(SqueezeNet) == 'squeezenet'
