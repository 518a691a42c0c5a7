"""The README's speed table: the project against both PyTorch layouts, in alternating cycles.

    .venv/bin/python -m benchmarks.table --torch-python .venv-torch/bin/python [--cycles 3]

Each row's three contenders (the project's ``benchmarks.speed``, PyTorch NCHW and PyTorch
channels_last, ``benchmarks/torch_*.py``) run as fresh processes one after the other, in a
rotated order each cycle, so the machine's drift (other jobs, clocks) falls on all three
alike. A ratio is taken within a cycle (project / peer, > 1: the project is faster), and the
table shows the medians over the cycles, with the ratios' range over the cycles when there
are several. SqueezeNet's rows include one test-mode forward without a graph (what
``predict`` and ``serve`` run) at batches of 1, 4, 16 and 64, in ms; its ratio is PyTorch's
ms over the project's, so > 1 is faster there too. Prints the Markdown table (what the
README shows), then the OpenBLAS kernel and environment; ``--json`` prints every cycle's
figures instead.
"""

import argparse
import json
import statistics
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from benchmarks import speed

ROOT = Path(__file__).resolve().parents[1]


class ContenderError(Exception):
    """A contender's process failed or printed no figures (the message says which)."""


@dataclass(frozen=True)
class Row:
    """One architecture's rows: what to time and how the table names it."""

    arch: str
    name: str
    size: int
    eval_size: int
    latency: tuple[int, ...] = ()  # batch sizes of a test-mode forward, timed too (ms)


ROWS = {
    'squeezenet': Row('squeezenet', 'SqueezeNet', 122, 128, latency=(1, 4, 16, 64)),
    'resnet20': Row('resnet20', 'ResNet-20 (`--arch resnet20`)', 32, 32),
    'vgg': Row('vgg', 'VGG example (`--arch vgg`)', 32, 32),
}


def project(row: Row, options: argparse.Namespace) -> dict:
    """``benchmarks.speed`` for ``row`` in a fresh process: train, eval (and latency) figures."""
    command = [sys.executable, '-m', 'benchmarks.speed', '--arch', row.arch]
    command += ['--size', str(row.size), '--eval-size', str(row.eval_size)]
    command += ['--batch', str(options.batch), '--steps', str(options.steps)]
    command += ['--repeat', str(options.repeat), '--warmup', '2', '--workers', '0']
    if row.latency:
        command += ['--latency', ','.join(map(str, row.latency))]
    done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, check=False)
    if done.returncode != 0:
        tail = (done.stderr.strip().splitlines() or ['no output'])[-1]
        raise ContenderError(f'benchmarks.speed --arch {row.arch} failed: {tail}')
    result = json.loads(done.stdout)
    figures = {
        'train': result['train']['images_per_sec']['median'],
        'eval': result['eval']['images_per_sec']['median'],
        'environment': result['environment'],
    }
    for n in row.latency:
        figures[f'latency_{n}'] = result['latency_ms'][str(n)]['median']
    return figures


def peer(row: Row, options: argparse.Namespace, memory_format: str) -> dict:
    """The row's PyTorch peer in ``memory_format``: the same figures, from its JSON line."""
    result = speed.bench_torch(
        options.torch_python,
        speed.TORCH_PEERS[row.arch],
        options.batch,
        row.size,
        row.eval_size,
        options.steps * options.repeat,
        -1,
        memory_format,
        list(row.latency) or None,
    )
    figures = {'train': result['train_img_per_s'], 'eval': result['eval_img_per_s']}
    for n in row.latency:
        figures[f'latency_{n}'] = float(result['latency_ms'][str(n)])
    figures['impl'] = result.get('impl')
    return figures


CONTENDERS = ('project', *speed.TORCH_FORMATS)


def cycles(row: Row, options: argparse.Namespace, log) -> list[dict]:
    """``options.cycles`` rounds of the three contenders, the order rotated each round."""
    out = []
    for cycle in range(options.cycles):
        turn = cycle % len(CONTENDERS)
        order = CONTENDERS[turn:] + CONTENDERS[:turn]
        figures = {}
        for who in order:
            figures[who] = project(row, options) if who == 'project' else peer(row, options, who)
            log(f'{row.arch} cycle {cycle + 1}: {who} {_brief(figures[who])}')
        out.append(figures)
    return out


def _brief(figures: dict) -> str:
    text = f'train {figures["train"]:.1f}/s, eval {figures["eval"]:.1f}/s'
    times = [f'{figures[k]:.2f}' for k in figures if k.startswith('latency_')]
    if times:
        text += f', forward {" / ".join(times)} ms'
    return text


