"""Generic Chainer training for CIFAR-style image classifiers."""

import trainer.compat  # noqa: F401  (first: lets Chainer import on current stacks)
