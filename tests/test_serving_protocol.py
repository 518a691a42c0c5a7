"""serving at the protocol's edges, over raw sockets: every error is JSON with its status.

What http.client and urllib never send (HEAD, OPTIONS, unknown methods, long or many
headers, HTTP/2.0, conflicting lengths, a missing Host, pipelining) and the log's escaping.
"""

import http.client
import io
import json
import logging
import socket
import time

import numpy as np
import pytest
from conftest import start_server, stop_server
from PIL import Image

from serving import protocol


@pytest.fixture(scope='module')
def server(predictor):
    server, thread = start_server(predictor, idle_timeout=5)
    yield server
    stop_server(server, thread)


@pytest.fixture(scope='module')
def image():
    buffer = io.BytesIO()
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)).save(buffer, 'PNG')
    return buffer.getvalue()


def send(server, data: bytes, method: str = 'GET', replies: int = 1):
    """Send raw bytes; return the replies read: (status, headers, body) each."""
    with socket.create_connection(server.server_address[:2], timeout=10) as sock:
        sock.sendall(data)
        reader = sock.makefile('rb')
        out = [read_reply(reader, method) for _ in range(replies)]
        return out if replies > 1 else out[0]


def read_reply(reader, method='GET'):
    """(status, headers, body) of the next reply on a socket's buffered reader."""
    status = int(reader.readline().split(b' ', 2)[1])
    headers = http.client.parse_headers(reader)
    bodiless = method == 'HEAD' or status < 200 or status == 204
    return status, headers, b'' if bodiless else reader.read(int(headers['Content-Length']))


def request(
    method='GET', path='/health', version='HTTP/1.1', headers=('Host: x',), body=b''
) -> bytes:
    head = '\r\n'.join([f'{method} {path} {version}', *headers]) + '\r\n\r\n'
    return head.encode('latin-1') + body


def assert_json_error(reply, status, message=''):
    got, headers, body = reply
    assert got == status, body
    assert headers['Content-Type'] == 'application/json'
    assert int(headers['Content-Length']) == len(body)
    error = json.loads(body)['error']
    assert message in error
    return error


def test_head_gives_the_headers_of_get_without_a_body(server):
    status, headers, body = send(server, request('HEAD'), method='HEAD')
    get = send(server, request('GET'))
    assert status == 200 and body == b''
    assert headers['Content-Length'] == get[1]['Content-Length'] != '0'


@pytest.mark.parametrize(
    ('path', 'allowed'),
    [('/predict', 'POST, OPTIONS'), ('/health', 'GET, HEAD, OPTIONS'), ('*', None)],
)
def test_options_lists_the_methods(server, path, allowed):
    status, headers, body = send(server, request('OPTIONS', path))
    assert status == 204 and body == b'' and 'Content-Length' not in headers
    assert headers['Allow'] == (allowed or 'GET, HEAD, POST, OPTIONS')


@pytest.mark.parametrize('method', ['BREW', 'PROPFIND'])
def test_unknown_method_is_501(server, method):
    assert_json_error(send(server, request(method)), 501, f'method {method} is not supported')


def test_head_on_predict_is_405_without_a_body(server):
    with socket.create_connection(server.server_address[:2], timeout=10) as sock:
        sock.sendall(request('HEAD', '/predict'))
        data = sock.makefile('rb').read()  # all the server sends, until it closes
    head, _, body = data.partition(b'\r\n\r\n')
    assert head.startswith(b'HTTP/1.1 405 ') and b'Allow: POST, OPTIONS' in head
    assert body == b''


@pytest.mark.parametrize(
    ('data', 'status', 'message'),
    [
        (request(path='/' + 'a' * 9000), 414, 'request line longer than 8192 bytes'),
        (request(headers=('Host: x', 'X-Long: ' + 'a' * 9000)), 431, 'header line longer'),
        (request(headers=('Host: x', *[f'X-{i}: 1' for i in range(101)])), 431, 'more than 100'),
        (request(headers=('Host: x', *[f'X-{i}: ' + 'a' * 4000 for i in range(17)])), 431, 'head'),
        (request(version='HTTP/2.0'), 505, 'HTTP/2.0 is not supported'),
        (request(version='HTTP/0.9'), 505, 'not supported'),
        (request(version='HTTP/1.x'), 400, 'bad HTTP version'),
        (b'GET /health\r\n\r\n', 400, 'bad request line'),
        (b'GET  /health HTTP/1.1\r\nHost: x\r\n\r\n', 400, 'bad request line'),
        (request(path='health'), 400, 'bad request target'),
        (request(method='GE(T'), 400, 'bad method'),
        (request(headers=('Host: x', 'no colon here')), 400, 'bad header line'),
        (request(headers=('Host: x', 'Bad Name: 1')), 400, 'bad header line'),
        (request(headers=('Host: x', 'X-A: 1', ' folded')), 400, 'bad header line'),
        (request(headers=()), 400, 'needs one Host header'),
        (request(headers=('Host: x', 'Host: y')), 400, 'needs one Host header'),
    ],
)
def test_bad_request_heads_get_json_errors(server, data, status, message):
    assert_json_error(send(server, data), status, message)


