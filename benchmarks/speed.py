"""Throughput and memory of training, evaluation and augmentation (SqueezeNet, or any
``--arch``); one JSON object.

    python -m benchmarks.speed [-g 0] [--batch 64] [--size 122] [--repeat 5] [--steps 5] [--plain]
    python -m benchmarks.speed --torch --torch-python /path/to/venv-with-torch/bin/python
    python -m benchmarks.speed --compile-cost     # also the kernels' first-call compile cost

Each figure is measured with the trainer's own pieces on synthetic data, so that it is the
cost of the code and not of the disk: the training step is ``AccumulatingUpdater.update()``
on ``L.Classifier`` of the model (``--arch``, SqueezeNet by default) with the recipe's
optimizer (``make_optimizer``: MomentumSGD, weight decay, schedule); evaluation is
``ClassificationEvaluator.evaluate()`` (test mode, no backprop); augmentation is the '122'
train transform over uint8 32x32 images, through a ``MultiprocessIterator`` and in a single
process. On a GPU the batches stay on it, as the PyTorch peer's do. Every figure is timed
``--repeat`` times over ``--steps`` batches after ``--warmup`` untimed ones, and reported as
the median with min, max and quartiles. The model takes its CPU fast path unless ``--plain``.
``--torch`` runs the architecture's PyTorch peer script (same network:
``benchmarks/torch_squeezenet.py``, ``torch_resnet.py``, ``torch_vgg.py``) in another
interpreter, so the project never imports torch, once with NCHW tensors and once
``channels_last``, and reports the training and evaluation ratios against both.
``environment`` names the OpenBLAS kernel in use and the ``OPENBLAS_CORETYPE`` /
``OPENBLAS_L2_SIZE`` variables it was chosen under
(the figures hold for that kernel: run again with both unset to see the other).
"""

import argparse
import ctypes
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import chainer_compat  # noqa: F401  (first: lets Chainer import on current stacks)

# isort: split
import chainer
import chainer.links as L
import numpy as np
from chainer import iterators
from chainer.datasets import TransformDataset, TupleDataset

from inference import ChainerForward
from trainer import registry, validators
from trainer.devices import DeviceError, get_device
from trainer.environment import cpu_name, cupy_version, git_commit
from trainer.evaluator import ClassificationEvaluator
from trainer.options import default_workers
from trainer.recipe import RECIPE
from trainer.training import make_optimizer
from trainer.transforms import make_transforms
from trainer.updaters import AccumulatingUpdater

N_CLASSES = 10
_HERE = Path(__file__).resolve().parent
TORCH_PEERS = {
    'squeezenet': _HERE / 'torch_squeezenet.py',
    'resnet20': _HERE / 'torch_resnet.py',
    'examples.resnet:resnet20': _HERE / 'torch_resnet.py',  # the same, by import path
    'vgg': _HERE / 'torch_vgg.py',
    'examples.train_vgg:VGG': _HERE / 'torch_vgg.py',
}
"""The PyTorch peer script of each architecture that has one (``--torch``)."""
TORCH_FORMATS = ('nchw', 'channels_last')
OPENBLAS_VARIABLES = ('OPENBLAS_CORETYPE', 'OPENBLAS_L2_SIZE', 'OPENBLAS_NUM_THREADS')


def summarize(values: list[float]) -> dict:
    """Median, min, max and quartiles of repeated measurements (and the values themselves)."""
    q1, q3 = np.percentile(values, [25, 75])
    return {
        'median': statistics.median(values),
        'min': min(values),
        'max': max(values),
        'q1': float(q1),
        'q3': float(q3),
        'runs': list(values),
    }


def synchronize(device: chainer.backend.Device) -> None:
    """Wait for the GPU's queued work (nothing on the CPU), so that the clock reads true."""
    if device.xp is not np:
        device.device.synchronize()


