"""benchmarks/serve_load.py at tiny settings: one JSON object with every figure it promises."""

import json

from benchmarks import serve_load


def test_prints_rates_latencies_and_peak_memory(capsys):
    assert serve_load.main(['--clients', '1', '3', '--seconds', '0.5', '--bombs', '2']) == 0
    result = json.loads(capsys.readouterr().out)
    assert [run['clients'] for run in result['load']] == [1, 3]
    for run in result['load']:
        assert run['errors'] == 0 and run['requests'] > 0 and run['requests_per_s'] > 0
        assert 0 < run['latency_ms']['p50'] <= run['latency_ms']['p99']
    assert result['bombs']['statuses'] == [200, 413]
    assert result['peak_rss_mib'] >= result['bombs']['rss_before_mib'] > 0


def test_a_bomb_is_small_and_declares_many_pixels():
    from io import BytesIO

    from PIL import Image

    data = serve_load.png_bomb(*serve_load.OVER_LIMIT)
    assert len(data) < 400_000
    with Image.open(BytesIO(data)) as image:
        assert image.size == (13000, 13000) and image.mode == 'I;16'
