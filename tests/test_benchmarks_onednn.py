"""benchmarks.onednn: the two paths alternate step by step and both are timed."""

import json
import os
import subprocess
import sys

import pytest
from test_layers_onednn import needs_onednn

from benchmarks import onednn as bench
from layers import onednn


@needs_onednn
def test_both_paths_alternate_and_the_switch_is_restored(monkeypatch, capsys):
    calls = []
    run_forward = onednn.Convolution.run_forward
    monkeypatch.setattr(
        onednn.Convolution,
        'run_forward',
        lambda conv, *args: calls.append(1) or run_forward(conv, *args),
    )
    monkeypatch.setattr(onednn, 'MIN_FLOPS', onednn.MIN_FLOPS)  # restored after --min-flops
    argv = ['--arch', 'resnet20', '--size', '16', '--batch', '2', '--mode', 'eval']
    assert bench.main([*argv, '--rounds', '2', '--warmup', '1', '--min-flops', '0', '--json']) == 0
    result = json.loads(capsys.readouterr().out)
    assert result['settings']['batch'] == 2
    assert result['im2col']['best_ms'] <= result['im2col']['median_ms']
    assert result['speedup_median'] > 0
    assert len(calls) == 3 * 21  # 3 oneDNN steps (1 warm-up, 2 timed) of 21 convolutions
    assert onednn.library() is not None and onednn._state['lib'] is onednn.library()


def test_without_onednn_it_says_so_in_one_line():
    done = subprocess.run(
        [sys.executable, '-m', 'benchmarks.onednn', '--arch', 'resnet20', '--size', '8',
         '--batch', '1', '--rounds', '1', '--warmup', '1'],
        capture_output=True, text=True, env={**os.environ, 'LAYERS_ONEDNN': '0'},
    )  # fmt: skip
    assert done.returncode != 0
    assert done.stderr.strip() == (
        'error: oneDNN does not load here (not installed, or LAYERS_ONEDNN=0)'
    )


@pytest.mark.parametrize('argv', [['--batch', '0'], ['--mode', 'fit']])
def test_bad_arguments_are_refused(argv, capsys):
    with pytest.raises(SystemExit) as exit_:
        bench.main(argv)
    assert exit_.value.code == 2
