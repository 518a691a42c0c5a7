"""Assembles a chainer.training.Trainer from the pieces and runs it.

The epoch loop is Chainer's: ``AccumulatingUpdater`` does one SGD step per batch, the
extensions below do everything else, in this order at each epoch's end: the non-finite
guard, evaluation, the log, the plots, then the snapshots. The lr schedule is an
optimizer hook, like weight decay. Under MPI (``--communicator``, see trainer.distributed)
the same trainer runs on every rank, each on its shards of the data; only rank 0 writes.
"""

import argparse
import json
import logging
import random
import shutil
import zipfile
from pathlib import Path

import chainer
import chainer.links as L
import numpy as np
from chainer import iterators
from chainer.datasets import TransformDataset, TupleDataset
from chainer.training import extensions

from trainer import distributed
from trainer.datasets import Cifar, DataError, load_cifar
from trainer.devices import get_device
from trainer.evaluator import ClassificationEvaluator
from trainer.extensions import NonFiniteGuard, PlotLog, StartAt, WriteLog, log_extras
from trainer.predict import ModelFileError, load_weights
from trainer.schedules import StepSchedule, resolve_milestones
from trainer.transforms import make_transforms
from trainer.updaters import AccumulatingUpdater

logger = logging.getLogger(__name__)

# The recipe (DenseNet style): MomentumSGD, lr / 10 after 50 % and 75 % of the epochs.
MOMENTUM = 0.9
WEIGHT_DECAY = 1e-4
MILESTONES = (0.5, 0.75)
SNAPSHOT = 'snapshot_epoch_{.updater.epoch}'
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


def make_iterators(
    data: Cifar, options: argparse.Namespace, comm: distributed.Communicator | None = None
) -> tuple:
    """Train (shuffled, repeating) and test iterators over the transformed splits.

    Under MPI (``comm``), over this rank's shards of the splits.
    """
    seed = distributed.rank_seed(options.seed, comm)
    train_transform, test_transform = make_transforms(options.preset, seed)
    train = TupleDataset(data.train.images, data.train.labels)
    train = TransformDataset(distributed.shard_train(train, comm, options.seed), train_transform)
    test = TupleDataset(data.test.images, data.test.labels)
    test = TransformDataset(distributed.shard_test(test, comm), test_transform)
    if options.workers == 0:
        return (
            iterators.SerialIterator(train, options.batch),
            iterators.SerialIterator(test, options.batch, repeat=False, shuffle=False),
        )
    workers = options.workers
    return (
        iterators.MultiprocessIterator(train, options.batch, n_processes=workers),
        iterators.MultiprocessIterator(
            test, options.batch, repeat=False, shuffle=False, n_processes=workers
        ),
    )


