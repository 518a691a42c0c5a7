"""serving under hostile clients and stop signals: idle declarers, trickles, SIGTERM/SIGINT.

Loopback only; every loop is bounded in count and time, and every test stops by itself.
The signal tests run ``main.py serve`` in a subprocess (``benchmarks.serve_load``).
"""

import http.client
import io
import json
import re
import shutil
import signal
import socket
import subprocess
import threading
import time

import numpy as np
import pytest
from conftest import start_server, stop_server
from PIL import Image
from test_inference_faults import odd_tiff

from benchmarks.serve_load import ServerProcess
from serving import server as server_module

BODY = 256 * 2**10  # the test servers' largest upload
BUDGET = 2**20  # their upload memory: four largest bodies
CLIENTS = 50  # requests in flight when the stop signal comes


def png(seed=0, size=(40, 30)) -> bytes:
    rng = np.random.default_rng(seed)
    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(buffer, 'PNG')
    return buffer.getvalue()


def post(address, body, timeout=30, headers=None):
    connection = http.client.HTTPConnection(*address[:2], timeout=timeout)
    try:
        connection.request('POST', '/predict', body, headers or {})
        reply = connection.getresponse()
        return reply.status, json.loads(reply.read())
    finally:
        connection.close()


def read_all(sock) -> bytes:
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b''.join(chunks)


def declare(address, length, first=b'') -> socket.socket:
    """A connection that sends a POST head declaring ``length`` bytes, then ``first``."""
    sock = socket.create_connection(address[:2], timeout=30)
    head = f'POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: {length}\r\n\r\n'
    sock.sendall(head.encode() + first)
    return sock


@pytest.fixture
def budgeted(predictor, monkeypatch):
    """A server whose upload budget four largest bodies fill, with a long request timeout."""
    monkeypatch.setattr(server_module, 'UPLOAD_MEMORY', BUDGET)
    server, thread = start_server(predictor, max_bytes=BODY, timeout=20)
    yield server
    stop_server(server, thread)


