"""Assembles a chainer.training.Trainer from the pieces and runs it in a run folder.

The epoch loop is Chainer's: ``AccumulatingUpdater`` does one SGD step per batch and the
extensions do the rest, at each epoch's end in this order: the non-finite guard,
evaluation, the log, then ``SaveEpoch`` (the snapshot, then model.npz, optimizer.npz,
log.json and the plots from it). The lr schedule is an optimizer hook, like weight decay.
The run folder's format and its guarantees are ``trainer.run_folder``'s. Under MPI
(``--communicator``, see trainer.distributed) the same trainer runs on every rank, each on
its shards of the data; only rank 0 writes.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import logging
import random
import sys
from pathlib import Path

import chainer
import numpy as np
from chainer import iterators
from chainer.datasets import TransformDataset, TupleDataset
from chainer.training import extensions

from trainer import devices, distributed, finetune, plots, registry
from trainer import tricks as tricks_lib
from trainer.chainerui import chainerui_files
from trainer.datasets import Cifar, load_dataset
from trainer.devices import get_device
from trainer.environment import environment
from trainer.errors import DataError
from trainer.evaluator import ClassificationEvaluator
from trainer.extensions import NonFiniteGuard, PlainText, StartAt, log_extras
from trainer.holdout import HeldOut, hold_out
from trainer.iterators import GuardedMultiprocessIterator
from trainer.options import OptionError, TrainOptions
from trainer.recipe import RECIPE, Recipe
from trainer.run_folder import (
    FORMAT,
    ModelFileError,
    RunFolder,
    SaveEpoch,
    load_snapshot,
    load_weights,
    read_npz,
)
from trainer.schedules import StepSchedule, resolve_milestones
from trainer.stopping import EarlyStopping, make_early_stopping
from trainer.tensorboard import TensorBoardReport
from trainer.transforms import (
    DeviceNormalize,
    EpochOrder,
    SeededTransformDataset,
    make_transforms,
)
from trainer.updaters import AccumulatingUpdater

logger = logging.getLogger(__name__)

PRINTED = [
    'epoch',
    'main/loss',
    'validation/main/loss',
    'main/accuracy',
    'validation/main/accuracy',
    'lr',
    'train/images_per_sec',
    'elapsed_time',
]


def printed_keys(has_val: bool) -> list[str]:
    """The columns printed each epoch: ``PRINTED``, with the held-out split's loss and
    accuracy before the test set's when there is one."""
    if not has_val:
        return list(PRINTED)
    split = {
        'validation/main/loss': 'val/main/loss',
        'validation/main/accuracy': 'val/main/accuracy',
    }
    return [key for test in PRINTED for key in ([split[test], test] if test in split else [test])]


def make_optimizer(
    model: chainer.Link, lr: float, epochs: int, recipe: Recipe = RECIPE
) -> chainer.Optimizer:
    """The recipe's optimizer on ``model``: MomentumSGD, weight decay, the step schedule.

    The milestones are the recipe's fractions of ``epochs`` (lr / 10 after 50 % and 75 %).
    """
    optimizer = chainer.optimizers.MomentumSGD(lr=lr, momentum=recipe.momentum)
    optimizer.setup(model)
    optimizer.add_hook(chainer.optimizer_hooks.WeightDecay(recipe.weight_decay))
    milestones = resolve_milestones(recipe.milestones, epochs)
    optimizer.add_hook(StepSchedule(lr, milestones, recipe.lr_divisor))
    return optimizer


