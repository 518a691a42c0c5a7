"""Fetch the CUDA libraries CuPy 13 loads from its own folder (cuDNN, NCCL), once.

    python -m tools.cuda_libraries --cuda 12.x cudnn nccl

``cupyx.tools.install_library`` refuses to run when a library's folder already exists,
so ``make install-gpu`` could not run twice; here a library already installed is reported
and skipped, and anything else that goes wrong is one line and exit status 1.
"""

import argparse
import contextlib
import io
import sys


def install(cuda: str, library: str, installer=None) -> str:
    """Install ``library`` for ``cuda`` unless it is there; return 'installed' or 'present'."""
    if installer is None:
        from cupyx.tools import install_library

        installer = install_library.main
    output = io.StringIO()
    try:
        with contextlib.redirect_stdout(output):
            installer(['--cuda', cuda, '--library', library])
    except RuntimeError as error:
        if 'already exists' in str(error):
            return 'present'
        raise
    return 'installed'


def main(argv: list[str] | None = None, installer=None) -> int:
    parser = argparse.ArgumentParser(prog='python -m tools.cuda_libraries', description=__doc__)
    parser.add_argument('--cuda', default='12.x', help="CUDA version as CuPy names it ('12.x')")
    parser.add_argument('libraries', nargs='+', choices=('cudnn', 'nccl', 'cutensor'))
    args = parser.parse_args(argv)
    for library in args.libraries:
        try:
            print(f'{library}: {install(args.cuda, library, installer)}')
        except (RuntimeError, OSError, ImportError) as error:
            reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error)
            print(f'error: {library} for CUDA {args.cuda}: {reason}', file=sys.stderr)
            return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