def build_trainer(
    model: chainer.Link,
    options: argparse.Namespace,
    data: Cifar,
    comm: distributed.Communicator | None = None,
) -> chainer.training.Trainer:
    """A Trainer for ``model`` (images -> logits) with the recipe's optimizer and extensions.

    With ``comm``, one rank of a data-parallel run: gradients averaged over the ranks,
    evaluation summed over them, files written and reports printed by rank 0 only.
    """
    device = get_device(distributed.device_id(options.gpu, comm))
    device.use()
    classifier = L.Classifier(model)
    classifier.to_device(device)
    optimizer = chainer.optimizers.MomentumSGD(lr=options.lr, momentum=MOMENTUM)
    optimizer.setup(classifier)
    optimizer.add_hook(chainer.optimizer_hooks.WeightDecay(WEIGHT_DECAY))
    optimizer.add_hook(StepSchedule(options.lr, resolve_milestones(MILESTONES, options.epoch)))
    optimizer = distributed.wrap_optimizer(optimizer, comm)
    if options.load_model:
        load_weights(model, options.load_model)
    if options.load_optimizer:
        _load_optimizer(optimizer, options.load_optimizer)

    train_iter, test_iter = make_iterators(data, options, comm)
    updater = AccumulatingUpdater(
        train_iter, optimizer, divide=options.train_batch_divide, device=device
    )
    out = Path(options.save_path)
    trainer = chainer.training.Trainer(updater, (options.epoch, 'epoch'), out=str(out))

    root = distributed.is_root(comm)
    evaluator = ClassificationEvaluator(
        test_iter,
        model,
        data.label_names,
        divide=options.test_batch_divide,
        device=device,
        progress_bar=options.progress and root,
        comm=comm,
    )
    images_per_step = options.batch * distributed.size(comm)
    log = extensions.LogReport(
        filename=None,
        log_name=None,
        postprocess=distributed.mean_over_ranks(
            log_extras(optimizer, images_per_step, lambda: evaluator.confusion), comm
        ),
    )
    trainer.extend(NonFiniteGuard())
    if comm is not None:
        trainer.extend(distributed.average_persistents(model, comm))
    trainer.extend(evaluator)
    trainer.extend(log)
    if root:
        trainer.extend(WriteLog(out / 'log.json'))
        trainer.extend(PlotLog(options.img_dir))
    # Every rank resumes from the newest snapshot; only rank 0 writes them.
    snapshot = extensions.snapshot(
        filename=SNAPSHOT, n_retains=options.keep, autoload=True, condition=lambda: root
    )
    trainer.extend(snapshot)
    if root:
        trainer.extend(extensions.snapshot_object(model, 'model.npz'))
        trainer.extend(extensions.snapshot_object(optimizer, 'optimizer.npz'))
        trainer.extend(extensions.PrintReport(PRINTED))
    if options.progress and root:
        trainer.extend(extensions.ProgressBar(update_interval=10))

    if latest_snapshot(out) is None and options.start_epoch > 1:
        trainer.extend(StartAt(options.start_epoch - 1))
        if options.load_log:
            log.log.extend(_read_log(options.load_log, options.start_epoch))
    return trainer


def train(model: chainer.Link, options: argparse.Namespace, data: Cifar | None = None) -> list:
    """Train ``model`` as ``options`` say (see trainer.cli) and return the log entries.

    Resumes from the newest snapshot in ``options.save_path`` when there is one. The
    shuffling and augmentation follow ``options.seed``; see ``set_seed`` for the weights.
    With ``options.communicator``, this process is one rank of a data-parallel run under
    mpiexec (see trainer.distributed); every rank returns the log that rank 0 writes (but
    for its own timings).
    """
    comm = distributed.create_communicator(options.communicator)
    with distributed.abort_on_error(comm):
        set_seed(distributed.rank_seed(options.seed, comm))
        if data is None:
            data = load_cifar(options.dataset, options.data)
        out = Path(options.save_path)
        if distributed.is_root(comm):
            out.mkdir(parents=True, exist_ok=True)
            _remove_stale_temporaries(out)
            latest = latest_snapshot(out)
            if latest is not None:
                logger.info('resuming from %s', out / latest)
        distributed.barrier(comm)  # the other ranks look for snapshots in out
        trainer = build_trainer(model, options, data, comm)
        trainer.run()
    return trainer.get_extension('LogReport').log


def set_seed(seed: int | None) -> None:
    """Seed Python's and NumPy's generators (initialization, shuffling); None does nothing.

    Call it before building the model, so that its initial weights follow the seed too.
    """
    if seed is not None:
        random.seed(seed)
        np.random.seed(seed)


def latest_snapshot(out: Path) -> str | None:
    """Name of the newest snapshot in ``out``, or None."""
    return extensions._snapshot._find_latest_snapshot(SNAPSHOT, str(out))


def _load_optimizer(optimizer: chainer.Optimizer, path: str) -> None:
    """Load an ``optimizer.npz`` (-o); a file of another kind is one ModelFileError line."""
    try:
        chainer.serializers.load_npz(path, optimizer)
    except (KeyError, ValueError, OSError, zipfile.BadZipFile) as error:
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


def _remove_stale_temporaries(out: Path) -> None:
    """Remove temporary folders that a run killed while writing left behind."""
    prefixes = ('tmpsnapshot_epoch_', 'tmpmodel.npz', 'tmpoptimizer.npz')
    for path in out.iterdir():
        if path.is_dir() and path.name.startswith(prefixes):
            shutil.rmtree(path, ignore_errors=True)