def make_iterators(
    data: Cifar,
    options: TrainOptions,
    comm: distributed.Communicator | None = None,
    normalize: bool = True,
    held: HeldOut | None = None,
) -> tuple:
    """Train (shuffled, repeating) and test iterators over the transformed splits.

    Under MPI (``comm``), over this rank's shards of the splits. With ``normalize=False``
    the images stay uint8, for ``DeviceNormalize`` on the GPU. ``--workers`` processes
    prepare the training batches; the test iterator, busy only while evaluating, gets half
    as many, so that together they do not crowd the cores the training process needs.
    The training images are those the validation split (``held``, default: the one of
    ``options.val_size``) leaves; ``make_val_iterator`` iterates over the held-out ones.
    """
    if held is None:
        held = hold_out(data.train, options.val_size, options.val_seed)
    seed = distributed.rank_seed(options.seed, comm)
    train_transform, test_transform = make_transforms(options.preset, seed, normalize)
    train = held.train_part(TupleDataset(data.train.images, data.train.labels))
    # each image augmented from (seed, epoch, index): any --workers gives the same run
    train = SeededTransformDataset(
        distributed.shard_train(train, comm, options.seed), train_transform, seed
    )
    order = EpochOrder(len(train), seed)
    test = TupleDataset(data.test.images, data.test.labels)
    test = TransformDataset(distributed.shard_test(test, comm), test_transform)
    if options.workers == 0:
        train_iter = iterators.SerialIterator(train, options.batch, order_sampler=order)
    else:
        train_iter = GuardedMultiprocessIterator(
            train, options.batch, n_processes=options.workers, order_sampler=order
        )
    return train_iter, _eval_iterator(test, options)


def make_val_iterator(
    data: Cifar,
    options: TrainOptions,
    comm: distributed.Communicator | None = None,
    normalize: bool = True,
    held: HeldOut | None = None,
):
    """An iterator over the held-out validation split, test-transformed; None without one.

    ``held`` defaults to the split of ``options.val_size`` and ``options.val_seed``.
    """
    if held is None:
        held = hold_out(data.train, options.val_size, options.val_seed)
    if not len(held):
        return None
    test_transform = make_transforms(options.preset, options.seed, normalize)[1]
    val = held.val_part(TupleDataset(data.train.images, data.train.labels))
    return _eval_iterator(
        TransformDataset(distributed.shard_test(val, comm), test_transform), options
    )


