"""The benchmark CLI at tiny settings (one JSON object, every figure positive); micro-benchmarks."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks import speed as benchmark

TINY = ['--size', '32', '--eval-size', '32', '--batch', '2', '--steps', '1', '--repeat', '2']
TINY += ['--warmup', '0', '--workers', '0']


def fake_peer(tmp_path, body: str):
    """A stand-in for the PyTorch script, run by this interpreter (no torch needed)."""
    script = tmp_path / 'peer.py'
    script.write_text(body)
    return ['--torch', '--torch-python', sys.executable, '--torch-script', str(script)]


def test_prints_one_json_object_with_positive_figures(tmp_path, capsys):
    body = 'import json, sys\nfmt = sys.argv[sys.argv.index("--memory-format") + 1]\n'
    body += 'print(json.dumps({"train_img_per_s": 2.0, "eval_img_per_s": 4.0, "impl": "fake", '
    body += '"fmt": fmt}))'
    peer = fake_peer(tmp_path, body)
    assert benchmark.main(TINY + ['--profile'] + peer) == 0
    result = json.loads(capsys.readouterr().out)
    for figure in (
        result['train']['images_per_sec'],
        result['eval']['images_per_sec'],
        result['augment']['single_process'],
    ):
        assert len(figure['runs']) == 2
        assert 0 < figure['min'] <= figure['q1'] <= figure['median'] <= figure['q3']
        assert figure['q3'] <= figure['max']
    assert result['train']['step_ms_median'] > 0
    assert result['augment']['workers'] == 0 and result['augment']['multiprocess'] is None
    assert result['memory']['end']['max_rss_mib'] >= result['memory']['after_train']['max_rss_mib']
    assert result['memory']['after_train']['max_rss_mib'] > 0
    env = result['environment']
    assert env['chainer'] == '7.8.1' and env['device'] == 'cpu' and env['cpu_count'] >= 1
    assert env['blas_kernel'] is None or isinstance(env['blas_kernel'], str)
    assert set(env['openblas_env']) >= {'OPENBLAS_CORETYPE', 'OPENBLAS_L2_SIZE'}
    assert env['fast_path']['threading_layer'] in ('tbb', 'workqueue')  # layers.runtime's
    assert result['settings']['batch'] == 2 and result['settings']['fast'] is True
    profile = result['profile']
    assert all(ms > 0 for ms in profile['phases_ms'].values())
    assert profile['functions_ms'] == pytest.approx(profile['timer_hook_total_ms'], rel=0.2)
    rows = {row['function']: row for row in profile['functions']}
    for kernel, calls in (('1x1', 9), ('1x1+3x3', 8), ('7x7', 1)):
        conv = rows[f'ConvolutionsNHWC {kernel}']
        assert conv['forward_ms'] > 0 and conv['backward_ms'] > 0
        assert conv['forward_calls'] == calls
    for name in ('BNReLUNHWC', 'MaxPoolingNHWC'):
        assert rows[name]['forward_ms'] > 0 and rows[name]['backward_ms'] > 0
    for fmt in benchmark.TORCH_FORMATS:
        peer = result['torch'][fmt]
        assert peer['impl'] == 'fake' and peer['fmt'] == fmt and peer['max_rss_mib'] > 0
        train = result['train']['images_per_sec']['median'] / 2.0
        assert peer['ratio_train'] == pytest.approx(train)
        assert peer['ratio_eval'] == pytest.approx(result['eval']['images_per_sec']['median'] / 4)


def test_plain_run_profiles_chainers_functions(capsys):
    assert benchmark.main(TINY + ['--profile', '--plain']) == 0
    result = json.loads(capsys.readouterr().out)
    assert result['settings']['fast'] is False
    rows = {row['function']: row for row in result['profile']['functions']}
    assert rows['Convolution2DFunction 3x3']['forward_calls'] == 8


def test_compile_cost_is_measured_in_fresh_processes():
    cost = benchmark.compile_cost()
    for run in ('first_call', 'cached'):
        assert cost[run]['first_step_s'] > 0 and cost[run]['import_s'] > 0


@pytest.mark.gpu
def test_gpu_run_reports_the_device_and_the_memory_pool(capsys):
    assert benchmark.main(TINY + ['-g', '0', '--profile']) == 0
    result = json.loads(capsys.readouterr().out)
    assert result['environment']['device'].startswith('cuda:0 ')
    assert result['memory']['after_train']['gpu_pool_total_mib'] > 0
    assert result['train']['images_per_sec']['median'] > 0


def test_multiprocess_augmentation_reports_its_workers():
    result = benchmark.bench_augment(batch=2, steps=1, repeat=1, warmup=0, workers=1)
    assert result['workers'] == 1
    assert result['multiprocess']['median'] > 0 and result['single_process']['median'] > 0


@pytest.mark.parametrize(
    'body, message',
    [
        ('import sys; sys.exit("no torch here")', 'no torch here'),
        ('print("{}")', 'no train_img_per_s'),
    ],
)
def test_a_failing_peer_is_one_line_before_any_measurement(tmp_path, capsys, body, message):
    assert benchmark.main(TINY + fake_peer(tmp_path, body)) == 1
    captured = capsys.readouterr()
    assert captured.out == ''
    assert captured.err.count('\n') == 1 and message in captured.err


def test_summarize_gives_median_spread_and_runs():
    assert benchmark.summarize([3.0, 1.0, 2.0, 4.0, 5.0]) == {
        'median': 3.0,
        'min': 1.0,
        'max': 5.0,
        'q1': 2.0,
        'q3': 4.0,
        'runs': [3.0, 1.0, 2.0, 4.0, 5.0],
    }


@pytest.mark.parametrize('flag', ['--batch', '--steps', '--repeat'])
def test_counts_must_be_positive(flag, capsys):
    with pytest.raises(SystemExit):
        benchmark.build_parser().parse_args([flag, '0'])
    assert 'must be a positive integer' in capsys.readouterr().err


@pytest.mark.parametrize(
    ('script', 'lines'),
    [('conv1x1.py', 18), ('pool_backward.py', 4)],
)
def test_micro_benchmarks_print_json_lines(script, lines):
    path = Path(__file__).resolve().parents[1] / 'benchmarks' / script
    done = subprocess.run(
        [sys.executable, str(path), '--batch', '1', '--repeat', '1'],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    rows = [json.loads(line) for line in done.stdout.splitlines()]
    assert len(rows) == lines
    times = [value for row in rows for key, value in row.items() if key.endswith('_ms')]
    assert times and all(value > 0 for value in times)


def test_another_architecture_by_import_path(capsys):
    argv = TINY + ['--arch', 'examples.train_vgg:VGG', '--workers', '0']
    assert benchmark.main(argv) == 0
    result = json.loads(capsys.readouterr().out)
    assert result['settings']['arch'] == 'examples.train_vgg:VGG'
    assert result['train']['images_per_sec']['median'] > 0
    argv = TINY + ['--arch', 'examples.resnet:resnet32', '--workers', '0', '--torch']
    assert benchmark.main(argv) == 1
    assert 'no PyTorch peer of examples.resnet:resnet32' in capsys.readouterr().err


def test_latency_per_batch_size_against_the_peer(tmp_path, capsys):
    """--latency: one test-mode forward per batch size, and the peer's at the same sizes."""
    body = 'import json, sys\nbatches = sys.argv[sys.argv.index("--latency-batches") + 1]\n'
    body += 'lat = {b: 8.0 for b in batches.split(",")}\n'
    body += 'print(json.dumps({"train_img_per_s": 2.0, "eval_img_per_s": 4.0, "latency_ms": lat}))'
    peer = fake_peer(tmp_path, body)
    assert benchmark.main(TINY + ['--latency', '1,3'] + peer) == 0
    result = json.loads(capsys.readouterr().out)
    assert set(result['latency_ms']) == {'1', '3'}
    for figure in result['latency_ms'].values():
        assert len(figure['runs']) == 2 and figure['median'] > 0
    for fmt in benchmark.TORCH_FORMATS:
        ratios = result['torch'][fmt]['ratio_latency']
        assert ratios['1'] == pytest.approx(8.0 / result['latency_ms']['1']['median'])
    with pytest.raises(SystemExit):
        benchmark.build_parser().parse_args(['--latency', '0,4'])