def throughput(
    step: Callable[[], None],
    images_per_step: int,
    steps: int,
    repeat: int,
    warmup: int,
    device: chainer.backend.Device,
) -> dict:
    """Images per second of ``step``: ``warmup`` untimed calls, then ``repeat`` timed runs."""
    for _ in range(warmup):
        step()
    rates = []
    for _ in range(repeat):
        synchronize(device)
        start = time.perf_counter()
        for _ in range(steps):
            step()
        synchronize(device)
        rates.append(images_per_step * steps / (time.perf_counter() - start))
    return summarize(rates)


class _Tiled(chainer.dataset.DatasetMixin):
    """``length`` examples cycling through ``base``: many batches from the memory of one."""

    def __init__(self, base, length: int) -> None:
        self.base, self.length = base, length

    def __len__(self) -> int:
        return self.length

    def get_example(self, i: int):
        return self.base[i % len(self.base)]


def _images(n: int, size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` float32 images like the transforms' output (mean 0, std 1) and int32 labels."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 3, size, size), dtype=np.float32)
    return x, rng.integers(0, N_CLASSES, n).astype(np.int32)


def build_model(arch: str = registry.DEFAULT_ARCH, fast: bool = True) -> chainer.Link:
    """A 10-class model of ``arch``, on its CPU fast path unless ``fast`` is False."""
    return registry.build(arch, N_CLASSES, **registry.accepted_options(arch, {'fast': fast}))


def recipe(
    device: chainer.backend.Device, fast: bool = True, arch: str = registry.DEFAULT_ARCH
) -> chainer.Optimizer:
    """The trainer's optimizer (``make_optimizer``: MomentumSGD, weight decay, schedule) on
    ``L.Classifier`` of the model; the benchmark stays in epoch 0 of the recipe's 300."""
    model = L.Classifier(build_model(arch, fast))
    model.to_device(device)
    return make_optimizer(model, RECIPE.lr, RECIPE.epochs)


def resident(device: chainer.backend.Device, arrays: tuple) -> dict:
    """On a GPU, a converter handing out ``arrays`` already on it, as the PyTorch peer keeps
    its batch there (the step is then timed without the host-to-device copy)."""
    if device.xp is np:
        return {}
    on_device = device.send(arrays)
    return {'converter': lambda batch, device=None: on_device}


def bench_train(
    device: chainer.backend.Device,
    batch: int,
    size: int,
    steps: int,
    repeat: int,
    warmup: int,
    fast: bool = True,
    arch: str = registry.DEFAULT_ARCH,
) -> dict:
    """Training images/s: forward, backward and the SGD update, as the Trainer runs them."""
    optimizer = recipe(device, fast, arch)
    images = _images(batch, size, seed=0)
    updater = AccumulatingUpdater(
        iterators.SerialIterator(TupleDataset(*images), batch),
        optimizer,
        device=device,
        **resident(device, images),
    )
    reporter = chainer.Reporter()
    reporter.add_observer('main', optimizer.target)

    def step() -> None:
        with reporter.scope({}):
            updater.update()

    result = {'images_per_sec': throughput(step, batch, steps, repeat, warmup, device)}
    result['step_ms_median'] = 1000 * batch / result['images_per_sec']['median']
    return result


class PhaseTimer(chainer.FunctionHook):
    """Seconds per function type and phase (forward, backward), outermost calls only.

    A backward pass runs further functions (a convolution's gradient is a deconvolution and
    a ``Convolution2DGradW``); their time is counted once, in the backward of the function
    being differentiated, so the table adds up to the time spent inside functions.
    """

    name = 'PhaseTimer'

    def __init__(self, device: chainer.backend.Device) -> None:
        self.device = device
        self.seconds: dict[tuple[str, str], float] = {}
        self.calls: dict[tuple[str, str], int] = {}
        self._stack: list[tuple[str, str, float] | None] = []

    def _push(self, function, in_data: tuple, phase: str) -> None:
        if self._stack:
            self._stack.append(None)
            return
        synchronize(self.device)
        self._stack.append((self.label(function, in_data), phase, time.perf_counter()))

    def _pop(self) -> None:
        entry = self._stack.pop()
        if entry is None:
            return
        synchronize(self.device)
        name, phase, start = entry
        self.seconds[name, phase] = self.seconds.get((name, phase), 0.0)
        self.seconds[name, phase] += time.perf_counter() - start
        self.calls[name, phase] = self.calls.get((name, phase), 0) + 1

    @staticmethod
    def label(function, in_data: tuple) -> str:
        """The function's type; for convolutions with the kernel size, which sets their cost.

        The fast path's ``ConvolutionsNHWC`` names each of its convolutions ('1x1+3x3' for
        a Fire module's two expands written into one output).
        """
        name = function._impl_name
        if name == 'Convolution2DFunction':
            kh, kw = in_data[1].shape[2:]
            name = f'{name} {kh}x{kw}'
        elif name == 'ConvolutionsNHWC':
            weights = [in_data[w] for _, w, _ in function.positions()]
            name += ' ' + '+'.join(f'{w.shape[2]}x{w.shape[3]}' for w in weights)
        return name

    def forward_preprocess(self, function, in_data) -> None:
        self._push(function, in_data, 'forward')

    def forward_postprocess(self, function, in_data) -> None:
        self._pop()

    def backward_preprocess(self, function, in_data, out_grad) -> None:
        self._push(function, in_data, 'backward')

    def backward_postprocess(self, function, in_data, out_grad) -> None:
        self._pop()


def profile_train(
    device: chainer.backend.Device,
    batch: int,
    size: int,
    steps: int,
    warmup: int,
    fast: bool = True,
    arch: str = registry.DEFAULT_ARCH,
) -> dict:
    """Where a training step's time goes: per phase, and per function type and phase (ms).

    The step is the updater's, split at its phase boundaries: the batch conversion, the
    forward pass with the loss, the backward pass, and the optimizer's update (weight decay,
    momentum). ``PhaseTimer`` and Chainer's ``TimerHook`` (whose total is a cross-check)
    watch the functions; the rest of a phase is Python between the functions.
    """
    optimizer = recipe(device, fast, arch)
    model = optimizer.target
    batch_data = list(TupleDataset(*_images(batch, size, seed=0)))
    phases = dict.fromkeys(('convert', 'forward', 'backward', 'update'), 0.0)

    def step(clock: dict | None) -> None:
        marks = [time.perf_counter()]
        x, t = chainer.dataset.concat_examples(batch_data, device)
        marks.append(time.perf_counter())
        model.cleargrads()
        loss = model(x, t)
        synchronize(device)
        marks.append(time.perf_counter())
        loss.backward()
        synchronize(device)
        marks.append(time.perf_counter())
        optimizer.update()
        synchronize(device)
        marks.append(time.perf_counter())
        if clock is not None:
            for name, start, stop in zip(clock, marks, marks[1:], strict=False):
                clock[name] += stop - start

    for _ in range(warmup):
        step(None)
    functions, timer = PhaseTimer(device), chainer.function_hooks.TimerHook()
    with functions, timer:
        for _ in range(steps):
            step(phases)
    rows = {}
    for (name, phase), seconds in functions.seconds.items():
        row = rows.setdefault(name, {'function': name, 'forward_ms': 0.0, 'backward_ms': 0.0})
        row[f'{phase}_ms'] = 1000 * seconds / steps
        row[f'{phase}_calls'] = functions.calls[name, phase] // steps
    table = sorted(rows.values(), key=lambda r: -(r['forward_ms'] + r['backward_ms']))
    return {
        'steps': steps,
        'phases_ms': {name: 1000 * seconds / steps for name, seconds in phases.items()},
        'functions_ms': 1000 * sum(functions.seconds.values()) / steps,
        'timer_hook_total_ms': 1000 * timer.total_time() / steps,
        'functions': table,
    }


def bench_eval(
    device: chainer.backend.Device,
    batch: int,
    size: int,
    steps: int,
    repeat: int,
    warmup: int,
    fast: bool = True,
    arch: str = registry.DEFAULT_ARCH,
) -> dict:
    """Evaluation images/s: ``ClassificationEvaluator`` over ``steps`` batches per run."""
    model = build_model(arch, fast)
    model.to_device(device)
    x, t = _images(batch, size, seed=1)
    data = _Tiled(TupleDataset(x, t), batch * steps)
    test_iter = iterators.SerialIterator(data, batch, repeat=False, shuffle=False)
    names = [str(i) for i in range(N_CLASSES)]
    evaluator = ClassificationEvaluator(
        test_iter, model, names, device=device, **resident(device, (x, t))
    )
    reporter = chainer.Reporter()

    def evaluate() -> None:
        with reporter.scope({}):
            evaluator.evaluate()

    with chainer.using_config('train', False), chainer.no_backprop_mode():
        x = device.send(x)
        for _ in range(warmup):
            model(x)
    rates = throughput(evaluate, batch * steps, 1, repeat, 0, device)
    return {'images_per_sec': rates}


def bench_latency(
    device: chainer.backend.Device,
    batches: list[int],
    size: int,
    repeat: int,
    fast: bool = True,
    arch: str = registry.DEFAULT_ARCH,
) -> dict:
    """Milliseconds of one forward pass as ``predict`` and ``serve`` run it
    (``inference.ChainerForward``: test mode, no graph, the weights held still, logits back
    as NumPy), per batch size: the median of ``repeat`` passes after two untimed."""
    forward = ChainerForward(build_model(arch, fast), device)
    out = {}
    for n in batches:
        x = _images(n, size, seed=2)[0]
        for _ in range(2):
            forward(x)
        times = []
        for _ in range(repeat):
            start = time.perf_counter()
            forward(x)
            times.append(1000 * (time.perf_counter() - start))
        out[str(n)] = summarize(times)
    return out


def bench_augment(batch: int, steps: int, repeat: int, warmup: int, workers: int) -> dict:
    """Images/s of the '122' train transform, with ``workers`` processes and with none."""
    cpu = chainer.get_device('@numpy')
    rng = np.random.default_rng(2)
    images = rng.integers(0, 256, (8 * batch, 3, 32, 32), dtype=np.uint8)
    labels = rng.integers(0, N_CLASSES, 8 * batch).astype(np.int32)
    data = TransformDataset(TupleDataset(images, labels), make_transforms('122', seed=0)[0])
    serial = iterators.SerialIterator(data, batch)
    result = {
        'workers': workers,
        'single_process': throughput(serial.next, batch, steps, repeat, warmup, cpu),
        'multiprocess': None,
    }
    if workers > 0:
        parallel = iterators.MultiprocessIterator(data, batch, n_processes=workers)
        try:
            # One more warm-up batch than asked: the first one waits for the workers to start.
            rates = throughput(parallel.next, batch, steps, repeat, warmup + 1, cpu)
        finally:
            parallel.finalize()
        result['multiprocess'] = rates
    return result


def _max_rss_mib(who: int) -> float:
    """Max RSS of this process (RUSAGE_SELF) or of its largest finished child, in MiB."""
    rss = resource.getrusage(who).ru_maxrss  # KiB on Linux, bytes on macOS
    return rss / 2**20 if sys.platform == 'darwin' else rss / 2**10


def peak_memory(device: chainer.backend.Device) -> dict:
    """Max RSS of this process so far, and on GPU the bytes CuPy's memory pool holds.

    The pool keeps every block it ever allocated (until freed by hand), so its total is the
    peak of the device memory the benchmark needed.
    """
    memory = {
        'max_rss_mib': _max_rss_mib(resource.RUSAGE_SELF),
        'gpu_pool_total_mib': None,
        'gpu_pool_used_mib': None,
    }
    if device.xp is not np:
        pool = device.xp.get_default_memory_pool()
        memory['gpu_pool_total_mib'] = pool.total_bytes() / 2**20
        memory['gpu_pool_used_mib'] = pool.used_bytes() / 2**20
    return memory


def _openblas_call(name: str, restype=ctypes.c_int):
    """Call ``openblas_<name>`` (any of its symbol prefixes and suffixes) in the OpenBLAS
    that NumPy loaded (Linux); None where it cannot be found."""
    try:
        with open('/proc/self/maps') as maps:
            paths = {line.split()[-1] for line in maps if 'openblas' in line.lower()}
    except OSError:
        return None
    symbols = [
        f'{prefix}openblas_{name}{suffix}' for prefix in ('', 'scipy_') for suffix in ('64_', '')
    ]
    for path in sorted(paths):
        library = ctypes.CDLL(path)
        for symbol in symbols:
            if hasattr(library, symbol):
                function = getattr(library, symbol)
                function.restype = restype
                return function()
    return None


def blas_threads() -> int | None:
    """Threads of the OpenBLAS that NumPy loaded (Linux), or None where that cannot be read."""
    threads = _openblas_call('get_num_threads')
    return None if threads is None else int(threads)


def blas_kernel() -> str | None:
    """The CPU kernel OpenBLAS runs (``openblas_get_corename``: 'Haswell', 'SkylakeX', ...).

    ``OPENBLAS_CORETYPE`` overrides the detected CPU, so this is what the GEMMs ran on.
    """
    name = _openblas_call('get_corename', ctypes.c_char_p)
    return None if name is None else name.decode()


def fast_path_environment() -> dict:
    """The fast path's threading: Numba's layer and threads (``layers.runtime`` sets them,
    here before Numba starts, as the model's first step would), and oneDNN's version where
    its convolutions run (``layers.onednn``), with its threads (oneTBB's)."""
    from layers import onednn, runtime

    runtime.configure()
    import numba

    return {
        'numba': numba.__version__,
        'threading_layer': numba.config.THREADING_LAYER,
        'numba_threads': numba.get_num_threads(),
        'threads_wanted': runtime.thread_count(),
        'onednn': onednn.version(),
        'onednn_threads': onednn.threads(),
    }


def environment(device: chainer.backend.Device) -> dict:
    """Versions, CPU and thread counts, and the device: what the figures depend on."""
    cuda = chainer.backends.cuda
    env = {
        'python': platform.python_version(),
        'chainer': chainer.__version__,
        'numpy': np.__version__,
        'cupy': cupy_version(),
        'platform': platform.platform(),
        'cpu': cpu_name(),
        'git_commit': git_commit(),
        'cpu_count': os.cpu_count(),
        'cpu_affinity': len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else None,
        'blas': np.show_config(mode='dicts')['Build Dependencies']['blas'].get('name'),
        'blas_threads': blas_threads(),
        'blas_kernel': blas_kernel(),
        # as set for this run (absent: unset); OPENBLAS_CORETYPE picks blas_kernel
        'openblas_env': {name: os.environ.get(name) for name in OPENBLAS_VARIABLES},
        'thread_env': {
            name: os.environ[name]
            for name in ('OMP_NUM_THREADS', 'OPENBLAS_NUM_THREADS', 'MKL_NUM_THREADS')
            if name in os.environ
        },
        'fast_path': fast_path_environment(),
        'device': 'cpu',
        'cudnn': None,
    }
    if device.xp is not np:
        properties = cuda.cupy.cuda.runtime.getDeviceProperties(device.device.id)
        env['device'] = f'cuda:{device.device.id} {properties["name"].decode()}'
        env['cudnn'] = bool(cuda.cudnn_enabled and chainer.should_use_cudnn('>=auto'))
    return env


class TorchError(RuntimeError):
    """The PyTorch peer measurement could not run; the message says why."""


def bench_torch(
    python: str,
    script: Path,
    batch: int,
    size: int,
    eval_size: int,
    steps: int,
    gpu: int,
    memory_format: str = 'nchw',
    latency: list[int] | None = None,
) -> dict:
    """Run the PyTorch peer script in ``python`` (a venv with torch) and parse its JSON line.

    Adds ``max_rss_mib``, the children's max RSS so far: the largest peer run's.
    """
    command = [python, str(script), '--size', str(size), '--batch', str(batch)]
    command += ['--eval-size', str(eval_size), '--memory-format', memory_format]
    command += ['--steps', str(steps), '--device', 'cpu' if gpu < 0 else f'cuda:{gpu}']
    if latency:
        command += ['--latency-batches', ','.join(map(str, latency))]
    try:
        done = subprocess.run(command, capture_output=True, text=True, check=False)
    except OSError as error:
        raise TorchError(f'cannot run {python}: {error}') from None
    lines = [line for line in done.stdout.splitlines() if line.startswith('{')]
    if done.returncode != 0 or not lines:
        tail = (done.stderr.strip().splitlines() or ['no output'])[-1]
        raise TorchError(f'{script.name} failed (exit {done.returncode}): {tail}')
    try:
        peer = json.loads(lines[-1])
        float(peer['train_img_per_s'])
    except (ValueError, KeyError, TypeError):
        raise TorchError(f'{script.name} printed no train_img_per_s: {lines[-1][:200]}') from None
    peer['max_rss_mib'] = _max_rss_mib(resource.RUSAGE_CHILDREN)
    return peer


def run(options: argparse.Namespace) -> dict:
    """All the measurements that ``options`` ask for, as one JSON-ready dict."""
    device = get_device(options.gpu)
    device.use()
    settings = {
        key: getattr(options, key)
        for key in ('gpu', 'batch', 'size', 'eval_size', 'steps', 'repeat', 'warmup', 'workers')
    }
    settings['fast'] = not options.plain
    settings['arch'] = options.arch
    result = {'settings': settings, 'environment': environment(device)}
    peers = {}
    # The peers run first: a broken --torch-python fails before the long part, and as the
    # only finished children yet their max RSS is the children's max RSS.
    if options.torch:
        for memory_format in TORCH_FORMATS:
            peers[memory_format] = bench_torch(
                options.torch_python,
                options.torch_script,
                options.batch,
                options.size,
                options.eval_size,
                options.steps * options.repeat,
                options.gpu,
                memory_format,
                options.latency,
            )
    fast = not options.plain
    timing = (options.steps, options.repeat, options.warmup)
    arch = options.arch
    result['train'] = bench_train(device, options.batch, options.size, *timing, fast, arch)
    result['memory'] = {'after_train': peak_memory(device)}
    result['eval'] = bench_eval(device, options.batch, options.eval_size, *timing, fast, arch)
    result['augment'] = bench_augment(options.batch, *timing, options.workers)
    if options.latency:
        result['latency_ms'] = bench_latency(
            device, options.latency, options.eval_size, options.steps * options.repeat, fast, arch
        )
    if options.profile:
        result['profile'] = profile_train(
            device, options.batch, options.size, options.steps, options.warmup, fast, arch
        )
    result['memory']['end'] = peak_memory(device)
    if peers:
        result['torch'] = torch_ratios(result, peers)
    if options.compile_cost:
        result['compile'] = compile_cost()
    return result


def torch_ratios(result: dict, peers: dict) -> dict:
    """Each peer run with this run's train and eval ratios to it (>1: the project is faster)."""
    out = {}
    for memory_format, peer in peers.items():
        train = result['train']['images_per_sec']['median'] / peer['train_img_per_s']
        entry = {**peer, 'ratio_train': train, 'ratio_eval': None}
        if peer.get('eval_img_per_s'):
            entry['ratio_eval'] = result['eval']['images_per_sec']['median'] / float(
                peer['eval_img_per_s']
            )
        if peer.get('latency_ms') and 'latency_ms' in result:
            entry['ratio_latency'] = {
                n: float(ms) / result['latency_ms'][n]['median']
                for n, ms in peer['latency_ms'].items()
                if n in result['latency_ms']
            }
        out[memory_format] = entry
    return out


_COMPILE_PROBE = """
import time
start = time.perf_counter()
from squeeze_net import SqueezeNet  # first: its shim lets Chainer import on NumPy 2
import chainer, chainer.functions as F, numpy as np
imported = time.perf_counter()
model = SqueezeNet(10)
x = np.zeros((2, 3, 32, 32), np.float32)
with chainer.using_config('train', True):
    F.sum(model(x)).backward()
with chainer.using_config('train', False):
    model(x)
print(imported - start, time.perf_counter() - imported)
"""


def compile_cost() -> dict:
    """Seconds of the fast path's first training and test step in a fresh process: with an
    empty Numba cache (every kernel compiled) and again with the cache that run wrote.

    Both runs use a temporary ``NUMBA_CACHE_DIR``, so the project's own cache is untouched.
    """
    runs = {}
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, 'NUMBA_CACHE_DIR': cache}
        for name in ('first_call', 'cached'):
            done = subprocess.run(
                [sys.executable, '-c', _COMPILE_PROBE],
                capture_output=True,
                text=True,
                env=env,
                check=True,
            )
            imported, step = (float(v) for v in done.stdout.split())
            runs[name] = {'import_s': imported, 'first_step_s': step}
    return runs


_positive = validators.argtype(validators.positive)
_non_negative = validators.argtype(validators.non_negative)


def _batches(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(',') if v.strip()]
    except ValueError:
        values = []
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(
            f'must be positive batch sizes like 1,4,16,64, got {text!r}'
        )
    return values


def build_parser() -> argparse.ArgumentParser:
    """The benchmark's flags (defaults: the 122 px recipe on the CPU)."""
    parser = argparse.ArgumentParser(
        prog='python -m benchmarks.speed',
        description='Benchmark SqueezeNet training, evaluation and augmentation; print JSON.',
    )
    parser.add_argument('-g', '--gpu', type=int, default=-1, help='GPU id, -1 for the CPU')
    parser.add_argument(
        '--arch',
        default=registry.DEFAULT_ARCH,
        help='the model: a registered name or package.module:Factory (see main.py --help); '
        'PyTorch peers: squeezenet, resnet20, vgg',
    )
    parser.add_argument('--batch', type=_positive, default=RECIPE.batch, help='batch size')
    parser.add_argument(
        '--size', type=_positive, default=RECIPE.train_crop, help='training image side'
    )
    parser.add_argument(
        '--eval-size', type=_positive, default=RECIPE.test_size, help='test image side'
    )
    parser.add_argument('--repeat', type=_positive, default=5, help='timed repetitions')
    parser.add_argument('--steps', type=_positive, default=5, help='batches per repetition')
    parser.add_argument('--warmup', type=_non_negative, default=2, help='untimed batches first')
    parser.add_argument(
        '--workers',
        type=_non_negative,
        default=default_workers(),
        help='augmentation processes of the MultiprocessIterator (0: single process only)',
    )
    parser.add_argument(
        '--latency',
        type=_batches,
        default=[],
        metavar='N,N,...',
        help='also time one test-mode forward pass at these batch sizes (e.g. 1,4,16,64), the '
        'PyTorch peer too with --torch (ratio_latency > 1: the project is faster)',
    )
    parser.add_argument(
        '--profile',
        action='store_true',
        help='also time --steps training steps per phase and per Chainer function',
    )
    parser.add_argument(
        '--plain',
        action='store_true',
        help="time the plain Chainer composition instead of the model's CPU fast path",
    )
    parser.add_argument(
        '--compile-cost',
        action='store_true',
        help="also time the fast path's first step in fresh processes, cache empty and warm",
    )
    parser.add_argument(
        '--torch',
        action='store_true',
        help='also time the PyTorch peer (NCHW and channels_last); report the ratios',
    )
    parser.add_argument(
        '--torch-python',
        default=sys.executable,
        help='interpreter that has torch, e.g. a separate venv (the project never imports it)',
    )
    parser.add_argument(
        '--torch-script',
        type=Path,
        help="the PyTorch peer script (default: the architecture's, benchmarks/torch_*.py)",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    """Parse, measure, print one JSON object; a device or peer failure is one line, exit 1."""
    options = build_parser().parse_args(argv)
    if options.torch and options.torch_script is None:
        options.torch_script = TORCH_PEERS.get(options.arch)
        if options.torch_script is None:
            print(
                f'error: --torch: no PyTorch peer of {options.arch} (peers: '
                f'{", ".join(TORCH_PEERS)}); give one with --torch-script',
                file=sys.stderr,
            )
            return 1
    if options.torch and not options.torch_script.is_file():
        print(f'error: --torch-script {options.torch_script} does not exist', file=sys.stderr)
        return 1
    try:
        result = run(options)
    except (DeviceError, TorchError) as error:
        print(f'error: {error}', file=sys.stderr)
        return 1
    print(json.dumps(result, indent=1))
    return 0


if __name__ == '__main__':
    sys.exit(main())
