"""trainer.chainerui: a run folder ChainerUI reads (its `log` and `args`), from a real run."""

import importlib
import json
import os

import pytest

from trainer.chainerui import chainerui_files, run_args
from trainer.errors import RunFolderError


@pytest.fixture(scope='module')
def run(tiny_run):
    return tiny_run


def test_log_links_to_log_json_and_reads_as_chainerui_reads_it(run):
    chainerui_files(run)
    link = run / 'log'
    assert link.is_symlink() and os.readlink(link) == 'log.json'  # relative: folder can move
    entries = json.loads(link.read_text())  # what ChainerUI's load_result_json does
    assert isinstance(entries, list) and len(entries) == 1
    assert {'epoch', 'iteration', 'elapsed_time', 'main/loss'} <= entries[0].keys()


def test_args_are_the_newest_sessions_options_flat(run):
    chainerui_files(run)
    args = json.loads((run / 'args').read_text())
    record = json.loads((run / 'run.json').read_text())
    # the model's options are one mapping: a nested value, so JSON text
    assert args == {**record['sessions'][-1]['options'], 'model_options': '{}'}
    assert args['preset'] == '32' and args['epoch'] == 1 and args['arch'] == 'squeezenet'
    assert all(not isinstance(value, dict | list) for value in args.values())


def test_nested_option_values_become_json_text(tmp_path):
    options = {'lr': 0.1, 'seed': None, 'sizes': [1, 2], 'extra': {'a': 1}}
    (tmp_path / 'run.json').write_text(json.dumps({'sessions': [{'options': options}]}))
    assert run_args(tmp_path) == {'lr': 0.1, 'seed': None, 'sizes': '[1, 2]', 'extra': '{"a": 1}'}


def test_it_is_idempotent_and_replaces_a_stray_log_file(run, tmp_path):
    (tmp_path / 'run.json').write_text((run / 'run.json').read_text())
    (tmp_path / 'log').write_text('something else')
    chainerui_files(tmp_path)
    chainerui_files(tmp_path)
    assert os.readlink(tmp_path / 'log') == 'log.json'
    assert sorted(p.name for p in tmp_path.iterdir()) == ['args', 'log', 'run.json']


def test_a_folder_without_a_run_record_is_one_line(tmp_path):
    with pytest.raises(RunFolderError, match='run.json: no run record with a session'):
        chainerui_files(tmp_path)
    (tmp_path / 'run.json').write_text('{"settings": {}}')
    with pytest.raises(RunFolderError, match='no run record with a session'):
        chainerui_files(tmp_path)


def test_chainerui_itself_reads_the_folder(run):
    """Only where ChainerUI is installed (it is no extra: it pins SQLAlchemy < 2)."""
    pytest.importorskip(
        'chainerui.models',  # first: chainerui.tasks alone is a circular import
        reason="ChainerUI is not installed (pip install chainerui==0.11.0 'sqlalchemy<2' "
        "'alembic<1.14')",
    )
    crawl = importlib.import_module('chainerui.tasks.crawl_result')  # the module, not the task
    chainerui_files(run)
    found = crawl.crawl_result_path(str(run), include_log=True)
    assert found['logs'] == json.loads((run / 'log.json').read_text())
    assert found['args'] == json.loads((run / 'args').read_text())
