"""``benchmarks.table``: the contenders alternate, ratios are taken within a cycle, and the
Markdown table shows the medians with the ratios' range (no subprocesses: they are stubbed)."""

import pytest

from benchmarks import table


def fake_figures(monkeypatch, train: dict, latency: dict | None = None):
    """Each contender's train rate per call, in turn from ``train[who]``; records the order."""
    order, calls = [], {who: 0 for who in table.CONTENDERS}

    def figures(who: str, row) -> dict:
        order.append((row.arch, who))
        value = train[who][calls[who] % len(train[who])]
        calls[who] += 1
        out = {'train': value, 'eval': 2 * value}
        for n in row.latency:
            out[f'latency_{n}'] = latency[who] * n
        if who == 'project':
            out['environment'] = {
                'cpu': 'CPU', 'cpu_count': 2, 'blas_kernel': 'Haswell', 'blas_threads': 2,
                'openblas_env': {'OPENBLAS_CORETYPE': 'Haswell', 'OPENBLAS_L2_SIZE': None},
                'fast_path': {
                    'numba': '0', 'threading_layer': 'tbb', 'numba_threads': 2,
                    'onednn': '3.2.0', 'onednn_threads': 2,
                },
                'python': '3', 'numpy': '1',
            }  # fmt: skip
        return out

    monkeypatch.setattr(table, 'project', lambda row, options: figures('project', row))
    monkeypatch.setattr(table, 'peer', lambda row, options, fmt: figures(fmt, row))
    return order


def test_the_order_rotates_and_each_ratio_is_within_a_cycle(monkeypatch, capsys):
    train = {'project': [100.0, 50.0, 90.0], 'nchw': [50.0, 50.0, 100.0]}
    train['channels_last'] = [200.0, 100.0, 100.0]
    order = fake_figures(monkeypatch, train)
    assert table.main(['--torch-python', 'python', '--rows', 'resnet20', '--cycles', '3']) == 0
    assert [who for _, who in order] == [
        'project', 'nchw', 'channels_last',
        'nchw', 'channels_last', 'project',
        'channels_last', 'project', 'nchw',
    ]  # fmt: skip
    out = capsys.readouterr().out
    training = next(line for line in out.splitlines() if 'training' in line)
    cells = [cell.strip() for cell in training.strip('|').split('|')]
    # medians of the rates; ratios per cycle: NCHW 2.0, 1.0, 0.9; channels_last 0.5, 0.5, 0.9
    assert cells[1:] == ['90.0', '50.0', '1.00 (0.90-2.00)', '100.0', '0.50 (0.50-0.90)']
    assert 'OpenBLAS kernel Haswell (OPENBLAS_CORETYPE=Haswell)' in out
    assert 'oneDNN 3.2.0 convolutions on oneTBB, 2 threads' in out
    assert '3 cycles, medians' in out


def test_a_latency_ratio_is_faster_above_one(monkeypatch, capsys):
    train = {who: [10.0] for who in table.CONTENDERS}
    latency = {'project': 8.0, 'nchw': 16.0, 'channels_last': 4.0}
    fake_figures(monkeypatch, train, latency)
    assert table.main(['--torch-python', 'python', '--rows', 'squeezenet', '--cycles', '1']) == 0
    lines = capsys.readouterr().out.splitlines()
    one = next(line for line in lines if 'one image' in line)
    assert [cell.strip() for cell in one.strip('|').split('|')][1:] == [
        '8.0', '16.0', '2.00', '4.0', '0.50'
    ]  # fmt: skip
    sixteen = next(line for line in lines if '128 px, batch 16, ms' in line)
    cells = [cell.strip() for cell in sixteen.strip('|').split('|')]
    assert cells[1:4] == ['128.0', '256.0', '2.00']
    assert sum('forward, 128 px' in line for line in lines) == 4  # batches 1, 4, 16, 64


@pytest.mark.parametrize('rows', ['alexnet', ',', 'resnet20,alexnet'])
def test_unknown_rows_are_one_line(rows, capsys):
    assert table.main(['--torch-python', 'python', '--rows', rows]) == 2
    err = capsys.readouterr().err
    assert err.startswith('error: --rows: unknown') and err.count('\n') == 1


def test_a_failing_contender_is_one_line(monkeypatch, capsys):
    def fails(row, options):
        raise table.ContenderError(f'benchmarks.speed --arch {row.arch} failed: boom')

    monkeypatch.setattr(table, 'project', fails)
    assert table.main(['--torch-python', 'python', '--rows', 'vgg', '--cycles', '1']) == 1
    captured = capsys.readouterr()
    assert captured.err.splitlines()[-1] == 'error: benchmarks.speed --arch vgg failed: boom'
    assert captured.out == ''


def test_the_environment_line_says_where_onednn_is_missing():
    environment = {
        'cpu': 'CPU', 'cpu_count': 2, 'blas_kernel': 'SkylakeX', 'blas_threads': 2,
        'openblas_env': {}, 'fast_path': {'numba': '0', 'onednn': None},
        'python': '3', 'numpy': '2',
    }  # fmt: skip
    line = table.describe(environment)
    assert 'no oneDNN' in line and 'oneDNN convolutions' not in line
