"""The threading environment the fast path sets for itself."""

import json
import os
import subprocess
import sys

from layers import runtime

PROBE = """
import json, numba, numpy as np, squeeze_net, chainer
model = squeeze_net.SqueezeNet(10)
with chainer.using_config('train', False):
    model(np.zeros((1, 3, 32, 32), np.float32))
print(json.dumps({'layer': numba.threading_layer(), 'threads': numba.get_num_threads()}))
"""


def probe(**env) -> dict:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(('NUMBA_', 'OMP_'))}
    done = subprocess.run(
        [sys.executable, '-c', PROBE],
        env={**clean, **env},
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(done.stdout.splitlines()[-1])


def test_kernels_run_on_the_preferred_layer_with_the_blas_thread_count():
    """oneTBB where it loads (the pinned stacks install it), else workqueue; never OpenMP."""
    layer = 'tbb' if runtime.load_tbb() else 'workqueue'
    assert probe(OMP_NUM_THREADS='1') == {'layer': layer, 'threads': 1}


def test_tbb_is_installed_where_the_requirements_say():
    """requirements*.txt install oneTBB on x86-64 Linux: there the kernels must run on it."""
    import platform

    if platform.machine() == 'x86_64' and sys.platform.startswith('linux'):
        assert runtime.load_tbb() and runtime.preferred_layer() in (
            'tbb',
            os.environ.get('NUMBA_THREADING_LAYER'),
        )


def test_a_users_layer_wins(monkeypatch):
    monkeypatch.setenv('NUMBA_THREADING_LAYER', 'workqueue')
    assert runtime.preferred_layer() == 'workqueue'
    monkeypatch.delenv('NUMBA_THREADING_LAYER')
    assert runtime.preferred_layer() == ('tbb' if runtime.load_tbb() else 'workqueue')


def test_a_users_numba_setting_wins():
    assert probe(NUMBA_NUM_THREADS='1')['threads'] == 1


def test_thread_count_follows_the_blas_variables(monkeypatch):
    for name in runtime.THREAD_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv('OPENBLAS_NUM_THREADS', '3')
    assert runtime.thread_count() == 3
    monkeypatch.setenv('OMP_NUM_THREADS', '2')
    assert runtime.thread_count() == 2
    monkeypatch.setenv('OMP_NUM_THREADS', 'x')
    assert runtime.thread_count() == 3


def test_the_allocator_is_tuned_on_glibc_unless_the_user_set_it(monkeypatch):
    import platform

    if platform.libc_ver()[0] != 'glibc':
        assert runtime.tune_allocator() is False
        return
    from layers import kernels  # noqa: F401  (the fast path's first use configures)

    assert runtime.ALLOCATOR_TUNED is True
    monkeypatch.setenv('MALLOC_MMAP_THRESHOLD_', '131072')
    assert runtime.tune_allocator() is False


def test_a_service_undoes_only_the_tuning_it_finds(monkeypatch):
    """The server calls return_freed_memory; the bomb test in test_serve_limits checks that a
    decoded bomb's memory then goes back (it did not, 1 run in 4, with the training tuning)."""
    import platform

    monkeypatch.setattr(runtime, 'ALLOCATOR_TUNED', False)
    assert runtime.return_freed_memory() is False  # the user's own allocator settings stay
    monkeypatch.setattr(runtime, 'ALLOCATOR_TUNED', True)
    assert runtime.return_freed_memory() is (platform.libc_ver()[0] == 'glibc')