def _ratio(runs: list[dict], key: str, fmt: str) -> list[float]:
    """Per cycle, project / peer (for a latency, peer / project: > 1 is faster too)."""
    if key.startswith('latency_'):
        return [run[fmt][key] / run['project'][key] for run in runs]
    return [run['project'][key] / run[fmt][key] for run in runs]


def _cell(values: list[float]) -> str:
    median = statistics.median(values)
    if len(values) == 1:
        return f'{median:.2f}'
    return f'{median:.2f} ({min(values):.2f}-{max(values):.2f})'


def markdown(results: dict[str, list[dict]], batch: int) -> str:
    """The table: medians over the cycles; each ratio with its range over the cycles."""
    lines = [
        '| | project | PyTorch NCHW | ratio | PyTorch channels_last | ratio |',
        '|---|--:|--:|--:|--:|--:|',
    ]
    for arch, runs in results.items():
        row = ROWS[arch]
        kinds = [('train', f'training, {row.size} px, batch {batch}, images/s')]
        kinds.append(('eval', f'evaluation, {row.eval_size} px, batch {batch}, images/s'))
        for n in row.latency:
            what = 'one image' if n == 1 else f'batch {n}'
            kinds.append((f'latency_{n}', f'forward, {row.eval_size} px, {what}, ms'))
        for key, label in kinds:
            values = [statistics.median(run[who][key] for run in runs) for who in CONTENDERS]
            cells = [f'{row.name} {label}', f'{values[0]:.1f}']
            for fmt, value in zip(speed.TORCH_FORMATS, values[1:], strict=True):
                cells += [f'{value:.1f}', _cell(_ratio(runs, key, fmt))]
            lines.append('| ' + ' | '.join(cells) + ' |')
    return '\n'.join(lines)


def describe(environment: dict) -> str:
    """One line: the CPU, OpenBLAS's kernel and environment, the threads, oneDNN."""
    openblas = ', '.join(f'{k}={v}' for k, v in environment['openblas_env'].items() if v)
    fast = environment.get('fast_path') or {}
    onednn = fast.get('onednn')
    convolutions = (
        f'oneDNN {onednn} convolutions on oneTBB, {fast.get("onednn_threads")} threads'
        if onednn
        else 'no oneDNN'
    )
    return (
        f'{environment["cpu"]}, {environment["cpu_count"]} cores; OpenBLAS kernel '
        f'{environment["blas_kernel"]} ({openblas or "OPENBLAS_* unset"}), '
        f'{environment["blas_threads"]} BLAS threads; Numba {fast.get("numba")} on '
        f'{fast.get("threading_layer")}, {fast.get("numba_threads")} threads; {convolutions}; '
        f'Python {environment["python"]}, NumPy {environment["numpy"]}'
    )


def build_parser() -> argparse.ArgumentParser:
    positive = speed._positive
    parser = argparse.ArgumentParser(
        prog='python -m benchmarks.table', description=__doc__.splitlines()[0]
    )
    parser.add_argument(
        '--torch-python', required=True, help='an interpreter that has torch (make bench-torch)'
    )
    parser.add_argument(
        '--rows',
        default=','.join(ROWS),
        help=f'comma-separated architectures, of {", ".join(ROWS)} (default: all)',
    )
    parser.add_argument('--cycles', type=positive, default=3, help='alternating rounds')
    parser.add_argument('--batch', type=positive, default=64)
    parser.add_argument('--steps', type=positive, default=4, help='batches per repetition')
    parser.add_argument('--repeat', type=positive, default=3, help='repetitions per process')
    parser.add_argument('--json', action='store_true', help="print every cycle's figures")
    return parser


def main(argv: list[str] | None = None) -> int:
    options = build_parser().parse_args(argv)
    archs = [a.strip() for a in options.rows.split(',') if a.strip()]
    unknown = [a for a in archs if a not in ROWS]
    if unknown or not archs:
        print(f'error: --rows: unknown {", ".join(unknown) or "(none)"}; of {", ".join(ROWS)}',
              file=sys.stderr)  # fmt: skip
        return 2

    def log(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    try:
        results = {arch: cycles(ROWS[arch], options, log) for arch in archs}
    except (ContenderError, speed.TorchError) as error:
        print(f'error: {error}', file=sys.stderr)
        return 1
    if options.json:
        print(json.dumps(results, indent=1))
        return 0
    print(markdown(results, options.batch))
    first = next(iter(results.values()))[0]['project']['environment']
    cycles_text = '1 cycle' if options.cycles == 1 else f'{options.cycles} cycles, medians'
    print(f'\n{describe(first)}; {cycles_text}.')
    return 0


if __name__ == '__main__':
    sys.exit(main())
