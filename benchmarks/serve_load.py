"""Requests/s and latency of ``main.py serve`` under load, and its peak memory under
decompression bombs; one JSON object.

    python -m benchmarks.serve_load                      # 1, 8 and 64 clients, then 8 bombs
    python -m benchmarks.serve_load --clients 1 8 64 --seconds 10 --bombs 8
    python -m benchmarks.serve_load -m RUN/model.npz     # a trained model (its run.json's preset)

The server is ``main.py serve`` in a process of its own, on 127.0.0.1 with its defaults
(2 workers, 40 MP per image); without ``-m`` it serves a SqueezeNet with random weights at
the 32 px preset (the answers do not matter, the work does). The clients are threads of
this process, each on one keep-alive connection, posting a small PNG (a 32x32 photo-like
image, as a CIFAR user would) one request after another for ``--seconds``: requests/s
counts the answered requests, latency is per request, client side. Both share the
machine's cores with the server, so the figures are for the whole machine.

The bomb test then posts ``--bombs`` PNGs at once, half of them 6,300 x 6,300 RGBA (just
under the pixel limit: 40 KB each, 318 MB decoded), half of them the 13,000 x 13,000
16-bit grey PNG of issue 17 (over the limit: refused from the header). The server's peak
RSS is what the server process reads of itself (``ru_maxrss``, logged when it stops);
its RSS before and after the bombs come from /proc.
"""

import argparse
import http.client
import io
import json
import os
import re
import signal
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from pathlib import Path
from urllib.parse import urlsplit

import chainer_compat  # noqa: F401  (first: lets Chainer import on current stacks)

# isort: split
import numpy as np
from PIL import Image

MAIN = Path(__file__).resolve().parent.parent / 'main.py'
UNDER_LIMIT = (6300, 6300, 8, 6)  # width, height, bit depth, PNG colour type (RGBA)
OVER_LIMIT = (13000, 13000, 16, 0)  # 16-bit grey, issue 17's bomb
STARTUP_SECONDS = 120


