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
