"""End-to-end: the tricks of issue 27 in tiny runs (a tiny net, preset 32, on the CPU)."""

import json

import chainer
import chainer.functions as F
import chainer.links as L
import numpy as np
import pytest
from chainer.serializers import npz

import trainer
from trainer.ema import WeightAverage
from trainer.run_folder import EMA_MODEL_FILE, EMA_PREFIX, MODEL_FILE, read_npz


class TinyNet(chainer.Chain):
    """Conv, BN, ReLU, global pooling, linear: every kind of array the EMA averages."""

    def __init__(self, n_classes: int = 10) -> None:
        super().__init__()
        with self.init_scope():
            self.conv = L.Convolution2D(3, 4, 3, pad=1)
            self.bn = L.BatchNormalization(4)
            self.fc = L.Linear(4, n_classes)

    def forward(self, x):
        h = F.relu(self.bn(self.conv(x)))
        return self.fc(F.average(h, axis=(2, 3)))


OFF = {
    'recipe': 'reference',
    'label_smoothing': 0.0,
    'schedule': 'step',
    'warmup': 0.0,
    'clip_grad': 0.0,
    'ema_decay': 0.0,
    'tta': False,
    'cutout': 0.0,
    'mixup': 0.0,
    'cutmix': 0.0,
    'mixed16': False,
}
TIMINGS = ('elapsed_time', 'train/images_per_sec', 'validation/images_per_sec')


def run(tmp_path, cifar10_archive, name, epoch=2, **flags):
    chainer.config.dtype = np.float32
    trainer.set_seed(0)
    model = TinyNet()
    log = trainer.train(
        model,
        save_path=str(tmp_path / name),
        img_dir=str(tmp_path / name / 'img'),
        epoch=epoch,
        batch=20,
        preset='32',
        workers=0,
        seed=0,
        data=str(cifar10_archive),
        **flags,
    )
    return [{k: v for k, v in e.items() if not k.endswith(TIMINGS)} for e in log]


def test_every_trick_at_its_off_value_is_the_default_run_bit_for_bit(tmp_path, cifar10_archive):
    assert run(tmp_path, cifar10_archive, 'default') == run(tmp_path, cifar10_archive, 'off', **OFF)
    record = json.loads((tmp_path / 'default' / 'run.json').read_text())
    assert record['settings']['tricks'] == {
        k: v for k, v in OFF.items() if k not in ('recipe', 'mixed16')
    }
    assert not (tmp_path / 'default' / EMA_MODEL_FILE).exists()


def test_the_modern_recipe_trains_evaluates_the_average_and_saves_it(tmp_path, cifar10_archive):
    log = run(tmp_path, cifar10_archive, 'modern', recipe='modern')
    assert [e['epoch'] for e in log] == [1, 2]
    for key in ('validation/main/accuracy', 'validation_ema/main/accuracy', 'main/accuracy'):
        assert all(np.isfinite(e[key]) for e in log)
    folder = tmp_path / 'modern'
    record = json.loads((folder / 'run.json').read_text())
    assert record['settings']['tricks']['schedule'] == 'cosine'
    assert record['settings']['tricks']['ema_decay'] == 0.999
    assert record['sessions'][0]['options']['recipe'] == 'modern'
    raw, average = read_npz(folder / MODEL_FILE), read_npz(folder / EMA_MODEL_FILE)
    assert raw.keys() == average.keys()
    assert not np.array_equal(raw['fc/W'], average['fc/W'])
    snapshot = read_npz(folder / 'snapshot_epoch_2')
    np.testing.assert_array_equal(snapshot[EMA_PREFIX + 'fc/W'], average['fc/W'])


def test_a_resumed_run_continues_the_average(tmp_path, cifar10_archive, monkeypatch):
    flags = {'ema_decay': 0.9, 'schedule': 'cosine', 'warmup': 1.0}
    run(tmp_path, cifar10_archive, 'split', epoch=1, **flags)
    saved = read_npz(tmp_path / 'split' / 'snapshot_epoch_1')
    seen = []
    step = WeightAverage.__call__

    def first(self, trainer_):
        if not seen:
            seen.append({k: v.copy() for k, v in npz.serialize(self.average).items()})
            seen.append(trainer_.updater.get_optimizer('main').t)
        step(self, trainer_)

    monkeypatch.setattr(WeightAverage, '__call__', first)
    run(tmp_path, cifar10_archive, 'split', epoch=2, **flags)
    average, t = seen
    assert t == 6  # epoch 1's 5 updates and the first of epoch 2: the schedule goes on
    for name in ('fc/W', 'bn/avg_mean', 'bn/avg_var', 'bn/N'):
        np.testing.assert_array_equal(average[name], saved[EMA_PREFIX + name])


def test_a_resume_with_another_trick_is_refused(tmp_path, cifar10_archive):
    run(tmp_path, cifar10_archive, 'r', epoch=1)
    with pytest.raises(trainer.RunFolderError, match='tricks'):
        run(tmp_path, cifar10_archive, 'r', epoch=2, label_smoothing=0.1)


def test_tta_evaluation_and_smoothing_and_mixing_train(tmp_path, cifar10_archive):
    log = run(
        tmp_path,
        cifar10_archive,
        'tta',
        epoch=1,
        tta=True,
        label_smoothing=0.2,
        cutout=0.5,
        mixup=0.4,
        clip_grad=1.0,
    )
    assert np.isfinite(log[0]['main/loss']) and 0 <= log[0]['main/accuracy'] <= 1
    assert 'validation/main/accuracy' in log[0]


def test_predict_takes_the_averaged_weights(tiny_run, tmp_path):
    import shutil

    import inference

    folder = tmp_path / 'run'
    shutil.copytree(tiny_run, folder)
    # stand-in for an --ema-decay run: the averaged file beside the raw one
    arrays = dict(read_npz(folder / MODEL_FILE))
    arrays['fc10/W' if 'fc10/W' in arrays else sorted(arrays)[0]] *= 0
    np.savez(folder / EMA_MODEL_FILE, **arrays)
    raw = inference.load_predictor(folder / MODEL_FILE)
    average = inference.load_predictor(folder / EMA_MODEL_FILE)
    x = np.random.default_rng(0).normal(size=(2, 3, 32, 32)).astype(np.float32)
    assert raw.name == average.name
    assert not np.allclose(raw.forward(x), average.forward(x))