def png_bomb(width: int, height: int, bit_depth: int = 16, colour: int = 0) -> bytes:
    """A PNG of ``width`` x ``height`` zero pixels: a few hundred KB that decode to GBs.

    ``colour`` is the PNG colour type (0 grey, 2 RGB, 4 grey+alpha, 6 RGBA). Compressed row
    by row, so making one takes little memory.
    """
    channels = {0: 1, 2: 3, 4: 2, 6: 4}[colour]
    row = bytes(1 + (width * channels * bit_depth + 7) // 8)  # filter byte + zero pixels
    compressor = zlib.compressobj(9)
    data = b''.join(compressor.compress(row) for _ in range(height)) + compressor.flush()

    def chunk(kind: bytes, payload: bytes) -> bytes:
        crc = zlib.crc32(kind + payload) & 0xFFFFFFFF
        return struct.pack('>I', len(payload)) + kind + payload + struct.pack('>I', crc)

    header = struct.pack('>IIBBBBB', width, height, bit_depth, colour, 0, 0, 0)
    return (
        b'\x89PNG\r\n\x1a\n' + chunk(b'IHDR', header) + chunk(b'IDAT', data) + chunk(b'IEND', b'')
    )


def small_png(seed: int = 0) -> bytes:
    """A 32x32 RGB PNG of smooth noise (about 3 KB), like a CIFAR image."""
    rng = np.random.default_rng(seed)
    image = rng.normal(128, 40, (8, 8, 3)).clip(0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(image).resize((32, 32), Image.Resampling.BILINEAR).save(buffer, 'PNG')
    return buffer.getvalue()


class ServerProcess:
    """``main.py serve`` in a subprocess on a free port; its log goes to a file.

    Args:
        model: a model.npz; None: SqueezeNet(10) with random weights, saved to a temporary
            folder (served at ``--preset 32`` unless ``args`` says otherwise).
        args: more ``main.py serve`` flags.
    """

    def __init__(self, model: str | None = None, args: list[str] = ()) -> None:
        self.folder = tempfile.TemporaryDirectory(prefix='serve-load-')
        folder = Path(self.folder.name)
        if model is None:
            import chainer

            from squeeze_net import SqueezeNet

            model = folder / 'model.npz'
            chainer.serializers.save_npz(model, SqueezeNet(10))
            args = ['--preset', '32', *args]
        self.log_path = folder / 'serve.log'
        command = [sys.executable, str(MAIN), 'serve', '-m', str(model), '--port', '0', *args]
        with open(self.log_path, 'w') as log:
            self.process = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )
        self.url = self._wait_for(r'serving .* at (http://\S+) on ', STARTUP_SECONDS)
        self.host, self.port = urlsplit(self.url).hostname, urlsplit(self.url).port

    def log(self) -> str:
        return self.log_path.read_text(errors='replace')

    def _wait_for(self, pattern: str, seconds: float) -> str:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            found = re.search(pattern, self.log())
            if found:
                return found[1]
            if self.process.poll() is not None:
                break
            time.sleep(0.05)
        self.process.kill()
        raise RuntimeError(f'main.py serve did not log {pattern!r}:\n{self.log()}')

    def rss(self) -> int:
        """The server's resident memory now, bytes (Linux /proc)."""
        status = Path(f'/proc/{self.process.pid}/status').read_text()
        return int(re.search(r'VmRSS:\s+(\d+) kB', status)[1]) * 1024

    def stop(self) -> int:
        """Stop the server as Ctrl-C does; return the peak RSS it logged, bytes."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        found = re.search(r'peak memory (\d+) MiB', self.log())
        if found is None:
            raise RuntimeError(f'main.py serve did not log its peak memory:\n{self.log()}')
        return int(found[1]) * 2**20

    def __enter__(self) -> 'ServerProcess':
        return self

    def __exit__(self, *exc_info) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self.folder.cleanup()


def post(host: str, port: int, body: bytes, timeout: float = 120) -> tuple[int, dict]:
    """One POST /predict on a new connection: (status, JSON reply)."""
    connection = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        connection.request('POST', '/predict', body)
        reply = connection.getresponse()
        return reply.status, json.loads(reply.read())
    finally:
        connection.close()


def load(host: str, port: int, clients: int, seconds: float, body: bytes) -> dict:
    """``clients`` threads posting ``body`` back to back for ``seconds``: rate, latencies."""
    latencies: list[list[float]] = [[] for _ in range(clients)]
    errors = [0] * clients
    start = threading.Barrier(clients + 1)

    def client(i: int) -> None:
        connection = http.client.HTTPConnection(host, port, timeout=60)
        start.wait()
        while time.perf_counter() < deadline:
            began = time.perf_counter()
            try:
                connection.request('POST', '/predict', body)
                reply = connection.getresponse()
                reply.read()
                ok = reply.status == 200
            except (OSError, http.client.HTTPException):
                ok = False
                connection.close()
                connection = http.client.HTTPConnection(host, port, timeout=60)
            if ok:
                latencies[i].append(time.perf_counter() - began)
            else:
                errors[i] += 1
        connection.close()

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    deadline = time.perf_counter() + seconds
    began = time.perf_counter()
    start.wait()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - began
    every = sorted(x for per_client in latencies for x in per_client)
    return {
        'clients': clients,
        'requests': len(every),
        'errors': sum(errors),
        'seconds': round(elapsed, 2),
        'requests_per_s': round(len(every) / elapsed, 1),
        'latency_ms': {
            'p50': round(1000 * statistics.median(every), 1) if every else None,
            'p99': round(1000 * every[min(len(every) - 1, int(0.99 * len(every)))], 1)
            if every
            else None,
            'mean': round(1000 * statistics.fmean(every), 1) if every else None,
        },
    }


def bombs(server: ServerProcess, count: int) -> dict:
    """Post ``count`` bombs at once (half under, half over the pixel limit): statuses, RSS."""
    under, over = png_bomb(*UNDER_LIMIT), png_bomb(*OVER_LIMIT)
    bodies = [under if i % 2 == 0 else over for i in range(count)]
    before = server.rss()
    replies: list = [None] * count
    start = threading.Barrier(count)

    def client(i: int) -> None:
        start.wait()
        replies[i] = post(server.host, server.port, bodies[i])

    threads = [threading.Thread(target=client, args=(i,)) for i in range(count)]
    began = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - began
    time.sleep(0.2)
    return {
        'count': count,
        'under_limit': {'size': UNDER_LIMIT[:2], 'bytes': len(under)},
        'over_limit': {'size': OVER_LIMIT[:2], 'bytes': len(over)},
        'statuses': [status for status, _ in replies],
        'seconds': round(elapsed, 2),
        'rss_before_mib': round(before / 2**20),
        'rss_after_mib': round(server.rss() / 2**20),
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog='python -m benchmarks.serve_load',
        description=__doc__.split('\n\n')[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument('--clients', type=int, nargs='+', default=[1, 8, 64])
    parser.add_argument('--seconds', type=float, default=10.0, help='per client count')
    parser.add_argument('--bombs', type=int, default=8, help='0: no bomb test')
    parser.add_argument('-m', '--model', help='a model.npz (default: random SqueezeNet)')
    parser.add_argument('--serve-args', default='', help='more main.py serve flags, quoted')
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    body = small_png()
    with ServerProcess(args.model, args.serve_args.split()) as server:
        for _ in range(20):  # warm up: first forward passes, connections
            post(server.host, server.port, body)
        result = {
            'machine': {
                'cpus': os.cpu_count(),
                'python': sys.version.split()[0],
                'load_average_1min': round(os.getloadavg()[0], 2),  # other work on the cores
                'openblas_num_threads': os.environ.get('OPENBLAS_NUM_THREADS'),
            },
            'image_bytes': len(body),
            'load': [load(server.host, server.port, n, args.seconds, body) for n in args.clients],
        }
        if args.bombs:
            result['bombs'] = bombs(server, args.bombs)
        result['peak_rss_mib'] = round(server.stop() / 2**20)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == '__main__':
    sys.exit(main())
