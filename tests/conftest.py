"""Shared pytest fixtures and markers."""

import numpy as np
import pytest

import chainer_compat  # noqa: F401  (before any test module imports Chainer)


def pytest_configure(config):
    config.addinivalue_line('markers', 'gpu: needs CuPy and a CUDA GPU')
    config.addinivalue_line('markers', 'mpi: needs mpi4py and mpiexec')
    config.addinivalue_line('markers', 'slow: a minute or more (make test-quick leaves them out)')


def _gpu_missing() -> str | None:
    """Why GPU tests cannot run here, or None when CuPy sees a CUDA GPU."""
    from chainer.backends import cuda

    if not cuda.available:
        return 'needs CuPy and a CUDA GPU (make install-gpu)'
    try:
        if cuda.cupy.cuda.runtime.getDeviceCount() == 0:
            return 'CuPy finds no CUDA GPU'
    except cuda.cupy.cuda.runtime.CUDARuntimeError as error:
        return f'CuPy finds no usable CUDA GPU ({error})'
    return None


def pytest_collection_modifyitems(config, items):
    gpu_reason = _gpu_missing() if any('gpu' in item.keywords for item in items) else None
    for item in items:
        if 'gpu' in item.keywords and gpu_reason:
            item.add_marker(pytest.mark.skip(reason=gpu_reason))


@pytest.fixture
def rng():
    return np.random.default_rng(0)


PALETTE = np.array(
    [
        [230, 25, 75],
        [60, 180, 75],
        [255, 225, 25],
        [0, 130, 200],
        [245, 130, 48],
        [145, 30, 180],
        [70, 240, 240],
        [240, 50, 230],
        [210, 245, 60],
        [0, 0, 128],
    ],
    dtype=np.float32,
)


def cifar_batch(n, n_classes=10, seed=0, learnable=False):
    """``n`` CIFAR-format images and labels: random noise, or class-coloured (learnable)."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % n_classes
    rng.shuffle(labels)
    if learnable:
        colours = PALETTE[labels % len(PALETTE)][:, :, None, None]
        images = colours + rng.normal(0, 40, size=(n, 3, 32, 32))
    else:
        images = rng.uniform(0, 256, size=(n, 3, 32, 32))
    data = np.clip(images, 0, 255).astype(np.uint8).reshape(n, 3072)
    return data, [int(label) for label in labels]


def write_cifar10(root, n_train=100, n_test=40, learnable=False, archive=True, seed=0):
    """Write a CIFAR-10 set in the official layout under ``root``; return its path."""
    import pickle
    import tarfile

    folder = root / 'cifar-10-batches-py'
    folder.mkdir(parents=True)
    per_batch = n_train // 5
    for i in range(5):
        data, labels = cifar_batch(per_batch, seed=seed + i, learnable=learnable)
        batch = {b'data': data, b'labels': labels, b'batch_label': b'training batch'}
        (folder / f'data_batch_{i + 1}').write_bytes(pickle.dumps(batch, protocol=2))
    data, labels = cifar_batch(n_test, seed=seed + 99, learnable=learnable)
    (folder / 'test_batch').write_bytes(
        pickle.dumps({b'data': data, b'labels': labels}, protocol=2)
    )
    names = [
        name.encode()
        for name in ('airplane automobile bird cat deer dog frog horse ship truck').split()
    ]
    (folder / 'batches.meta').write_bytes(pickle.dumps({b'label_names': names}, protocol=2))
    if not archive:
        return folder.parent
    path = root / 'cifar-10-python.tar.gz'
    with tarfile.open(path, 'w:gz') as tar:
        tar.add(folder, arcname='cifar-10-batches-py')
    return path


@pytest.fixture
def cifar10_archive(tmp_path):
    """A tiny CIFAR-10 archive (100 train / 40 test images of noise)."""
    return write_cifar10(tmp_path / 'data')


@pytest.fixture(scope='module')
def tiny_run(tmp_path_factory):
    """A finished 1-epoch SqueezeNet run (preset 32, a tiny learnable CIFAR-10), once per
    test module: its folder, with run.json, model.npz, optimizer.npz, log.json and
    snapshot_epoch_1 (the data under data/, the plots under img/)."""
    import trainer
    from squeeze_net import SqueezeNet

    tmp = tmp_path_factory.mktemp('run')
    archive = write_cifar10(tmp / 'data', learnable=True)
    trainer.train(
        SqueezeNet(10),
        save_path=str(tmp),
        img_dir=str(tmp / 'img'),
        data=str(archive),
        epoch=1,
        batch=20,
        preset='32',
        workers=0,
        lr=0.01,
    )
    return tmp


# A user's own net, as a module's source: its option `width` changes the weights' shapes.
TINY_NET = '''
import chainer
import chainer.functions as F
import chainer.links as L


class Net(chainer.Chain):
    """A tiny net: one convolution, global average pooling, a dense layer.

    Args:
        n_classes: number of classes.
        width: channels of the convolution.
    """

    def __init__(self, n_classes=10, width: int = 8):
        super().__init__()
        with self.init_scope():
            self.conv = L.Convolution2D(3, width, 3, pad=1)
            self.head = L.Linear(width, n_classes)

    def forward(self, x):
        return self.head(F.mean(F.relu(self.conv(x)), axis=(2, 3)))
'''


@pytest.fixture(scope='module')
def predictor():
    """A random-weight SqueezeNet at preset 32 with CIFAR-10's class names, for the server."""
    import inference
    from squeeze_net import SqueezeNet
    from trainer.datasets import CIFAR10_NAMES

    return inference.Predictor(SqueezeNet(10), CIFAR10_NAMES, preset='32')


def start_server(predictor, **options):
    """A server on a free loopback port, serving from a thread: (server, thread)."""
    import threading

    import serving

    server = serving.make_server(predictor, '127.0.0.1', 0, **options)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    return server, thread


def stop_server(server, thread) -> None:
    """Shut a ``start_server`` server down and wait for its thread."""
    server.shutdown()
    server.server_close()
    thread.join(timeout=15)
