"""The packages' boundaries: the model never loads the trainer, the trainer never loads the
model, its layers, inference or serving; one recipe everywhere; one module for the trainer's
errors."""

import dataclasses
import inspect
import json
import subprocess
import sys
from pathlib import Path

import pytest

import trainer
from squeeze_net import SqueezeNet
from trainer.recipe import RECIPE, markdown_table

ROOT = Path(__file__).resolve().parents[1]


def loaded_after(statement: str) -> list[str]:
    code = f'import sys; {statement}; import json; print(json.dumps(sorted(sys.modules)))'
    done = subprocess.run(
        [sys.executable, '-c', code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    return json.loads(done.stdout)


@pytest.mark.parametrize('package', ['squeeze_net', 'layers'])
def test_the_model_packages_do_not_import_the_trainer(package):
    modules = loaded_after(f'import {package}')
    assert not [name for name in modules if name == 'trainer' or name.startswith('trainer.')]
    assert 'chainer_compat' in modules


@pytest.mark.parametrize(
    'package, above',
    [('trainer', ['inference', 'serving']), ('inference', ['serving'])],
)
def test_a_package_does_not_import_the_packages_above_it(package, above):
    # serving -> inference -> trainer, never back: the trainer knows nothing of prediction
    modules = loaded_after(f'import {package}')
    assert package in modules
    assert not [m for m in modules for top in above if m == top or m.startswith(f'{top}.')]


# the trainer's own modules
TRAINER_MODULES = sorted(
    f'trainer.{path.stem}' for path in (ROOT / 'trainer').glob('*.py') if path.stem != '__init__'
)


@pytest.mark.parametrize('statement', ['import trainer', f'import {", ".join(TRAINER_MODULES)}'])
def test_the_trainer_does_not_import_the_model_or_its_layers(statement):
    modules = loaded_after(statement)
    assert 'trainer' in modules
    assert not [m for m in modules if m.split('.')[0] in ('squeeze_net', 'layers', 'numba')]


def test_a_model_option_reaches_the_factory_without_the_trainer_knowing_it():
    options = trainer.parse_args(['--init', 'he', '--dropout', '0.25', '--plain'])
    assert options.model_options == {'init': 'he', 'dropout': 0.25, 'fast': False}
    model = trainer.registry.build('squeezenet', 10, **options.model_options)
    assert (model.dropout, model.fast) == (0.25, False)


def test_every_user_error_is_defined_in_trainer_errors():
    """One home for what a user can cause: the trainer's, inference's and serving's."""
    import importlib

    import trainer.errors

    others = [
        f'{package}.{path.stem}'
        for package in ('inference', 'serving')
        for path in (ROOT / package).glob('*.py')
        if path.stem != '__init__'
    ]
    if importlib.util.find_spec('onnx') is None:  # the ONNX modules import only with extras
        others = [name for name in others if name not in ('inference.export',)]
    for name in TRAINER_MODULES + others:
        module = importlib.import_module(name)
        for value in vars(module).values():
            if isinstance(value, type) and issubclass(value, trainer.UserError):
                assert value.__module__ == 'trainer.errors', (name, value)
    for name in ('OptionError', 'ArchitectureError', 'StoppingError', 'MissingExtraError'):
        assert getattr(trainer, name) is getattr(trainer.errors, name)


def test_the_recipe_is_frozen_and_documented():
    with pytest.raises(dataclasses.FrozenInstanceError):
        RECIPE.lr = 1.0
    for field in dataclasses.fields(RECIPE):
        assert field.metadata['why'], field.name


def test_the_model_defaults_are_the_models_and_the_readme_says_them():
    # the recipe holds only what the trainer reads; the model's knobs are its own defaults
    assert not {'dropout', 'init'} & {f.name for f in dataclasses.fields(RECIPE)}
    parameters = inspect.signature(SqueezeNet).parameters
    assert (parameters['dropout'].default, parameters['init'].default) == (0.5, 'orthonormal')
    readme = ' '.join((ROOT / 'README.md').read_text().split())  # lines joined
    assert "SqueezeNet's `dropout` 0.5" in readme and "`init` `'orthonormal'`" in readme


def test_the_flags_default_to_the_recipe():
    options = trainer.parse_args([])
    assert (options.epoch, options.batch, options.lr) == (RECIPE.epochs, RECIPE.batch, RECIPE.lr)


def test_the_readme_shows_the_recipe_table():
    assert markdown_table() in (ROOT / 'README.md').read_text()


def test_the_transforms_use_the_recipe():
    train, test = trainer.make_transforms('122')
    assert (train.sizes, train.crop, train.flip) == (
        RECIPE.train_resize,
        RECIPE.train_crop,
        RECIPE.flip,
    )
    assert test.size == RECIPE.test_size


def test_the_optimizer_is_the_recipe():
    import chainer.links as L
    import numpy as np

    link = L.Linear(2, 2)
    w = link.W.array.copy()
    optimizer = trainer.make_optimizer(link, lr=0.1, epochs=300)
    assert optimizer.momentum == RECIPE.momentum
    link.cleargrads()
    link.W.grad, link.b.grad = np.zeros_like(w), np.zeros(2, np.float32)
    optimizer.update()  # a zero gradient: only the weight decay moves W
    np.testing.assert_allclose(link.W.array, w * (1 - 0.1 * RECIPE.weight_decay), rtol=1e-6)
    for epoch, lr in ((149, 0.1), (150, 0.01), (225, 0.001)):
        optimizer.epoch = epoch
        optimizer.update()
        assert optimizer.lr == pytest.approx(lr)


def test_train_takes_keywords(tmp_path, cifar10_archive):
    log = trainer.train(
        SqueezeNet(10),
        save_path=str(tmp_path / 'run'),
        img_dir=str(tmp_path / 'img'),
        epoch=1,
        batch=20,
        preset='32',
        workers=0,
        data=str(cifar10_archive),  # the archive's path; a loaded set goes in cifar=
    )
    assert [entry['epoch'] for entry in log] == [1]


@pytest.mark.parametrize(
    'keywords, message',
    [
        ({'batch': 0}, 'argument -b/--batch: must be a positive integer'),
        ({'batch': 10, 'train_batch_divide': 3}, 'not divisible by -trb'),
        ({'seed': 2**32}, 'argument --seed: must be in 0..4294967295'),
        ({'preset': '64'}, "argument --preset: invalid choice '64'"),
        ({'epochs': 3}, "unknown training option 'epochs'"),
        ({'lr': '0.1'}, "argument -lr/--lr: must be a number, got '0.1'"),
        ({'epoch': 2.5}, 'argument -e/--epoch: must be an integer, got 2.5'),
        ({'model_options': [('init', 'he')]}, "model_options: a dict of the factory's keywords"),
    ],
)
def test_train_checks_its_keywords(keywords, message):
    with pytest.raises(trainer.OptionError, match=message):
        trainer.TrainOptions.make(None, **keywords)


def test_options_are_made_once_and_passed_down_as_they_are(monkeypatch):
    options = trainer.parse_args(['-e', '3'])
    checks = []
    monkeypatch.setattr(trainer.TrainOptions, 'check', lambda self: checks.append(self))
    assert trainer.TrainOptions.make(options) is options and checks == []
    assert trainer.TrainOptions.make(options, epoch=4).epoch == 4 and len(checks) == 1


def test_train_refuses_an_arch_that_does_not_build_the_model(tmp_path):
    import chainer.links as L

    with pytest.raises(trainer.OptionError, match='--arch: squeezenet does not build the model'):
        trainer.train(L.Linear(3, 10), arch='squeezenet', save_path=str(tmp_path))


def test_build_trainer_takes_a_recipe_variant(tmp_path, cifar10_archive):
    import chainer.links as L
    import numpy as np

    options = trainer.TrainOptions(save_path=str(tmp_path), batch=20, preset='32', workers=0)
    variant = dataclasses.replace(RECIPE, weight_decay=0.5, momentum=0.0)
    link = L.Linear(3, 10)
    built = trainer.build_trainer(
        link, options, trainer.load_cifar(path=cifar10_archive), recipe=variant
    )
    optimizer = built.updater.get_optimizer('main')
    assert optimizer.momentum == 0.0
    w = link.W.array.copy()
    optimizer.target.cleargrads()
    link.W.grad, link.b.grad = np.zeros_like(w), np.zeros(10, np.float32)
    optimizer.update()  # zero gradient: only the decay moves W, by lr * rate * W
    np.testing.assert_allclose(link.W.array, w * (1 - options.lr * 0.5), rtol=1e-6)