def length_request(*lengths, body=b'x' * 5, extra=()):
    headers = ['Host: x', *(f'Content-Length: {length}' for length in lengths), *extra]
    return request('POST', '/predict', headers=headers, body=body)


@pytest.mark.parametrize('length', ['+5', '-1', 'abc', '1e3', '5 5', '0x10', '\u00b2', ''])
def test_malformed_content_length_is_400(server, length):
    assert_json_error(send(server, length_request(length)), 400, 'Content-Length must be')


@pytest.mark.parametrize('lengths', [('5', '6'), ('5, 6',), ('5', '05, 7')])
def test_conflicting_content_lengths_are_400(server, lengths):
    assert_json_error(send(server, length_request(*lengths)), 400, 'conflicting Content-Length')


def test_equal_content_lengths_are_one(server, image):
    n = len(image)
    status, _, body = send(server, length_request(n, f'{n}, 0{n}', body=image))
    assert status == 200 and len(json.loads(body)['predictions']) == 3


def test_content_length_with_transfer_encoding_is_400(server):
    data = length_request(5, extra=['Transfer-Encoding: chunked'])
    assert_json_error(send(server, data), 400, 'both Transfer-Encoding and Content-Length')


def test_huge_content_length_is_413(server):
    assert_json_error(send(server, length_request('9' * 400)), 413, 'over the limit')


def test_http_1_0_without_host_is_answered_and_closed(server):
    status, headers, _ = send(server, request(version='HTTP/1.0', headers=()))
    assert status == 200 and headers['Connection'] == 'close'


def test_bare_lf_line_ends_are_accepted(server):
    assert send(server, b'GET /health HTTP/1.1\nHost: x\n\n')[0] == 200


def test_pipelined_requests_are_answered_in_order(server, image):
    data = request('POST', '/predict', headers=['Host: x', f'Content-Length: {len(image)}'])
    data = request() + data + image + request(path='/nothing')
    replies = send(server, data, replies=3)
    assert [reply[0] for reply in replies] == [200, 200, 404]
    assert 'predictions' in json.loads(replies[1][2])
    assert replies[2][1]['Connection'] == 'close'


def test_expect_100_continue_is_answered_before_the_body(server, image):
    with socket.create_connection(server.server_address[:2], timeout=10) as sock:
        headers = ['Host: x', f'Content-Length: {len(image)}', 'Expect: 100-continue']
        sock.sendall(request('POST', '/predict', headers=headers))
        assert sock.recv(100) == b'HTTP/1.1 100 Continue\r\n\r\n'
        sock.sendall(image)
        status, _, body = read_reply(sock.makefile('rb'))
        assert status == 200 and 'predictions' in json.loads(body)


def test_other_expectations_are_417(server):
    data = length_request(5, extra=['Expect: something-else'])
    assert_json_error(send(server, data), 417, 'Expect: something-else')


def test_a_get_with_a_body_is_answered_and_closed(server):
    status, headers, _ = send(
        server, request(headers=('Host: x', 'Content-Length: 5'), body=b'hello')
    )
    assert status == 200 and headers['Connection'] == 'close'


@pytest.mark.parametrize(
    ('path', 'kind', 'text'),
    [
        ('/', 'text/html; charset=utf-8', b'<script src="page.js"'),
        ('/page.js', 'text/javascript; charset=utf-8', b"fetch('health')"),
        ('/page.css', 'text/css; charset=utf-8', b'.bar'),
    ],
)
def test_the_page_and_its_files(server, path, kind, text):
    status, headers, body = send(server, request(path=path))
    assert status == 200 and headers['Content-Type'] == kind and text in body
    assert "default-src 'none'" in headers['Content-Security-Policy']
    assert headers['X-Content-Type-Options'] == 'nosniff'
    assert b'http://' not in body and b'https://' not in body  # nothing from elsewhere


def test_control_characters_are_escaped_in_the_log(server, caplog):
    caplog.set_level(logging.INFO, logger='serving')
    data = b'GET /\x1b[2J\r\x00fake\x9b\\ HTTP/1.1\r\nHost: x\r\n\r\n'
    assert_json_error(send(server, data), 400, 'bad request target')
    for _ in range(100):  # the server logs a reply just after sending it
        lines = [r.getMessage() for r in caplog.records if r.name == 'serving']
        if any('fake' in line for line in lines):
            break
        time.sleep(0.05)
    line = next(line for line in lines if 'fake' in line)
    assert '"GET /\\x1b[2J\\x0d\\x00fake\\x9b\\\\ HTTP/1.1" 400' in line
    assert not any(ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0 for c in line)


def test_escape_covers_c0_del_c1_and_backslash():
    text = ''.join(map(chr, range(0xA0))) + '\\'
    escaped = protocol.escape(text)
    assert not any(ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0 for c in escaped)
    assert escaped.endswith('\\\\') and '\\x1b' in escaped and ' !"#' in escaped
