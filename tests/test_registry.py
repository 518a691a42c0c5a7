"""Architectures by name or import path, with the options their factories take."""

import chainer.links as L
import pytest

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
    ],
)
def test_unknown_architectures_are_one_line(arch, message):
    with pytest.raises(ArchitectureError, match=message):
        registry.build(arch, 10)


def test_options_the_factory_does_not_take_are_refused_unless_none():
    assert isinstance(registry.build('chainer.links:Linear', 3, init=None), L.Linear)
    with pytest.raises(ArchitectureError, match='takes no --init option'):
        registry.build('chainer.links:Linear', 3, init='he')
