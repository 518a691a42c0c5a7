"""Files written by the code before issue 23 (commit 1beda1c): a run folder of a user's net
(`tests/data/before_issue23`, made with that commit's `main.py --arch tinynet:TinyNet
--preset 32 -e 1 -b 20 --seed 0` on `write_cifar10(n_train=40, n_test=20)`) still resumes,
predicts and serves."""

import json
import shutil
import urllib.request
from pathlib import Path

import numpy as np
from conftest import start_server, stop_server, write_cifar10
from PIL import Image

import inference
import main

BEFORE = Path(__file__).resolve().parent / 'data' / 'before_issue23'


def test_an_old_run_folder_resumes_predicts_and_serves(tmp_path, monkeypatch, capsys):
    run = tmp_path / 'run'
    shutil.copytree(BEFORE / 'run', run, symlinks=True)
    old_model = tmp_path / 'old_model.npz'
    shutil.copy(BEFORE / 'run' / 'model.npz', old_model)
    monkeypatch.chdir(BEFORE)  # --arch tinynet:TinyNet, resolved from the current directory
    data = write_cifar10(tmp_path / 'data', n_train=40, n_test=20)
    argv = ['--arch', 'tinynet:TinyNet', '--preset', '32', '-e', '2', '-b', '20', '--seed', '0']
    argv += ['--workers', '0', '-p', str(run), '--data', str(data), '--no-progress']
    assert main.main(argv) == 0
    log = json.loads((run / 'log.json').read_text())
    old_log = json.loads((BEFORE / 'run' / 'log.json').read_text())
    assert [entry['epoch'] for entry in log] == [1, 2]
    assert log[0]['main/loss'] == old_log[0]['main/loss']  # the old epoch kept as it was
    assert (run / 'snapshot_epoch_2').is_file()

    image = tmp_path / 'red.png'
    Image.new('RGB', (20, 20), (200, 10, 10)).save(image)
    capsys.readouterr()
    model = BEFORE / 'run' / 'model.npz'  # the old file itself, beside its old run.json
    assert main.main(['predict', '-m', str(model), str(image), '--json']) == 0
    [answer] = json.loads(capsys.readouterr().out)
    assert len(answer['predictions']) == 3

    predictor = inference.load_predictor(model)
    assert predictor.name == 'tinynet:TinyNet' and len(predictor.labels) == 10
    server, thread = start_server(predictor)
    try:
        request = urllib.request.Request(f'{server.url}/predict', data=image.read_bytes())
        with urllib.request.urlopen(request, timeout=30) as reply:
            body = json.loads(reply.read())
    finally:
        stop_server(server, thread)
    scores = [p['probability'] for p in body['predictions']]
    assert len(scores) == 3 and np.all(np.diff(scores) <= 0)
