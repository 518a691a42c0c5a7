"""Data-parallel training over MPI with ChainerMN: one process (rank) per GPU, any nodes.

Launched as ``mpiexec -n N python main.py ... --communicator NAME``, every rank builds the
same trainer on its own shard of the training set. ChainerMN's multi-node optimizer
broadcasts rank 0's weights at the first update and averages the gradients over the ranks
at every step, so all ranks keep identical weights and one step uses N x b images (``-b``
is per rank, ChainerMN's convention). Each rank evaluates its own shard of the test set
and the counts are summed over the ranks, so the accuracy is exact over the whole test
set. Only rank 0 writes files and prints.

chainermn and mpi4py are imported only when a communicator is asked for: they are the
optional extra ``make install-mpi``, and a plain run does not need them.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

import chainer

from trainer.errors import DeviceError

if TYPE_CHECKING:
    from chainer.training import Extension
    from chainermn import CommunicatorBase as Communicator
else:
    Communicator = Any  # chainermn is imported only when a communicator is asked for

COMMUNICATORS = ('naive', 'non_cuda_aware', 'pure_nccl')
"""The ChainerMN 7 communicators that can run here (flat reduces through MPI on GPU
memory, which the MPI of ``make install-mpi`` cannot do)."""
CPU_COMMUNICATORS = ('naive',)
"""The communicators that run on the CPU; the others need CUDA GPUs (pure_nccl: NCCL)."""
GPU_COMMUNICATORS = ('pure_nccl', 'non_cuda_aware')
"""The communicators for GPUs that never hand GPU memory to MPI (NCCL, or host copies):
the MPI wheels ``make install-mpi`` installs are not CUDA-aware, so naive and flat, which
reduce through MPI on the arrays where they are, cannot run on GPUs here."""
TRAINING = ('main/loss', 'main/accuracy')
"""The training figures of the log, averaged over the ranks."""


def create_communicator(name: str | None) -> Communicator | None:
    """The ChainerMN communicator ``name`` over all MPI processes; None for None (no MPI).

    Raises DeviceError with a one-line message when mpi4py or an MPI library is missing,
    or CuPy or NCCL for a GPU communicator.
    """
    if name is None:
        return None
    try:
        from mpi4py import MPI  # noqa: F401
    except ImportError:
        raise DeviceError(
            f'--communicator {name}: mpi4py is not installed; run `make install-mpi`'
        ) from None
    except RuntimeError:
        raise DeviceError(
            f'--communicator {name}: mpi4py cannot load an MPI library; run `make install-mpi`'
        ) from None
    import chainermn

    try:
        return chainermn.create_communicator(name)
    except RuntimeError as error:  # the GPU communicators without CuPy or NCCL
        raise DeviceError(
            f'--communicator {name}: {error} Install CuPy and NCCL on a machine with NVIDIA '
            'GPUs, or use naive on the CPU'
        ) from None


def is_root(comm: Communicator | None) -> bool:
    """True for the process that writes files and prints: rank 0, or the only process."""
    return comm is None or comm.rank == 0


def size(comm: Communicator | None) -> int:
    """Number of processes training together (1 without MPI)."""
    return 1 if comm is None else comm.size


def rank_seed(seed: int | None, comm: Communicator | None) -> int | None:
    """This rank's seed of shuffling and augmentation: ``seed + rank``, so that ranks differ.

    Rank 0 (and a run without MPI) keeps ``seed``; None stays None.
    """
    if seed is None:
        return None
    return seed if comm is None else (seed + comm.rank) % 2**32


def device_id(gpu: int, comm: Communicator | None, visible: int | None = None) -> int:
    """The GPU of this process: ``gpu`` without MPI; under MPI, -1 (CPU) or this rank's GPU.

    One rank per GPU: with ``-g`` 0 or more, each rank takes the GPU numbered by its rank on
    its node, among the GPUs it sees; a launcher that shows each process only its own GPU
    (``CUDA_VISIBLE_DEVICES`` per rank, as Slurm does) makes that GPU 0. ``visible`` is the
    number of GPUs this process sees (counted when None).
    """
    if comm is None or gpu < 0:
        return gpu
    visible = visible_gpus() if visible is None else visible
    if visible == 1:
        return 0
    if comm.intra_rank >= visible:
        raise DeviceError(
            f'rank {comm.rank} is process {comm.intra_rank} on its node but sees only '
            f'{visible} GPU(s): start at most one process per GPU'
        )
    return comm.intra_rank


def visible_gpus() -> int:
    """How many CUDA GPUs this process sees (0 without CuPy or a driver)."""
    from chainer.backends import cuda

    if not cuda.available:
        return 0
    try:
        return cuda.cupy.cuda.runtime.getDeviceCount()
    except cuda.cupy.cuda.runtime.CUDARuntimeError:
        return 0


def broadcast(value: Any, comm: Communicator | None) -> Any:
    """Rank 0's ``value`` on every rank (``value`` itself without MPI)."""
    if comm is None:
        return value
    return comm.bcast_obj(value if comm.rank == 0 else None, root=0)


def barrier(comm: Communicator | None) -> None:
    """Wait until every rank gets here (nothing to wait for without MPI)."""
    if comm is not None:
        comm.mpi_comm.Barrier()


