"""The CIFAR ResNet example: the paper's shapes, and one forward that takes the fast path."""

import chainer
import chainer.functions as F
import numpy as np
import pytest
from chainer.functions.connection import convolution_2d
from chainer.functions.normalization import batch_normalization
from fast_path_check import assert_paths_agree

from examples.resnet import ResNet, resnet20, resnet32
from layers import layout


def test_resnet20_has_the_papers_layers():
    model = resnet20(10)
    convs = [link for link in model.links() if isinstance(link, chainer.links.Convolution2D)]
    projections = [name for name, _ in model.namedlinks() if name.endswith('/projection')]
    assert len(convs) - len(projections) == 19  # 6n + 1 convolutions, plus the dense head
    assert len(projections) == 2  # where the stages widen and halve the size
    widths = [conv.out_channels for conv in convs]
    assert sorted(set(widths)) == [16, 32, 64]
    # 0.27M parameters as the paper's ResNet-20, plus the two projections' 1x1 convolutions
    assert sum(p.size for p in model.params()) == 272_474
    assert len(list(resnet32(10).blocks)) == 15


@pytest.mark.parametrize('size', [32, 40])
def test_logits_shape(size, rng):
    x = rng.normal(size=(2, 3, size, size)).astype(np.float32)
    with chainer.using_config('train', False), chainer.no_backprop_mode():
        assert resnet20(7)(x).shape == (2, 7)


@pytest.mark.parametrize('train', [True, False])
def test_fast_path_equals_plain(train, rng):
    model = ResNet(10, n=1)

    def forward(m, x):
        m.fast = getattr(chainer.config, layout.CONFIG_KEY)  # the path being run
        return m(x)

    x = rng.normal(size=(3, 3, 16, 16))
    assert_paths_agree(forward, model, [x], train=train)
    assert_paths_agree(forward, model, [x], train=False, graph=False)


def test_the_fast_forward_runs_no_plain_convolution_or_normalization(rng, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError('a Chainer convolution or batch normalization ran')

    model = resnet20(10)
    x = rng.normal(size=(2, 3, 32, 32)).astype(np.float32)
    monkeypatch.setattr(convolution_2d.Convolution2DFunction, 'forward_cpu', refuse)
    monkeypatch.setattr(batch_normalization.BatchNormalization, 'forward', refuse)
    with chainer.using_config('train', True):
        F.softmax_cross_entropy(model(x), np.array([1, 2], np.int32)).backward()
    with chainer.using_config('train', False), chainer.no_backprop_mode():
        model(x)
    model.fast = False
    with pytest.raises(AssertionError, match='a Chainer convolution'):
        model(x)


def test_main_trains_and_predicts_resnet20_by_name(tmp_path, capsys):
    """--arch resnet20: the registered example, trained through main.py, then predicting."""
    import json

    from conftest import write_cifar10
    from PIL import Image

    import main

    archive = write_cifar10(tmp_path / 'data')
    out = tmp_path / 'run'
    argv = ['--arch', 'resnet20', '-e', '1', '-b', '20', '--preset', '32', '--workers', '0']
    argv += ['-p', str(out), '--img-dir', str(out / 'img'), '--data', str(archive)]
    assert main.main(argv) == 0
    assert json.loads((out / 'run.json').read_text())['settings']['arch'] == 'resnet20'
    log = json.loads((out / 'log.json').read_text())
    assert len(log) == 1 and np.isfinite(log[0]['main/loss'])
    Image.new('RGB', (20, 20), (200, 10, 10)).save(tmp_path / 'red.png')
    capsys.readouterr()
    assert main.main(['predict', '-m', str(out / 'model.npz'), str(tmp_path / 'red.png')]) == 0
    assert capsys.readouterr().out.startswith(f'{tmp_path / "red.png"}: ')
