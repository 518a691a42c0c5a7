"""A MultiprocessIterator that turns a failing worker into one error instead of a hang.

When a transform raises inside one of Chainer's MultiprocessIterator workers, its prefetch
thread dies and ``next()`` waits forever. Here each example is fetched through a guard that
catches the exception in the worker and returns it as a ``WorkerFailure``; the iterator
raises it in the training process as a DataError naming the example and the cause.
"""

import chainer
from chainer import iterators

from trainer.errors import DataError


class WorkerFailure:
    """What a worker returns instead of an example whose transform raised."""

    def __init__(self, index: int, error: BaseException) -> None:
        self.index = index
        self.message = f'{type(error).__name__}: {error}'


class _Guarded(chainer.dataset.DatasetMixin):
    """``dataset``, but an exception while fetching example i becomes a WorkerFailure."""

    def __init__(self, dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def get_example(self, i: int):
        try:
            return self.dataset[i]
        except Exception as error:  # any failure: reported in the training process
            return WorkerFailure(i, error)


class GuardedMultiprocessIterator(iterators.MultiprocessIterator):
    """Chainer's MultiprocessIterator over ``dataset``; a failing transform raises DataError.

    Takes MultiprocessIterator's arguments. ``dataset`` is the unguarded dataset.
    """

    def __init__(self, dataset, batch_size: int, *args, **kwargs) -> None:
        super().__init__(_Guarded(dataset), batch_size, *args, **kwargs)

    def __next__(self):
        batch = super().__next__()
        for example in batch:
            if isinstance(example, WorkerFailure):
                raise DataError(
                    f'an augmentation worker failed on example {example.index}: {example.message}'
                )
        return batch

    next = __next__
