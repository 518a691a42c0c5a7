"""Make a run folder one that ChainerUI (Chainer's web UI over many runs) reads as a result.

ChainerUI 0.11.0 registers every folder under a project that holds a file named ``log``
(LogReport's format: a JSON list of per-epoch dicts with 'epoch', 'iteration',
'elapsed_time' and the reported values, which is exactly ``log.json``) and shows the flat
JSON object in ``args`` as the run's hyperparameters. So ``chainerui_files`` adds two
names and no data: ``log``, a relative symlink to ``log.json`` (which stays the one source
of truth, rewritten atomically each epoch, so the link always reads a whole log), and
``args``, the newest session's resolved options from ``run.json``. ChainerUI itself is
not needed to write them (and is no dependency: it pins an old SQLAlchemy).

    chainerui db create && chainerui db upgrade
    chainerui project create -d RUN_FOLDER_OR_A_FOLDER_OF_RUNS
    chainerui server --debug
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from trainer.run_folder import LOG_FILE, RUN_FILE, RunFolderError, temporary_path, write_atomically

LOG_NAME = 'log'
ARGS_NAME = 'args'


def run_args(folder: str | os.PathLike) -> dict:
    """The newest session's options in ``run.json``, as one flat dict (lists as JSON text)."""
    path = Path(folder) / RUN_FILE
    try:
        options = json.loads(path.read_text())['sessions'][-1]['options']
    except (OSError, ValueError, KeyError, IndexError, TypeError) as error:
        raise RunFolderError(
            f'{path}: no run record with a session to take the options from ({error})'
        ) from None
    flat = (str, int, float, bool, type(None))
    return {k: v if isinstance(v, flat) else json.dumps(v) for k, v in options.items()}


def chainerui_files(folder: str | os.PathLike) -> None:
    """Write ``args`` and link ``log -> log.json`` in the run folder ``folder``.

    Idempotent; call it whenever ``run.json`` gains a session. The link may point to a
    ``log.json`` the first epoch has not written yet (ChainerUI then waits for it).
    Raises RunFolderError (one line) without a readable ``run.json`` or on a write error.
    """
    folder = Path(folder)
    args = json.dumps(run_args(folder), indent=1, sort_keys=True) + '\n'
    link = folder / LOG_NAME
    try:
        write_atomically(folder / ARGS_NAME, lambda tmp: Path(tmp).write_text(args))
        if not (link.is_symlink() and os.readlink(link) == LOG_FILE):
            tmp = temporary_path(link)
            tmp.unlink(missing_ok=True)
            tmp.symlink_to(LOG_FILE)
            os.replace(tmp, link)
    except OSError as error:
        raise RunFolderError(
            f'{folder}: cannot write the ChainerUI files ({(error.strerror or str(error)).lower()})'
        ) from None
