"""Prove the GPU path on this machine in a few minutes; print one JSON summary.

    python -m tools.gpu_check [--gpu 0] [--data PATH] [--torch-python PY] [--out DIR]
    make gpu-check

Checks, each pass / fail / skip with its figures:

- ``gpu_tests``: the tests marked ``gpu`` (they must run, not skip);
- ``kill_and_resume``: a real training run (122 px, 2,560 CIFAR-10 images) on the GPU,
  SIGKILLed after its first epoch, resumed with the same command; the run folder's
  guarantees hold (every epoch logged once, model.npz the newest snapshot's);
- ``predict_gpu_vs_cpu``: the GPU-written model classifies test images on GPU and CPU alike;
- ``resume_cpu_gpu_cpu``: one run continued on the CPU, the GPU, the CPU;
- ``benchmark``: ``benchmarks.speed`` at batch 64 and 256 (a batch-256 rate far above the
  batch-64 one means the step is host-bound), beside the PyTorch peer when
  ``--torch-python`` has torch;
- ``mixed16``: ``--mixed16`` (float16 with dynamic loss scaling) trains 2 epochs, resumes
  for a third, and its losses stay finite.

Data: ``--data`` (the official archive or folder), else ``../shared/data`` rebuilt with its
``make_cifar10.py``. Works offline. Exit status 0 when nothing failed.
"""

import argparse
import json
import os
import pickle
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / 'shared' / 'data'


