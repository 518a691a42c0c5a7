"""The training step: StandardUpdater plus gradient accumulation and step timing."""

import time

import chainer
from chainer import reporter
from chainer.training import updaters

from trainer import signals
from trainer.precision import loss_scale


class AccumulatingUpdater(updaters.StandardUpdater):
    """Splits each batch into ``divide`` sub-batches and accumulates their gradients.

    The loss of each sub-batch is scaled by ``1 / divide``, so one update equals the
    full-batch update for nets without batch statistics (BatchNormalization sees the
    sub-batch): a way to train the recipe's batch on a small GPU. The reported values
    are averaged over the sub-batches. At each epoch's end it reports
    ``train/images_per_sec``: the images of the epoch over the wall time from its first
    step's start to its last step's end, the device synchronized (waits for data included).
    Everything else is StandardUpdater's contract: ``converter``, ``device`` and
    ``input_device``, ``loss_func`` (default: the optimizer's target), ``loss_scale``.

    Args:
        iterator: the training iterator.
        optimizer: the optimizer, set up on a link whose call returns the loss.
        divide: number of sub-batches (1: a plain StandardUpdater step).
        **kwargs: StandardUpdater's other arguments (device, converter, loss_func, ...).
    """

    def __init__(self, iterator, optimizer, divide: int = 1, **kwargs) -> None:
        super().__init__(iterator, optimizer, **kwargs)
        self.divide = divide
        self._epoch_start = None
        self._epoch_images = 0

    def update_core(self) -> None:
        signals.safe_point()  # Ctrl-C, SIGTERM: between steps, never inside a kernel
        if self._epoch_start is None:
            self._epoch_start, self._epoch_images = time.perf_counter(), 0
        iterator = self._iterators['main']
        batch = iterator.next()
        optimizer = self._optimizers['main']
        loss_func = self.loss_func or optimizer.target
        if len(batch) % self.divide:
            raise ValueError(f'batch of {len(batch)} does not split into {self.divide} parts')
        size = len(batch) // self.divide
        optimizer.target.cleargrads()
        totals = {}
        for start in range(0, len(batch), size):
            in_arrays = self.converter(batch[start : start + size], self.input_device)
            observation = {}
            with reporter.report_scope(observation):
                if isinstance(in_arrays, tuple):
                    loss = loss_func(*in_arrays)
                elif isinstance(in_arrays, dict):
                    loss = loss_func(**in_arrays)
                else:
                    loss = loss_func(in_arrays)
            scale = self.loss_scale or loss_scale(optimizer)  # issue 27: --mixed16's dynamic
            (loss / self.divide).backward(loss_scale=scale)
            for key, value in observation.items():
                value = value.array if isinstance(value, chainer.Variable) else value
                totals[key] = totals.get(key, 0) + value
            del loss
        reporter.report({key: value / self.divide for key, value in totals.items()})
        optimizer.update()
        self._epoch_images += len(batch)
        if self.auto_new_epoch and iterator.is_new_epoch:
            optimizer.new_epoch(auto=True)
        if iterator.is_new_epoch:
            if self.device is not None and hasattr(self.device, 'device'):
                self.device.device.synchronize()  # a GPU: its queued work counts too
            seconds = time.perf_counter() - self._epoch_start
            reporter.report({'train/images_per_sec': self._epoch_images / seconds})
            self._epoch_start = None
