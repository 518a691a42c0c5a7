"""tools/: the GPU library installer can run twice."""

import pytest

from tools import cuda_libraries


class FakeInstaller:
    """cupyx.tools.install_library.main's behaviour: a second install raises."""

    def __init__(self):
        self.installed = set()

    def __call__(self, argv):
        library = argv[argv.index('--library') + 1]
        if library in self.installed:
            raise RuntimeError(f'\nThe destination directory /x/{library} already exists.\n')
        print(f'Installing {library}...')
        self.installed.add(library)


def test_installing_twice_reports_present_and_succeeds(capsys):
    installer = FakeInstaller()
    assert cuda_libraries.main(['cudnn', 'nccl'], installer) == 0
    assert capsys.readouterr().out == 'cudnn: installed\nnccl: installed\n'
    assert cuda_libraries.main(['cudnn', 'nccl'], installer) == 0
    assert capsys.readouterr().out == 'cudnn: present\nnccl: present\n'


def test_other_failures_are_one_line(capsys):
    def broken(argv):
        raise RuntimeError('\nThe library is not supported for this CUDA version.\n')

    assert cuda_libraries.main(['--cuda', '9.x', 'cudnn'], broken) == 1
    assert capsys.readouterr().err == (
        'error: cudnn for CUDA 9.x: The library is not supported for this CUDA version.\n'
    )


def test_unknown_library_is_refused_by_the_parser():
    with pytest.raises(SystemExit):
        cuda_libraries.main(['cublas'])


@pytest.mark.slow
def test_gpu_check_runs_its_logic_on_the_cpu(tmp_path):
    """The checks' own logic, with -g -1 standing in for the GPU (the GPU run is make gpu-check)."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    from conftest import write_cifar10

    root = Path(__file__).resolve().parents[1]
    archive = write_cifar10(tmp_path / 'data', n_train=100, n_test=40)
    command = [sys.executable, '-m', 'tools.gpu_check', '-g', '-1', '--data', str(archive)]
    command += ['--train-images', '100', '--test-images', '40', '--out', str(tmp_path / 'out')]
    command += ['--only', 'kill_and_resume', 'predict_gpu_vs_cpu', 'resume_cpu_gpu_cpu']
    done = subprocess.run(command, cwd=root, capture_output=True, text=True, timeout=900)
    summary = json.loads(done.stdout)
    assert done.returncode == 0, summary
    assert summary['device']['device'] == 'cpu'
    assert {name: check['status'] for name, check in summary['checks'].items()} == {
        'kill_and_resume': 'pass',
        'predict_gpu_vs_cpu': 'pass',
        'resume_cpu_gpu_cpu': 'pass',
    }
    assert summary['checks']['kill_and_resume']['epochs'] == [1, 2, 3]