def run(command: list[str], timeout: float, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(
        command, cwd=ROOT, capture_output=True, text=True, timeout=timeout, **kwargs
    )


def tail(text: str, lines: int = 5) -> str:
    return '\n'.join(text.strip().splitlines()[-lines:])


def find_data(given: str | None, scratch: Path) -> Path:
    """The official CIFAR-10 archive or folder: ``given``, else built from ../shared/data."""
    if given:
        return Path(given)
    script = SHARED_DATA / 'make_cifar10.py'
    if not script.exists():
        raise FileNotFoundError(f'no --data and no {script}')
    done = run([sys.executable, str(script), str(scratch / 'cifar10')], timeout=600)
    if done.returncode != 0:
        raise RuntimeError(f'{script.name} failed: {tail(done.stderr, 1)}')
    return scratch / 'cifar10' / 'cifar-10-python.tar.gz'


def subset(data: Path, folder: Path, n_train: int = 2560, n_test: int = 1000) -> Path:
    """The first images of each split, written in the official layout (a quick data set)."""
    import chainer_compat  # noqa: F401
    from trainer.datasets import load_cifar

    cifar = load_cifar('cifar10', data)
    root = folder / 'cifar-10-batches-py'
    root.mkdir(parents=True)
    per = n_train // 5
    for i in range(5):
        images = cifar.train.images[i * per : (i + 1) * per]
        batch = {
            b'data': images.reshape(len(images), -1),
            b'labels': cifar.train.labels[i * per : (i + 1) * per].tolist(),
        }
        (root / f'data_batch_{i + 1}').write_bytes(pickle.dumps(batch, protocol=2))
    test = {
        b'data': cifar.test.images[:n_test].reshape(n_test, -1),
        b'labels': cifar.test.labels[:n_test].tolist(),
    }
    (root / 'test_batch').write_bytes(pickle.dumps(test, protocol=2))
    names = [name.encode() for name in cifar.label_names]
    (root / 'batches.meta').write_bytes(pickle.dumps({b'label_names': names}, protocol=2))
    return folder


def train_command(out: Path, data: Path, gpu: int, epochs: int, preset: str = '122') -> list:
    return [
        sys.executable, str(ROOT / 'main.py'), '-g', str(gpu), '-e', str(epochs), '-b', '20',
        '--preset', preset, '--seed', '0', '--no-progress', '-p', str(out),
        '--img-dir', str(out / 'img'), '--data', str(data),
    ]  # fmt: skip


def check_gpu_tests(args, scratch: Path) -> dict:
    done = run([sys.executable, '-m', 'pytest', '-q', '-m', 'gpu', '-rs', 'tests'], timeout=1800)
    summary = tail(done.stdout, 1)
    ran = 'passed' in summary and 'skipped' not in summary
    status = 'pass' if done.returncode == 0 and ran else 'fail'
    return {'status': status, 'summary': summary, 'output': tail(done.stdout, 15)}


def check_kill_and_resume(args, scratch: Path) -> dict:
    from trainer import run_folder

    out = scratch / 'kill'
    command = train_command(out, args.quick_data, args.gpu, 3)
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 600
    while not (out / 'snapshot_epoch_1').exists():
        if process.poll() is not None:
            return {'status': 'fail', 'detail': tail(process.stderr.read().decode())}
        if time.monotonic() > deadline:
            process.kill()
            return {'status': 'fail', 'detail': 'no epoch finished in 10 minutes'}
        time.sleep(0.05)
    time.sleep(0.5)
    process.send_signal(signal.SIGKILL)
    process.wait()
    done = run(command, timeout=900)
    if done.returncode != 0:
        return {'status': 'fail', 'detail': tail(done.stderr)}
    log = json.loads((out / 'log.json').read_text())
    epoch, arrays = run_folder.RunFolder(out).newest_snapshot()
    import numpy as np

    model = np.load(out / 'model.npz')
    same = all(
        np.array_equal(model[key], arrays[run_folder.MODEL_PREFIX + key])
        for key in model.files
        if key != run_folder.RECORD_KEY
    )
    ok = [e['epoch'] for e in log] == [1, 2, 3] and epoch == 3 and same
    return {
        'status': 'pass' if ok else 'fail',
        'epochs': [e['epoch'] for e in log],
        'test_accuracy': [e['validation/main/accuracy'] for e in log],
        'train_images_per_sec': [e.get('train/images_per_sec') for e in log],
        'model_npz_is_newest_snapshot': same,
    }


def check_predict(args, scratch: Path) -> dict:
    out = scratch / 'kill'
    if not (out / 'model.npz').exists():
        return {'status': 'skip', 'detail': 'no GPU-written model (kill_and_resume failed)'}
    from PIL import Image

    import chainer_compat  # noqa: F401
    from trainer.datasets import load_cifar

    images = load_cifar('cifar10', args.quick_data).test.images[:16]
    paths = []
    for i, image in enumerate(images):
        paths.append(scratch / f'test_{i}.png')
        Image.fromarray(image.transpose(1, 2, 0)).save(paths[-1])
    answers = {}
    for gpu in (str(args.gpu), '-1'):
        command = [sys.executable, str(ROOT / 'main.py'), 'predict', '-m', str(out / 'model.npz')]
        done = run([*command, '-g', gpu, '--json', '--top', '10', *map(str, paths)], timeout=600)
        if done.returncode != 0:
            return {'status': 'fail', 'detail': tail(done.stderr)}
        answers[gpu] = [
            {p['label']: p['probability'] for p in item['predictions']}
            for item in json.loads(done.stdout)
        ]
    gpu, cpu = answers[str(args.gpu)], answers['-1']
    gap = max(abs(g[label] - c[label]) for g, c in zip(gpu, cpu, strict=True) for label in c)
    same_top = sum(max(g, key=g.get) == max(c, key=c.get) for g, c in zip(gpu, cpu, strict=True))
    ok = gap < 1e-2 and same_top == len(cpu)
    return {'status': 'pass' if ok else 'fail', 'max_probability_gap': gap, 'same_top1': same_top}


def check_cross_device(args, scratch: Path) -> dict:
    out = scratch / 'cross'
    for epochs, gpu in ((1, -1), (2, args.gpu), (3, -1)):
        command = train_command(out, args.quick_data, gpu, epochs, preset='32')
        done = run([*command, '--workers', '2'], timeout=900)
        if done.returncode != 0:
            return {'status': 'fail', 'detail': f'epoch {epochs} on -g {gpu}: {tail(done.stderr)}'}
    log = json.loads((out / 'log.json').read_text())
    ok = [e['epoch'] for e in log] == [1, 2, 3]
    return {
        'status': 'pass' if ok else 'fail',
        'test_accuracy': [e['validation/main/accuracy'] for e in log],
    }


def check_benchmark(args, scratch: Path) -> dict:
    results = {}
    for batch in (64, 256):
        command = [sys.executable, '-m', 'benchmarks.speed', '-g', str(args.gpu)]
        command += ['--batch', str(batch), '--repeat', '3', '--steps', '10']
        if args.torch_python:
            command += ['--torch', '--torch-python', args.torch_python]
        done = run(command, timeout=1200)
        if done.returncode != 0:
            return {'status': 'fail', 'detail': tail(done.stderr)}
        result = json.loads(done.stdout)
        results[f'batch_{batch}'] = {
            'train_images_per_sec': result['train']['images_per_sec']['median'],
            'eval_images_per_sec': result['eval']['images_per_sec']['median'],
            'torch': result.get('torch'),
            'environment': result.get('environment'),
        }
    return {'status': 'pass', **results}


def check_mixed16(args, scratch: Path) -> dict:
    """Issue 27's ``--mixed16``: 2 epochs at 32 px, then 1 more resumed; finite, learning."""
    if args.gpu < 0:
        return {'status': 'skip', 'detail': '--mixed16 runs on a GPU only (refused on the CPU)'}
    out = scratch / 'mixed16'
    for epochs in (2, 3):
        command = [*train_command(out, args.quick_data, args.gpu, epochs, '32'), '--mixed16']
        done = run(command, timeout=900)
        if done.returncode != 0:
            return {'status': 'fail', 'detail': f'-e {epochs}: {tail(done.stderr)}'}
    log = json.loads((out / 'log.json').read_text())
    losses = [e['main/loss'] for e in log]
    ok = [e['epoch'] for e in log] == [1, 2, 3] and all(x == x and x < 1e4 for x in losses)
    return {
        'status': 'pass' if ok else 'fail',
        'train_loss': losses,
        'test_accuracy': [e['validation/main/accuracy'] for e in log],
        'train_images_per_sec': [e.get('train/images_per_sec') for e in log],
    }


CHECKS = {
    'gpu_tests': check_gpu_tests,
    'kill_and_resume': check_kill_and_resume,
    'predict_gpu_vs_cpu': check_predict,
    'resume_cpu_gpu_cpu': check_cross_device,
    'benchmark': check_benchmark,
    'mixed16': check_mixed16,  # issue 27
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog='python -m tools.gpu_check', description=__doc__)
    parser.add_argument('-g', '--gpu', type=int, default=0, help='the GPU to check')
    parser.add_argument('--data', help='cifar-10-python.tar.gz or its folder (else ../shared/data)')
    parser.add_argument('--torch-python', help='an interpreter with torch, for the peer')
    parser.add_argument('--out', help='keep the runs here (default: a temporary folder)')
    parser.add_argument('--only', nargs='+', choices=sorted(CHECKS), help='run only these')
    parser.add_argument('--train-images', type=int, default=2560, help='of the quick data set')
    parser.add_argument('--test-images', type=int, default=1000, help='of the quick data set')
    args = parser.parse_args(argv)
    summary = {'device': None, 'checks': {}}
    with tempfile.TemporaryDirectory() as temporary:
        scratch = Path(args.out or temporary)
        scratch.mkdir(parents=True, exist_ok=True)
        try:
            import chainer_compat  # noqa: F401
            from trainer.devices import get_device
            from trainer.environment import environment

            get_device(args.gpu)
            summary['device'] = environment(args.gpu)
            data = find_data(args.data, scratch)
            args.quick_data = subset(data, scratch / 'quick', args.train_images, args.test_images)
        except Exception as error:  # no GPU, no data: the summary says so
            summary['error'] = f'{type(error).__name__}: {error}'
            print(json.dumps(summary, indent=1))
            return 1
        for name, check in CHECKS.items():
            if args.only and name not in args.only:
                continue
            start = time.monotonic()
            try:
                result = check(args, scratch)
            except Exception as error:
                result = {'status': 'fail', 'detail': f'{type(error).__name__}: {error}'}
            result['seconds'] = round(time.monotonic() - start, 1)
            summary['checks'][name] = result
            print(f'{name}: {result["status"]} ({result["seconds"]} s)', file=sys.stderr)
    summary['passed'] = all(c['status'] != 'fail' for c in summary['checks'].values())
    print(json.dumps(summary, indent=1))
    return 0 if summary['passed'] else 1


if __name__ == '__main__':
    os.environ.setdefault('PYTHONUNBUFFERED', '1')
    sys.exit(main())
