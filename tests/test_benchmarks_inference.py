"""benchmarks/inference.py at tiny settings: one JSON object, every figure positive."""

import json

import pytest

from benchmarks import inference

pytest.importorskip('onnx_chainer', reason='needs the ONNX extras (make install-extras)')
pytest.importorskip('onnxruntime', reason='needs the ONNX extras (make install-extras)')

TINY = ['--size', '32', '--batches', '1', '3', '--repeat', '2', '--steps', '1', '--warmup', '0']


def test_prints_the_latency_of_every_backend(capsys):
    assert inference.main(TINY + ['--ort-threads', '1', '2']) == 0
    result = json.loads(capsys.readouterr().out)
    assert set(result['backends']) == {
        'chainer',
        'chainer_plain',
        'onnx_1_threads',
        'onnx_2_threads',
    }
    for figures in result['backends'].values():
        assert set(figures) == {'1', '3'}
        for figure in figures.values():
            assert len(figure['ms']['runs']) == 2
            assert 0 < figure['ms']['min'] <= figure['ms']['median'] <= figure['ms']['max']
            assert figure['images_per_sec'] > 0
    assert result['preprocess_images_per_sec'] > 0
    assert result['environment']['onnxruntime']
