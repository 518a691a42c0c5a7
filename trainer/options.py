"""The options of one training run: defaults from the recipe, every value checked.

``train(model, epoch=3, batch=32, ...)`` and the command line (``trainer.cli``, which
converts its Namespace here once) build the same ``TrainOptions``, once, at the edge; the
trainer passes it down as it is. A bad value is an ``OptionError`` naming the flag, which
the parser prints as its own one-line error. The model's own options (``model_options``)
are an opaque mapping: the trainer records them and hands them to the model's factory.
"""

from __future__ import annotations

import dataclasses
import numbers
import os
from dataclasses import dataclass, field

from trainer import recipes, validators
from trainer.datasets import DATASETS
from trainer.distributed import COMMUNICATORS, CPU_COMMUNICATORS, GPU_COMMUNICATORS
from trainer.errors import OptionError
from trainer.holdout import check_size
from trainer.recipe import RECIPE
from trainer.stopping import StoppingError, check_choice_key, mode_of
from trainer.transforms import PRESETS


def default_workers() -> int:
    """Augmentation processes: one per core but the training process's, 1 to 16."""
    return max(1, min((os.cpu_count() or 1) - 1, 16))


@dataclass
class TrainOptions:
    """Everything a training run is told. Field names are the command line's destinations.

    The recipe's knobs (``epoch``, ``batch``, ``lr``) default to ``trainer.recipe.RECIPE``.
    ``arch`` names the model's factory (``trainer.registry``; None: the model's own class),
    ``model_options`` the keywords it was called with (the flags given for them), which the
    run records so that resume, predict, serve and export rebuild the same model.
    ``val_size`` holds images out of the training set as the validation split (a count, or
    a fraction; ``trainer.holdout``), drawn with ``val_seed``; choosing on the test set
    (early stopping on a ``validation/`` key) needs ``select_on_test``. ``init_from`` is a
    trained model to fine-tune (``trainer.finetune``).
    """

    save_path: str = './'
    epoch: int = RECIPE.epochs
    batch: int = RECIPE.batch
    gpu: int = -1
    start_epoch: int = 1
    train_batch_divide: int = 1
    test_batch_divide: int = 1
    eval_batch: int | None = None
    lr: float = RECIPE.lr
    load_model: str | None = None
    load_optimizer: str | None = None
    load_log: str | None = None
    data: str | None = None
    dataset: str = 'cifar10'
    skip_bad_images: bool = False
    preset: str = '122'
    seed: int | None = None
    img_dir: str | None = None
    workers: int = field(default_factory=default_workers)
    keep: int = 3
    communicator: str | None = None
    progress: bool = False
    arch: str | None = None
    model_options: dict = field(default_factory=dict)
    tf32: bool = True
    tensorboard: str | None = None
    early_stopping: str | None = None
    patience: int = 10
    val_size: int | float = 0
    val_seed: int = 0
    select_on_test: bool = False
    init_from: str | None = None
    # issue 27: the tricks of trainer.recipes, each None = the --recipe's value (all off)
    recipe: str = 'reference'
    label_smoothing: float | None = None
    schedule: str | None = None
    warmup: float | None = None
    clip_grad: float | None = None
    ema_decay: float | None = None
    tta: bool | None = None
    cutout: float | None = None
    mixup: float | None = None
    cutmix: float | None = None
    mixed16: bool = False

    def __post_init__(self) -> None:
        self.check()

    @classmethod
    def make(cls, options: object | None = None, **overrides) -> TrainOptions:
        """Options from a TrainOptions, an argparse Namespace or None, then ``overrides``.

        A TrainOptions without overrides is returned as it is (it was checked when made).
        """
        if isinstance(options, TrainOptions) and not overrides:
            return options
        if options is None:
            values = {}
        elif isinstance(options, TrainOptions):
            values = dataclasses.asdict(options)
        else:
            names = {f.name for f in dataclasses.fields(cls)}
            values = {k: v for k, v in vars(options).items() if k in names}
        unknown = sorted(overrides.keys() - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            raise OptionError(f'unknown training option {unknown[0]!r}')
        return cls(**{**values, **overrides})

    def check(self) -> None:
        """Raise OptionError for the first unusable value (flag named, value shown)."""
        for name, (flag, check) in _FIELD_CHECKS.items():
            value = getattr(self, name)
            if value is None:
                continue
            try:
                _check_typed(check, value)
            except ValueError as error:
                raise OptionError(f'argument {flag}: {error}') from None
        for name, flag, choices in (
            ('dataset', '--dataset', sorted(DATASETS)),
            ('preset', '--preset', PRESETS),
            ('communicator', '--communicator', (None, *COMMUNICATORS)),
        ):
            if getattr(self, name) not in choices:
                raise OptionError(
                    f'argument {flag}: invalid choice {getattr(self, name)!r} (choose from '
                    f'{", ".join(str(c) for c in choices if c is not None)})'
                )
        if not isinstance(self.model_options, dict):
            raise OptionError(
                f"model_options: a dict of the factory's keywords, not {self.model_options!r}"
            )
        if self.batch % self.train_batch_divide:
            raise OptionError(
                f'argument -b/--batch: {self.batch} is not divisible by '
                f'-trb/--train_batch_divide {self.train_batch_divide}'
            )
        if self.gpu < -1:
            raise OptionError(f'argument -g/--gpu: must be -1 (CPU) or a GPU id, got {self.gpu}')
        if self.communicator not in (None, *CPU_COMMUNICATORS) and self.gpu < 0:
            raise OptionError(
                f'argument --communicator: {self.communicator} needs GPUs (-g 0); on the CPU '
                'use naive'
            )
        if self.communicator not in (None, *GPU_COMMUNICATORS) and self.gpu >= 0:
            raise OptionError(
                f'argument --communicator: {self.communicator} would hand GPU memory to MPI, '
                'which is not CUDA-aware here; on GPUs use pure_nccl (or non_cuda_aware)'
            )
        if self.start_epoch > self.epoch:
            raise OptionError(
                f'argument -s/--start_epoch: {self.start_epoch} is past -e {self.epoch}'
            )
        if self.start_epoch > 1 and self.load_model is None:
            raise OptionError(
                f'argument -s/--start_epoch: -s {self.start_epoch} continues from weights: '
                'give them with -m model.npz (and -o optimizer.npz, -l log.json if you have them)'
            )
        try:
            self.val_size = check_size(self.val_size)
        except ValueError as error:
            raise OptionError(f'argument --val-size: {error}') from None
        if self.early_stopping is not None:
            try:
                mode_of(self.early_stopping)
                check_choice_key(self.early_stopping, bool(self.val_size), self.select_on_test)
            except StoppingError as error:
                raise OptionError(f'argument {error}') from None
        if self.init_from is not None and self.load_model is not None:
            raise OptionError(
                'argument --init-from: give either --init-from (fine-tune: the matching '
                'weights, a new head) or -m/--load_model (continue the same model), not both'
            )
        recipes.check_options(self)  # issue 27

    @property
    def tricks(self) -> recipes.Tricks:
        """The tricks of this run: the ``--recipe`` preset with the flags given put in."""
        return recipes.resolve(self.recipe, **{n: getattr(self, n) for n in recipes.TRICKS})

    @property
    def plot_dir(self) -> str:
        """Where the plots go: ``--img-dir``, else ``img`` inside the run folder."""
        return self.img_dir if self.img_dir is not None else os.path.join(self.save_path, 'img')

    @property
    def test_batch(self) -> int:
        """Images per evaluation batch: ``--eval-batch``, else ``-b``."""
        return self.eval_batch or self.batch


def _check_typed(check, value) -> None:
    """``check`` (a ``trainer.validators`` check) on a typed value: a number, not its text."""
    number = numbers.Real if check is validators.positive_float else numbers.Integral
    if isinstance(value, bool) or not isinstance(value, number):
        wanted = 'a number' if number is numbers.Real else 'an integer'
        raise ValueError(f'must be {wanted}, got {value!r}')
    check(value)


_FIELD_CHECKS = {
    'epoch': ('-e/--epoch', validators.positive),
    'batch': ('-b/--batch', validators.positive),
    'gpu': ('-g/--gpu', validators.integer),
    'start_epoch': ('-s/--start_epoch', validators.positive),
    'train_batch_divide': ('-trb/--train_batch_divide', validators.positive),
    'test_batch_divide': ('-teb/--test_batch_divide', validators.positive),
    'eval_batch': ('--eval-batch', validators.positive),
    'lr': ('-lr/--lr', validators.positive_float),
    'seed': ('--seed', validators.seed),
    'workers': ('--workers', validators.non_negative),
    'keep': ('--keep', validators.positive),
    'patience': ('--patience', validators.positive),
    'val_seed': ('--val-seed', validators.seed),
}