def test_convs_traces_each_shape_and_compares_with_the_peer(tmp_path, capsys, monkeypatch):
    from benchmarks import convs

    counts = convs.shapes('resnet20', 2, 32)
    # ResNet-20: the stem, 6 + 5 + 5 unstrided 3x3s, 2 strided 3x3s and 2 projections.
    assert counts[(2, 3, 32, 32, 16, 3, 3, 3, 1, 1)] == 1
    assert counts[(2, 16, 32, 32, 16, 16, 3, 3, 1, 1)] == 6
    assert counts[(2, 32, 16, 16, 32, 32, 3, 3, 1, 1)] == 5
    assert counts[(2, 16, 32, 32, 32, 16, 1, 1, 2, 0)] == 1
    assert sum(counts.values()) == 21
    assert convs.flops((2, 16, 32, 32, 32, 16, 3, 3, 2, 1)) == 2 * 2 * 16 * 16 * 32 * 16 * 9
    peer = tmp_path / 'torch_convs.py'  # a stand-in: 1 ms for everything
    peer.write_text(
        'import json, sys\nkeys = json.load(sys.stdin)\n'
        'print(json.dumps([{f"{l}_{p}_ms": 1.0 for l in ("nchw", "cl") '
        'for p in ("forward", "train")} for _ in keys]))'
    )
    monkeypatch.setattr(convs, 'HERE', tmp_path)
    argv = ['--arch', 'resnet20', '--size', '8', '--batch', '2', '--repeat', '1']
    assert convs.main(argv + ['--torch-python', sys.executable, '--json']) == 0
    out = capsys.readouterr().out
    table, figures = out[: out.index('\n{')], json.loads(out[out.index('\n{') :])
    assert '| convolution | count | ours | GEMMs alone | PyTorch NCHW | PyTorch CL |' in table
    assert '| 16->16 3x3/1 @8x8 | 6 |' in table and '| all, one step |' in table
    assert figures['peak_gflops'] > 0 and len(figures['rows']) == 8
    for row in figures['rows']:
        assert row['forward_ms'] > 0 and row['train_ms'] > 0 and row['gemm_train_ms'] > 0
        assert row['torch_cl_train_ms'] == 1.0