def test_idle_declarers_do_not_starve_an_honest_upload(budgeted):
    """Twice the budget declared by connections that send nothing: an upload is answered."""
    idle = [declare(budgeted.server_address, BODY) for _ in range(2 * BUDGET // BODY)]
    try:
        time.sleep(0.3)  # let the server read every head
        began = time.monotonic()
        status, reply = post(budgeted.server_address, png())
        assert status == 200 and len(reply['predictions']) == 3
        assert time.monotonic() - began < 3  # not the declarers' 20 s timeout
    finally:
        for sock in idle:
            sock.close()


def test_trickling_declarers_are_cut_off_and_free_the_budget(budgeted):
    """Connections that send one byte of a large body hold their share only PACE_GRACE s."""
    trickles = [declare(budgeted.server_address, BODY, b'x') for _ in range(2 * BUDGET // BODY)]
    try:
        time.sleep(0.3)
        began = time.monotonic()
        status, reply = post(budgeted.server_address, png())
        assert status == 200 and len(reply['predictions']) == 3
        assert time.monotonic() - began < server_module.PACE_GRACE + 3
        for sock in trickles:
            head, _, body = read_all(sock).partition(b'\r\n\r\n')
            assert head.startswith(b'HTTP/1.1 408 ')
            assert json.loads(body)['error'].startswith(f'body too slow: 1 of {BODY} bytes in ')
    finally:
        for sock in trickles:
            sock.close()


def test_a_body_that_keeps_pace_is_received_in_pieces(budgeted):
    """An honest slow upload: in four pieces over 1.5 s, well within its 20 s."""
    data = png(1, (300, 200))
    with declare(budgeted.server_address, len(data)) as sock:
        for piece in range(4):
            sock.sendall(data[piece * len(data) // 4 : (piece + 1) * len(data) // 4])
            time.sleep(0.5)
        head, _, body = read_all_or_first_reply(sock).partition(b'\r\n\r\n')
    assert head.startswith(b'HTTP/1.1 200 ') and len(json.loads(body)['predictions']) == 3


def read_all_or_first_reply(sock) -> bytes:
    """The first response on a keep-alive connection (its head and Content-Length body)."""
    data = b''
    while b'\r\n\r\n' not in data:
        data += sock.recv(65536)
    head, _, body = data.partition(b'\r\n\r\n')
    length = int(re.search(rb'Content-Length: (\d+)', head)[1])
    while len(body) < length:
        body += sock.recv(65536)
    return head + b'\r\n\r\n' + body


def test_shutdown_finishes_requests_in_flight_and_closes_idle_connections(predictor):
    server, thread = start_server(predictor, drain=5)
    address = server.server_address
    data = png(2)
    try:
        idle = socket.create_connection(address[:2], timeout=10)
        waiting = declare(address, len(data), data[:10])  # in flight: the body half sent
        time.sleep(0.3)
        stopper = threading.Thread(target=server.shutdown)
        began = time.monotonic()
        stopper.start()
        time.sleep(0.3)
        assert read_all(idle) == b''  # idle: closed at once, nothing was asked
        waiting.sendall(data[10:])
        reply = read_all(waiting)  # answered, then closed
        stopper.join(10)
        assert not stopper.is_alive() and time.monotonic() - began < 5
        assert reply.startswith(b'HTTP/1.1 200 ') and b'Connection: close' in reply
        assert server.drained.in_flight == 1 and server.drained.dropped == 0
        with pytest.raises(OSError):  # no longer accepting
            socket.create_connection(address[:2], timeout=2).close()
    finally:
        idle.close()
        waiting.close()
        server.server_close()
        thread.join(timeout=15)


def test_the_drain_is_bounded(predictor):
    """A request that never completes is dropped after ``drain`` seconds."""
    server, thread = start_server(predictor, drain=0.5, timeout=30)
    try:
        with declare(server.server_address, 1000, b'12345'):
            time.sleep(0.3)
            began = time.monotonic()
            server.shutdown()
            assert time.monotonic() - began < 3
        assert server.drained.in_flight == 1 and server.drained.dropped == 1
    finally:
        server.server_close()
        thread.join(timeout=15)


def _client(address, data, ready: threading.Barrier, go: threading.Event, results, i):
    """A request in flight at the signal: its head answered 100 Continue, its body sent after."""
    try:
        with socket.create_connection(address, timeout=60) as sock:
            head = (
                f'POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: {len(data)}\r\n'
                'Expect: 100-continue\r\n\r\n'
            )
            sock.sendall(head.encode())
            assert sock.recv(25) == b'HTTP/1.1 100 Continue\r\n\r\n'
            ready.wait(60)
            go.wait(60)
            sock.sendall(data)
            results[i] = read_all(sock)
    except Exception as error:  # reported by the test
        results[i] = repr(error).encode()


@pytest.mark.parametrize('number', [signal.SIGTERM, signal.SIGINT], ids=['SIGTERM', 'SIGINT'])
def test_a_stop_signal_under_load_drains_and_exits_0(number):
    """50 requests in flight: each answered 200, one log line, exit status 0, no traceback."""
    server = ServerProcess()
    try:
        address = (server.host, server.port)
        data = png(3)
        ready, go = threading.Barrier(CLIENTS + 1), threading.Event()
        results = [None] * CLIENTS
        clients = [
            threading.Thread(target=_client, args=(address, data, ready, go, results, i))
            for i in range(CLIENTS)
        ]
        for client in clients:
            client.start()
        ready.wait(60)  # every request is in flight: accepted, its head read
        server.process.send_signal(number)
        time.sleep(0.5)  # the signal is handled before the bodies come
        go.set()
        for client in clients:
            client.join(60)
        status = server.process.wait(timeout=30)
        log = server.log()
    finally:
        go.set()
        if server.process.poll() is None:
            server.process.kill()
            server.process.wait()
    statuses = [result[:12] for result in results]
    assert statuses == [b'HTTP/1.1 200'] * CLIENTS, (statuses, log)
    assert status == 0, log
    name = signal.Signals(number).name
    stops = [line for line in log.splitlines() if line.split(' ', 2)[-1].startswith(name)]
    assert len(stops) == 1, log
    assert (
        f'{name}: stopped accepting; {CLIENTS} requests in flight finished, 0 dropped' in stops[0]
    )
    assert 'Traceback' not in log and 'CancelledError' not in log, log
    assert log.count('"POST /predict HTTP/1.1" 200') == CLIENTS


@pytest.fixture(scope='module')
def plain(predictor):
    server, thread = start_server(predictor)
    yield server
    stop_server(server, thread)


def form(parts, boundary='----formboundary123') -> tuple[bytes, dict]:
    """A multipart/form-data body of ``(name, filename or None, content)`` parts."""
    body = b''
    for name, filename, content in parts:
        disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else '')
        body += f'--{boundary}\r\nContent-Disposition: {disposition}\r\n'.encode()
        if filename:
            body += b'Content-Type: image/png\r\n'
        body += b'\r\n' + content + b'\r\n'
    body += f'--{boundary}--\r\n'.encode()
    return body, {'Content-Type': f'multipart/form-data; boundary={boundary}'}


def test_a_form_with_the_file_is_classified_like_the_raw_bytes(plain):
    data = png(4)
    raw = post(plain.server_address, data)
    body, headers = form([('note', None, b'hello'), ('file', 'cat.png', data)])
    assert post(plain.server_address, body, headers=headers) == raw
    body, headers = form([('file', None, data)], boundary='"quoted:boundary"')
    headers['Content-Type'] = 'multipart/form-data; boundary="quoted:boundary"'
    body = body.replace(b'"quoted:boundary"', b'quoted:boundary')
    assert post(plain.server_address, body, headers=headers) == raw


@pytest.mark.skipif(not shutil.which('curl'), reason='needs curl')
def test_curl_dash_f_works(plain, tmp_path):
    path = tmp_path / 'cat.png'
    path.write_bytes(png(5))
    url = f'http://127.0.0.1:{plain.server_address[1]}/predict?top=2'
    form_reply = subprocess.run(
        ['curl', '-sS', '-F', f'file=@{path}', url], capture_output=True, timeout=60, check=True
    )
    raw_reply = subprocess.run(
        ['curl', '-sS', '--data-binary', f'@{path}', url],
        capture_output=True,
        timeout=60,
        check=True,
    )
    assert json.loads(form_reply.stdout) == json.loads(raw_reply.stdout)
    assert len(json.loads(form_reply.stdout)['predictions']) == 2


@pytest.mark.parametrize(
    ('body', 'content_type', 'message'),
    [
        (b'--x\r\n\r\nabc', 'multipart/form-data', 'multipart/form-data without a boundary'),
        (b'--x\r\nno end', 'multipart/form-data; boundary=x', 'multipart/form-data with no'),
        (b'--x--\r\n', 'multipart/form-data; boundary=x', 'multipart/form-data with no'),
    ],
)
def test_a_malformed_form_says_how_to_send_an_image(plain, body, content_type, message):
    status, reply = post(plain.server_address, body, headers={'Content-Type': content_type})
    assert status == 400 and reply['error'].startswith(message)
    assert reply['error'].endswith(
        'send the image bytes as the body (curl --data-binary @cat.jpg) or one file in a form '
        '(curl -F file=@cat.jpg)'
    )


def test_a_form_whose_file_is_not_an_image_is_400(plain):
    body, headers = form([('file', 'notes.txt', b'just text')])
    status, reply = post(plain.server_address, body, headers=headers)
    assert status == 400 and reply['error'].startswith('not an image')


def test_a_crafted_tiff_is_400_and_the_server_goes_on(plain):
    """The TIFF whose StripOffsets tag is typed ASCII (Pillow: TypeError): the client's fault."""
    status, reply = post(plain.server_address, odd_tiff())
    assert status == 400 and reply['error'].startswith('damaged image (TypeError: ')
    assert post(plain.server_address, png())[0] == 200
