"""chainer_compat restores exactly what the running stack lacks, and Chainer then works.

The same tests run on the pinned stack (where nothing may change) and on the modern one.
Each runs in a fresh interpreter, since what the shim does depends on import order.
"""

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
CHECK_FAILED = 'Failed to check requirement'  # chainer._environment_check, on any error

# Raises ModuleNotFoundError for pkg_resources, as on setuptools 82+.
BLOCK_PKG_RESOURCES = """
import sys

class BlockPkgResources:
    def find_spec(self, name, path=None, target=None):
        if name.partition('.')[0] == 'pkg_resources':
            raise ModuleNotFoundError(f'No module named {name!r}', name=name)

sys.meta_path.insert(0, BlockPkgResources())
"""

# Facts about the stack, found without the shim.
STACK = """
import importlib, json, sys, warnings
import numpy

missing = [] if hasattr(numpy, 'sctypes') else ['numpy.sctypes']
for name in ('numpy.distutils.system_info', 'pkg_resources'):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        try:
            importlib.import_module(name)
        except ImportError:
            missing.append(name.removesuffix('.system_info'))
warns = any(  # caught while importing pkg_resources, the last name
    w.category is UserWarning and 'pkg_resources is deprecated' in str(w.message) for w in caught
)
print(json.dumps({
    'missing': missing,
    'pkg_resources_warns': warns,
    'numpy_2': int(numpy.__version__.split('.')[0]) >= 2,
    'python_3_12': sys.version_info >= (3, 12),
}))
"""

# What executing chainer_compat/__init__.py alone (no Chainer, no trainer package) changes.
SHIM_ONLY = """
import importlib.util, json, sys, warnings
import numpy

attrs, modules, filters = set(dir(numpy)), set(sys.modules), list(warnings.filters)
spec = importlib.util.spec_from_file_location('compat_alone', 'chainer_compat/__init__.py')
compat = importlib.util.module_from_spec(spec)
spec.loader.exec_module(compat)
added = [sys.modules[name] for name in set(sys.modules) - modules]
print(json.dumps({
    'patched': list(compat.PATCHED),
    'again': list(compat.apply()),
    'numpy_attrs': sorted(set(dir(numpy)) - attrs),
    'stand_ins': sorted(m.__name__ for m in added if getattr(m, '__spec__', 0) is None),
    'filters_added': len(warnings.filters) - len(filters),
}))
"""

# Chainer through the project's wiring: import, a training step, and npz round trip.
CHAINER_WORKS = """
import importlib.util, json, os, tempfile, warnings

with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter('always')
    import chainer_compat  # first
    import trainer
    import chainer
import chainer.backends.cuda
import chainer.functions as F
import chainer.links as L
import numpy as np
import pkg_resources


class Net(chainer.Chain):
    def __init__(self):
        super().__init__()
        with self.init_scope():
            self.conv = L.Convolution2D(3, 4, 3, pad=1)
            self.bn = L.BatchNormalization(4)

    def forward(self, x):
        h = F.max_pooling_2d(self.bn(self.conv(x)), 3, stride=2, pad=1)
        return F.mean(h, axis=(2, 3))


rng = np.random.default_rng(0)
x = rng.normal(size=(4, 3, 8, 8)).astype(np.float32)
t = np.array([0, 1, 2, 3], dtype=np.int32)
net = Net()
optimizer = chainer.optimizers.MomentumSGD(lr=0.1, momentum=0.9)
optimizer.setup(net)
optimizer.add_hook(chainer.optimizer_hooks.WeightDecay(5e-4))
before = net.conv.W.array.copy()
loss = F.softmax_cross_entropy(net(x), t)
net.cleargrads()
loss.backward()
optimizer.update()

path = os.path.join(tempfile.mkdtemp(), 'net.npz')
chainer.serializers.save_npz(path, net)
copy = Net()
chainer.serializers.load_npz(path, copy)
saved = dict(net.namedparams())
print(json.dumps({
    'loss': float(loss.array),
    'grad_finite': bool(np.isfinite(net.conv.W.grad).all()),
    'updated': bool((net.conv.W.array != before).any()),
    'round_trip': all(np.array_equal(p.array, saved[n].array) for n, p in copy.namedparams())
    and np.array_equal(copy.bn.avg_mean, net.bn.avg_mean),
    'cuda_available': chainer.backends.cuda.available,
    'cupy_installed': importlib.util.find_spec('cupy') is not None,
    'patched': list(chainer_compat.PATCHED),
    'pkg_resources_is_stand_in': pkg_resources.__spec__ is None,
    'chainer_warnings': [
        f'{w.category.__name__}: {w.message}' for w in caught if 'chainer' in w.filename
    ],
}))
"""

