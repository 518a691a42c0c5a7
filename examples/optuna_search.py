"""Tune the learning rate and weight decay with Optuna, pruning poor trials after each epoch.

    python examples/optuna_search.py --trials 8 --epochs 3 --preset 32 -p runs/optuna [--data PATH]

Each trial trains the recipe (``trainer.build_trainer``) for a few epochs in a run folder
of its own (``-p``/trial_N: run.json is not written, the snapshots, model.npz and log.json
are) with a sampled lr and weight decay, and reports the accuracy on a held-out validation
split of the training set (``--val-size``, default 10 %: ``val/main/accuracy``) after every
epoch to Optuna through Chainer's pruning extension; the median pruner stops a trial whose
accuracy falls below the median of the earlier trials at the same epoch. The test set is
never what the search chooses on, unless ``--val-size 0 --select-on-test`` asks for it
(``validation/main/accuracy``). A trial whose loss diverges (the trainer's NaN guard)
counts as pruned. Prints the best trial as JSON.

Needs the extras (``make install-extras``): optuna 5 and optuna-integration 4.9, the last
release with ``ChainerPruningExtension`` (5.0 removed it).
"""

import argparse
import dataclasses
import json
import sys
import warnings
from pathlib import Path

import trainer  # first: it lets Chainer import on current stacks
from trainer import registry
from trainer.extras import require
from trainer.recipe import RECIPE

KEY = 'val/main/accuracy'  # what the trials maximize and the pruner watches: the held-out split
TEST_KEY = 'validation/main/accuracy'  # the test set's, only with --select-on-test
VAL_SIZE = 0.1  # the fraction of the training set held out by default
LR = (0.01, 0.3)  # sampled log-uniformly
WEIGHT_DECAY = (1e-5, 1e-3)  # sampled log-uniformly


def choice_key(options: trainer.TrainOptions) -> str:
    """The key the search chooses on: the validation split's accuracy when the options hold
    one out, else the test set's with ``select_on_test``, else OptionError (one line)."""
    if options.val_size:
        return KEY
    if options.select_on_test:
        return TEST_KEY
    raise trainer.OptionError(
        'argument --val-size: the search needs a validation split to choose on (e.g. '
        '--val-size 0.1); give --select-on-test to choose on the test set instead'
    )


def objective(trial, options: trainer.TrainOptions, data: trainer.Cifar) -> float:
    """Train one trial and return its last accuracy on ``choice_key`` (TrialPruned if pruned)."""
    key = choice_key(options)
    optuna = require('optuna', 'the Optuna search')
    integration = require('optuna_integration', 'the Optuna search', 'optuna-integration')
    lr = trial.suggest_float('lr', *LR, log=True)
    recipe = dataclasses.replace(
        RECIPE, weight_decay=trial.suggest_float('weight_decay', *WEIGHT_DECAY, log=True)
    )
    options = trainer.TrainOptions.make(
        options,
        lr=lr,
        save_path=str(Path(options.save_path) / f'trial_{trial.number}'),
        img_dir=str(Path(options.save_path) / f'trial_{trial.number}' / 'img'),
    )
    trainer.set_seed(options.seed)
    arch = options.arch or registry.DEFAULT_ARCH
    model = registry.build(arch, data.n_classes, **options.model_options)
    run = trainer.build_trainer(model, options, data, recipe=recipe)
    with warnings.catch_warnings():
        # optuna-integration 4.9 marks the extension deprecated (removed in 5.0); it works.
        warnings.simplefilter('ignore', FutureWarning)
        pruning = integration.ChainerPruningExtension(trial, key, (1, 'epoch'))
    # after SaveEpoch (priority -1000): a pruned trial keeps the files of its last epoch
    run.extend(pruning, priority=-1001)
    try:
        run.run(show_loop_exception_msg=False)
    except trainer.NonFiniteLossError as error:
        raise optuna.TrialPruned(str(error)) from None
    return run.get_extension('LogReport').log[-1][key]


def search(
    options: trainer.TrainOptions,
    trials: int,
    data: trainer.Cifar | None = None,
    pruner=None,
    seed: int = 0,
):
    """Run ``trials`` trials of ``options`` (each in ``options.save_path``/trial_N).

    Returns the ``optuna.Study``. A folder holding earlier trials is refused (their files
    would be overwritten), and so are options without a validation split
    (``options.val_size``) unless ``options.select_on_test`` (``choice_key``). ``pruner``
    defaults to a median pruner that waits for two finished trials and one epoch.
    """
    optuna = require('optuna', 'the Optuna search')
    choice_key(options)
    root = Path(options.save_path)
    if any(root.glob('trial_*')):
        raise trainer.OptionError(
            f'argument -p/--save_path: {root} holds the trials of an earlier search; give '
            'another folder'
        )
    if data is None:
        data = trainer.load_dataset(options.dataset, options.data, options.skip_bad_images)
    study = optuna.create_study(
        direction='maximize',
        sampler=optuna.samplers.TPESampler(seed=seed),
        pruner=pruner or optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=1),
    )
    study.optimize(lambda trial: objective(trial, options, data), n_trials=trials)
    return study


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--trials', type=int, default=8, help='trials to run')
    parser.add_argument('--epochs', type=int, default=3, help='epochs per trial')
    parser.add_argument('--preset', default='32', help="'32' (quick) or '122' (the recipe)")
    parser.add_argument('-b', '--batch', type=int, default=RECIPE.batch, help='batch size')
    parser.add_argument('-p', '--save_path', default='runs/optuna', help='folder of the trials')
    parser.add_argument('--data', help='local CIFAR archive or folder (else downloaded)')
    parser.add_argument('--dataset', default='cifar10', help='cifar10 or cifar100')
    parser.add_argument('--arch', default=registry.DEFAULT_ARCH, help='architecture')
    parser.add_argument('-g', '--gpu', type=int, default=-1, help='GPU id, -1 for the CPU')
    parser.add_argument('--workers', type=int, default=0, help='augmentation processes')
    parser.add_argument('--seed', type=int, default=0, help='seeds the sampler and each trial')
    parser.add_argument(
        '--val-size',
        default=VAL_SIZE,
        help='training images held out to choose on: a count or a fraction (0: none)',
    )
    parser.add_argument(
        '--select-on-test',
        action='store_true',
        help='with --val-size 0: choose on the test set (its accuracy is then optimistic)',
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        optuna = require('optuna', 'the Optuna search')
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        options = trainer.TrainOptions.make(
            epoch=args.epochs,
            batch=args.batch,
            preset=args.preset,
            save_path=args.save_path,
            data=args.data,
            dataset=args.dataset,
            arch=args.arch,
            gpu=args.gpu,
            workers=args.workers,
            seed=args.seed,
            val_size=args.val_size,
            select_on_test=args.select_on_test,
        )
        study = search(options, args.trials, seed=args.seed)
    except trainer.UserError as error:
        print(f'error: {error}', file=sys.stderr)
        return 1
    states = [trial.state.name for trial in study.trials]
    best = study.best_trial if 'COMPLETE' in states else None
    print(
        json.dumps(
            {
                'best': None
                if best is None
                else {
                    'number': best.number,
                    'accuracy': best.value,
                    'chosen_on': choice_key(options),
                    **best.params,
                },
                'trials': {state: states.count(state) for state in sorted(set(states))},
            },
            indent=1,
        )
    )
    return 0


if __name__ == '__main__':
    sys.exit(main())