def shard_train(dataset: Any, comm: Communicator | None, seed: int | None) -> Any:
    """This rank's part of the training set: a random permutation (``seed``) cut into N.

    The parts have equal lengths (one image may repeat), so that every rank makes the same
    number of steps an epoch; rank 0's dataset is the one scattered.
    """
    if comm is None:
        return dataset
    import chainermn

    return chainermn.scatter_dataset(dataset, comm, shuffle=True, seed=seed)


def shard_test(dataset: Any, comm: Communicator | None) -> Any:
    """This rank's part of the test set: consecutive, disjoint, together every image once."""
    if comm is None:
        return dataset
    import chainermn

    return chainermn.scatter_dataset(dataset, comm, force_equal_length=False)


def wrap_optimizer(optimizer: chainer.Optimizer, comm: Communicator | None) -> Any:
    """``optimizer``, averaging the gradients over the ranks before each update under MPI.

    Its first update only broadcasts rank 0's weights (whatever each rank built or
    loaded), so the ranks start identical and stay so.
    """
    if comm is None:
        return optimizer
    import chainermn

    return chainermn.create_multi_node_optimizer(optimizer, comm)


def average_persistents(model: chainer.Link, comm: Communicator) -> Extension:
    """An extension averaging BatchNormalization's running statistics over the ranks.

    Each rank's BN normalizes with its own batch while training (plain per-rank BN); the
    averaging before each evaluation makes the ranks' models, and so the evaluation and
    the saved ``model.npz``, the same. Unlike ChainerMN's AllreducePersistent, the arrays
    travel through host memory (one float64 buffer, one MPI all-reduce), so GPU runs work
    with an MPI that is not CUDA-aware.
    """
    from chainer.training import extension

    class AveragePersistents(extension.Extension):
        trigger = (1, 'epoch')
        priority = extension.PRIORITY_WRITER + 1  # before the evaluator

        def __call__(self, trainer=None) -> None:
            average_over_ranks(model, comm)

    return AveragePersistents()


def average_over_ranks(model: chainer.Link, comm: Communicator) -> None:
    """Replace every float persistent of ``model`` by its mean over the ranks (via the host)."""
    import numpy as np
    from mpi4py import MPI

    arrays = [
        (link, name)
        for _, link in sorted(model.namedlinks())
        for name in sorted(link._persistent)  # noqa: SLF001  (Chainer has no public list)
        if getattr(link.__dict__[name], 'dtype', None) is not None
        and link.__dict__[name].dtype.kind == 'f'
    ]
    if not arrays:
        return
    cpu = chainer.backend.CpuDevice()
    host = [np.asarray(cpu.send(link.__dict__[name]), dtype=np.float64) for link, name in arrays]
    buffer = np.concatenate([a.ravel() for a in host])
    comm.mpi_comm.Allreduce(MPI.IN_PLACE, buffer, op=MPI.SUM)
    buffer /= comm.size
    offset = 0
    for (link, name), old in zip(arrays, host, strict=True):
        value = buffer[offset : offset + old.size].reshape(old.shape)
        offset += old.size
        target = link.__dict__[name]
        device = chainer.backend.get_device_from_array(target)
        target[...] = device.send(value.astype(target.dtype))


def mean_over_ranks(
    postprocess: Callable[[dict], None], comm: Communicator | None, keys: Sequence[str] = TRAINING
) -> Callable[[dict], None]:
    """A LogReport ``postprocess`` that first averages the training figures over the ranks.

    Each rank's ``main/loss`` is the mean over its own shard's steps of the epoch; all ranks
    make the same number of steps of the same size, so the mean of the ranks' means is the
    mean over every image of the epoch (one collective an epoch, not one a step).
    """
    if comm is None:
        return postprocess

    def averaged(entry: dict) -> None:
        for key in keys:
            if key in entry:
                entry[key] = comm.allreduce_obj(float(entry[key])) / comm.size
        postprocess(entry)

    return averaged


@contextlib.contextmanager
def abort_on_error(comm: Communicator | None) -> Iterator[None]:
    """Under MPI, an exception on one rank ends every rank (MPI_Abort when Python exits).

    Otherwise the other ranks would wait forever in their next collective. The exception
    still propagates, so the caller reports it first.
    """
    try:
        yield
    except BaseException as error:
        if comm is not None and comm.size > 1:
            from mpi4py.run import set_abort_status

            set_abort_status(error)
        raise


@contextlib.contextmanager
def abort_all_on_error(communicator: str | None) -> Iterator[None]:
    """``abort_on_error`` before the communicator exists (loading the data, building the
    model): with ``--communicator`` under an mpiexec of several processes, an exception on
    one rank ends every rank instead of leaving them waiting in their first collective."""
    try:
        yield
    except BaseException as error:
        if communicator is not None:
            _abort_status(error)
        raise


def _abort_status(error: BaseException) -> None:
    """Have MPI abort every rank when this one exits, if mpi4py is there and has several."""
    try:
        from mpi4py import MPI
        from mpi4py.run import set_abort_status
    except ImportError:  # no MPI: nothing to end but this process (its error says so)
        return
    if MPI.COMM_WORLD.Get_size() > 1:
        set_abort_status(error)