# The pkg_resources stand-in behaves as chainer._environment_check expects.
STAND_IN = """
import json
import numpy
import chainer_compat
import pkg_resources

def outcome(requirement):
    try:
        return [dist.version for dist in pkg_resources.require(requirement)]
    except (pkg_resources.DistributionNotFound, pkg_resources.VersionConflict) as error:
        return type(error).__name__

print(json.dumps({
    'numpy': outcome(f'numpy>={numpy.__version__},<99'),
    'numpy_too_new': outcome('numpy<1.0'),
    'numpy_excluded': outcome(f'numpy!={numpy.__version__}'),
    'missing': outcome('no-such-distribution-xyz>=1'),
    'version': pkg_resources.get_distribution('numpy').version == numpy.__version__,
}))
"""


def run_python(code: str, block_pkg_resources: bool = False) -> dict:
    """Run ``code`` in a fresh interpreter at the repository root; return its JSON output."""
    prelude = BLOCK_PKG_RESOURCES if block_pkg_resources else ''
    result = subprocess.run(
        [sys.executable, '-c', prelude + textwrap.dedent(code)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.splitlines()[-1])


@pytest.fixture(scope='module')
def stack() -> dict:
    return run_python(STACK)


@pytest.fixture(scope='module')
def shim_only() -> dict:
    return run_python(SHIM_ONLY)


def test_patches_exactly_what_the_stack_lacks(stack, shim_only):
    expected = stack['missing'] + ['warning:pkg_resources'] * stack['pkg_resources_warns']
    assert sorted(shim_only['patched']) == sorted(expected)


def test_patches_match_the_stack_versions(stack, shim_only):
    patched = shim_only['patched']
    assert ('numpy.sctypes' in patched) == stack['numpy_2']
    assert ('pkg_resources' in patched) == ('pkg_resources' in stack['missing'])
    if stack['python_3_12']:
        assert 'numpy.distutils' in patched


def test_nothing_changes_on_the_pinned_stack(stack, shim_only):
    pinned = not (stack['numpy_2'] or stack['python_3_12'] or 'pkg_resources' in stack['missing'])
    if pinned and not stack['pkg_resources_warns']:
        untouched = {'patched': [], 'again': [], 'numpy_attrs': [], 'stand_ins': []}
        assert shim_only == untouched | {'filters_added': 0}
    else:
        assert shim_only['patched']


def test_changes_nothing_but_the_patched_names(shim_only):
    patched = shim_only['patched']
    assert shim_only['numpy_attrs'] == sorted(
        name.split('.')[1] for name in patched if name.startswith('numpy.')
    )
    stand_ins = []
    if 'numpy.distutils' in patched:
        stand_ins += ['numpy.distutils', 'numpy.distutils.system_info']
    if 'pkg_resources' in patched:
        stand_ins.append('pkg_resources')
    assert shim_only['stand_ins'] == sorted(stand_ins)
    assert shim_only['filters_added'] == ('warning:pkg_resources' in patched)


def test_apply_is_idempotent(shim_only):
    assert shim_only['again'] == shim_only['patched']


def test_chainer_trains_and_serializes(shim_only):
    result = run_python(CHAINER_WORKS)
    assert result['patched'] == shim_only['patched']
    assert result['grad_finite'] and result['updated'] and result['round_trip']
    assert 0 < result['loss'] < 10
    assert not any(CHECK_FAILED in w for w in result['chainer_warnings'])
    assert not any(w.startswith('UserWarning') for w in result['chainer_warnings'])
    if not result['cupy_installed']:
        assert result['cuda_available'] is False


def test_chainer_imports_without_pkg_resources():
    result = run_python(CHAINER_WORKS, block_pkg_resources=True)
    assert 'pkg_resources' in result['patched']
    assert result['pkg_resources_is_stand_in']
    assert result['round_trip']
    assert not any(CHECK_FAILED in w for w in result['chainer_warnings'])


def test_pkg_resources_stand_in_checks_versions():
    result = run_python(STAND_IN, block_pkg_resources=True)
    assert result['numpy'] == [np.__version__]
    assert result['numpy_too_new'] == 'VersionConflict'
    assert result['numpy_excluded'] == 'VersionConflict'
    assert result['missing'] == 'DistributionNotFound'
    assert result['version'] is True