def _eval_iterator(dataset, options: TrainOptions):
    """One pass over ``dataset`` in order; in ``--workers // 2`` processes (at least 1)."""
    if options.workers == 0:
        return iterators.SerialIterator(dataset, options.test_batch, repeat=False, shuffle=False)
    return GuardedMultiprocessIterator(
        dataset,
        options.test_batch,
        repeat=False,
        shuffle=False,
        n_processes=max(1, options.workers // 2),
    )


def build_trainer(
    model: chainer.Link,
    options: TrainOptions,
    data: Cifar,
    comm: distributed.Communicator | None = None,
    folder: RunFolder | None = None,
    recipe: Recipe = RECIPE,
) -> chainer.training.Trainer:
    """A Trainer for ``model`` (images -> logits) with the recipe's optimizer and extensions.

    ``recipe`` gives the optimizer's momentum, weight decay and schedule (the lr is
    ``options.lr``): ``dataclasses.replace(RECIPE, weight_decay=5e-4)`` makes a variant.
    ``folder`` (default: the run folder of ``options``) receives each finished epoch. With
    ``comm``, one rank of a data-parallel run: gradients averaged over the ranks, evaluation
    summed over them, files written and reports printed by rank 0 only. With
    ``options.val_size``, the held-out split is evaluated too (``val/...``); with
    ``options.init_from``, the model starts from that file's matching weights (logged).
    """
    options = TrainOptions.make(options)  # as it is when already made
    folder = folder or RunFolder(options.save_path, options.plot_dir, plots.draw)
    if distributed.is_root(comm):
        folder.path.mkdir(parents=True, exist_ok=True)
    device = get_device(distributed.device_id(options.gpu, comm))
    device.use()
    devices.configure(device, options.tf32)
    on_gpu = device.xp is not np
    # on a GPU, uint8 images cross the bus and are normalized there
    converter = DeviceNormalize() if on_gpu else chainer.dataset.concat_examples
    tricks = options.tricks  # issue 27: --recipe and its flags (trainer.tricks)
    classifier = tricks_lib.classifier(model, tricks)
    classifier.to_device(device)
    optimizer = make_optimizer(classifier, options.lr, options.epoch, recipe)
    steps = len(data.train) / distributed.size(comm) / options.batch  # updates per epoch
    tricks_lib.tune_optimizer(
        optimizer, tricks, options.lr, options.epoch, steps, recipe.weight_decay
    )  # issue 27
    optimizer = distributed.wrap_optimizer(optimizer, comm)
    if options.load_model:
        load_weights(model, options.load_model)
    if options.init_from:
        loaded = finetune.init_from(model, options.init_from, data.n_classes)
        for line in loaded.lines(data.n_classes) if distributed.is_root(comm) else []:
            logger.info('%s', line)
    if options.load_optimizer:
        _load_optimizer(optimizer, options.load_optimizer)
    converter = tricks_lib.mixed16(model, optimizer, converter, options.mixed16)  # issue 27

    held = hold_out(data.train, options.val_size, options.val_seed)
    train_iter, test_iter = make_iterators(data, options, comm, not on_gpu, held)
    val_iter = make_val_iterator(data, options, comm, not on_gpu, held)
    updater = AccumulatingUpdater(
        train_iter,
        optimizer,
        divide=options.train_batch_divide,
        device=device,
        converter=tricks_lib.train_converter(
            converter, tricks, data.n_classes, options.seed
        ),  # issue 27
    )
    stop = (
        make_early_stopping(options.early_stopping, options.patience, options.epoch)
        if options.early_stopping
        else (options.epoch, 'epoch')
    )
    trainer = chainer.training.Trainer(updater, stop, out=str(folder.path))

    root = distributed.is_root(comm)

    def evaluator_of(iterator, prefix: str) -> ClassificationEvaluator:
        return ClassificationEvaluator(
            iterator,
            tricks_lib.evaluated(model, tricks),  # issue 27: --tta
            data.label_names,
            divide=options.test_batch_divide,
            device=device,
            progress_bar=options.progress and root,
            comm=comm,
            converter=converter,
            prefix=prefix,
        )

    evaluator = evaluator_of(test_iter, 'validation')  # the test set, under its old keys
    log = extensions.LogReport(
        filename=None,
        log_name=None,
        postprocess=distributed.mean_over_ranks(
            log_extras(distributed.size(comm), lambda: evaluator.confusion), comm
        ),
    )
    trainer.extend(NonFiniteGuard())
    trainer.extend(extensions.observe_lr())
    if comm is not None:
        trainer.extend(distributed.average_persistents(model, comm))
    if val_iter is not None:
        trainer.extend(evaluator_of(val_iter, 'val'), name='val')
    trainer.extend(evaluator)
    tricks_lib.extend(trainer, model, tricks, evaluator)  # issue 27: --ema-decay
    trainer.extend(log)
    if root:
        trainer.extend(SaveEpoch(folder, options.keep))
        out = sys.stdout if options.progress else PlainText(sys.stdout)  # no ESC[J when piped
        trainer.extend(extensions.PrintReport(printed_keys(val_iter is not None), out=out))
    if root and options.tensorboard is not None:
        trainer.extend(TensorBoardReport(options.tensorboard or folder.path / 'tensorboard'))
    if options.progress and root:
        trainer.extend(extensions.ProgressBar(update_interval=10))
    if options.start_epoch > 1:
        trainer.extend(StartAt(options.start_epoch - 1))
        if options.load_log:
            log.log.extend(_read_log(options.load_log, options.start_epoch))
    return trainer


def train(
    model: chainer.Link,
    options: TrainOptions | object | None = None,
    cifar: Cifar | None = None,
    *,
    command: list[str] | None = None,
    **overrides,
) -> list[dict]:
    """Train ``model`` in a run folder and return the log entries.

    ``options`` is a ``TrainOptions`` (or an argparse Namespace of the same flags, or None);
    keywords override its fields: ``train(model, save_path='run', epoch=30, preset='32')``.
    ``options.arch`` names the factory that built ``model`` with ``options.model_options``
    (both recorded in ``run.json``, for resume, predict, serve and export); None means the
    model's own class, called with the class count.
    ``cifar`` is an already loaded data set (else ``options.data`` is read). ``command`` is
    the command line that started the run, recorded with the session in ``run.json``.
    A folder that holds a snapshot is resumed from its newest one that loads, with the
    same settings (``run.json``), and ``epoch`` may grow; see ``trainer.run_folder``.
    The shuffling and augmentation follow ``options.seed``; see ``set_seed`` for the
    weights. With ``options.communicator``, this process is one rank of a data-parallel run
    under mpiexec (see trainer.distributed); every rank returns the log that rank 0 writes
    (but for its own timings). Raises a ``trainer.UserError`` with one line for anything
    the user can fix.
    """
    options = TrainOptions.make(options, **overrides)
    arch = _arch(model, options)
    comm = distributed.create_communicator(options.communicator)
    with distributed.abort_on_error(comm):
        get_device(distributed.device_id(options.gpu, comm))  # usable? (one line if not)
        set_seed(distributed.rank_seed(options.seed, comm))
        data = (
            cifar
            if cifar is not None
            else load_dataset(options.dataset, options.data, options.skip_bad_images)
        )
        _check_batch(options, data, comm)
        if options.init_from:  # a file that does not fit is refused before run.json is written
            finetune.plan(model, options.init_from, data.n_classes)
        root = distributed.is_root(comm)
        folder = RunFolder(options.save_path, options.plot_dir if root else None, plots.draw)
        with folder.open() if root else contextlib.nullcontext():
            done, arrays, log = _open_run(folder, arch, options, data, comm, command, model)
            if done == options.epoch:
                logger.info(
                    'nothing to do: %s already holds the %d epochs of -e %d',
                    folder.path,
                    done,
                    options.epoch,
                )
                return log
            # a resume's weights are the snapshot's: --init-from served the first epoch
            session = TrainOptions.make(options, init_from=None) if done else options
            trainer = build_trainer(model, session, data, comm, folder)
            if done:
                load_snapshot(trainer, arrays, folder.path / f'snapshot_epoch_{done}')
                stop = trainer.stop_trigger
                if isinstance(stop, EarlyStopping) and stop.resume(
                    trainer.get_extension('LogReport').log, trainer.updater.iteration
                ):
                    logger.info(
                        'nothing to do: %s stopped early after epoch %d (%s did not improve '
                        'for %d epochs)',
                        folder.path,
                        done,
                        stop.monitor,
                        stop.patience,
                    )
                    return log
                if root:
                    logger.info('resuming %s after epoch %d', folder.path, done)
            trainer.run(show_loop_exception_msg=False)  # the CLI prints one line
    return trainer.get_extension('LogReport').log


def _open_run(
    folder: RunFolder, arch: str, options: TrainOptions, data: Cifar, comm, command=None, model=None
) -> tuple[int, dict | None, list | None]:
    """Check the run folder against these settings; return (finished epochs, the newest
    snapshot's arrays, its log). Rank 0 decides and writes; the other ranks follow.

    Nothing is written before the newest snapshot that loads is found and its weights fit
    ``model``; then this session is added to run.json and the views (model.npz, log.json,
    plots) are written again from that snapshot.
    """
    root = distributed.is_root(comm)
    settings = run_settings(arch, options, data, comm)
    newest, record = None, None
    if root:
        record = folder.read_record()
        folder.check_settings(record, settings)
        newest = folder.newest_snapshot(model, data.n_classes)
    done = distributed.broadcast(newest[0] if newest else 0, comm)
    if done and options.start_epoch > 1:
        raise OptionError(
            f'argument -s/--start_epoch: {folder.path} already holds a run (epoch {done}); '
            '-s starts a new run from -m in an empty -p'
        )
    if done > options.epoch:
        raise OptionError(
            f'argument -e/--epoch: {folder.path} holds {done} trained epochs, more than '
            f'-e {options.epoch}; give -e {done} or more (or another -p for a new run)'
        )
    log = None
    if root:
        folder.write_record(_record(record, settings, options, comm, command))
        if newest:
            log = folder.publish(newest[1])
        chainerui_files(folder.path)  # ChainerUI's `log` (-> log.json) and `args`
    if not done:
        return 0, None, []
    arrays = newest[1] if root else _snapshot_of(folder, done)
    return done, arrays, distributed.broadcast(log, comm)


def set_seed(seed: int | None) -> None:
    """Seed Python's, NumPy's and (when a GPU is used) CuPy's generators; None does nothing.

    Call it before building the model, so that its initial weights follow the seed too.
    The augmentation has generators of its own, seeded from ``--seed`` by the transforms.
    """
    if seed is None:
        return
    from chainer.backends import cuda

    random.seed(seed)
    np.random.seed(seed)
    if cuda.available:
        cuda.cupy.random.seed(seed)


def run_settings(
    arch: str,
    options: TrainOptions,
    data: Cifar,
    comm: distributed.Communicator | None = None,
) -> dict:
    """What defines this run (``run_folder.DEFINING``), the model's construction included.

    ``arch`` is what ``run.json`` records for the model's factory (``registry.record_name``).
    The validation split is recorded by its size and, with one, by ``HeldOut.record``
    (rule, seed, SHA-256 of the held-out indices); ``--init-from`` by the file's path and
    SHA-256. ``train_images`` stays the whole training split of the data set.
    """
    held = hold_out(data.train, options.val_size, options.val_seed)
    settings = {
        'arch': arch,
        'model_options': {k: v for k, v in options.model_options.items() if v is not None},
        'n_classes': data.n_classes,
        'class_names': list(data.label_names),  # what predict, serve and export name
        'label_names': list(data.label_names),
        'normalization': {'per_image': True, 'eps': RECIPE.norm_eps},
        'dataset': options.dataset,
        'train_images': len(data.train),
        'test_images': len(data.test),
        'preset': options.preset,
        'batch': options.batch,
        'train_batch_divide': options.train_batch_divide,
        'lr': options.lr,
        'seed': options.seed,
        'processes': distributed.size(comm),
        'val_size': len(held),
        'tricks': tricks_lib.settings(options.tricks),  # issue 27
    }
    if len(held):
        settings['val_split'] = held.record()
    if options.init_from:
        settings['init_from'] = finetune.file_record(options.init_from)
    return settings


def _arch(model: chainer.Link, options: TrainOptions) -> str:
    """What ``run.json`` records as the model's factory: ``options.arch``, importably.

    Without ``options.arch``, the model's own class (by its registered name if it has one).
    An ``options.arch`` that names a class ``model`` is not an instance of is refused.
    """
    if options.arch is None:
        cls = type(model)
        return registry.name_of(cls) or f'{cls.__module__}:{cls.__qualname__}'
    if not registry.builds(options.arch, model):
        cls = type(model)
        raise OptionError(
            f'argument --arch: {options.arch} does not build the model given, a '
            f'{cls.__module__}.{cls.__qualname__}; give the arch that does (or none)'
        )
    return registry.record_name(options.arch)


def _record(
    old: dict | None, settings: dict, options: TrainOptions, comm, command: list[str] | None
) -> dict:
    """``run.json``: the settings, the epochs asked for, and this session appended."""
    session = {
        'started': datetime.datetime.now(datetime.UTC).isoformat(timespec='seconds'),
        'argv': command,
        'options': {**vars(options), 'arch': settings['arch']},
        'environment': environment(distributed.device_id(options.gpu, comm)),
    }
    sessions = (old or {}).get('sessions', [])
    return {
        'format': FORMAT,
        'settings': settings,
        'epochs': options.epoch,
        'sessions': [*sessions, session],
    }


def _snapshot_of(folder: RunFolder, epoch: int) -> dict:
    """The arrays of the snapshot rank 0 chose (other ranks read the same file)."""
    return read_npz(folder.path / f'snapshot_epoch_{epoch}', 'a snapshot')


def _check_batch(options: TrainOptions, data: Cifar, comm) -> None:
    held = hold_out(data.train, options.val_size, options.val_seed)
    per_rank = held.n_train // distributed.size(comm)
    if options.batch > per_rank:
        where = 'the training set' if comm is None else "each process's share of the training set"
        raise OptionError(
            f'argument -b/--batch: {options.batch} is more than {where} ({per_rank} images)'
        )


def _load_optimizer(optimizer: chainer.Optimizer, path: str) -> None:
    """Load an ``optimizer.npz`` (-o); a file of another kind is one ModelFileError line."""
    arrays = read_npz(path, 'optimizer.npz')
    try:
        chainer.serializers.NpzDeserializer(arrays).load(optimizer)
    except (KeyError, ValueError) as error:
        raise ModelFileError(
            f'{path}: not an optimizer state of this model (optimizer.npz): {error}'
        ) from None


def _read_log(path: str, start_epoch: int) -> list[dict]:
    """The entries of a ``log.json`` (-l) before ``start_epoch``; DataError if unreadable."""
    try:
        entries = json.loads(Path(path).read_text())
        return [e for e in entries if e.get('epoch', 0) < start_epoch]
    except (ValueError, OSError, AttributeError, TypeError) as error:
        raise DataError(f'{path}: not a log.json of this trainer ({error})') from None
