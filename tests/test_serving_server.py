"""serving over loopback: routes, status codes, limits, and answers equal to predict's."""

import http.client
import io
import json
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from conftest import start_server, stop_server
from PIL import Image

import inference
import serving
from trainer.datasets import CIFAR10_NAMES
from trainer.images import open_image

MAX_BYTES = 20_000


@pytest.fixture(scope='module')
def server(predictor):
    server, thread = start_server(predictor, max_bytes=MAX_BYTES)
    yield server
    stop_server(server, thread)


def png(seed=0, size=(40, 30), mode='RGB'):
    rng = np.random.default_rng(seed)
    image = Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))
    buffer = io.BytesIO()
    image.convert(mode).save(buffer, 'PNG')
    return buffer.getvalue()


def call(server, path, body=None, method=None, headers=None):
    """(status, JSON reply, headers) of one request with urllib."""
    request = urllib.request.Request(
        server.url + path, data=body, method=method, headers=headers or {}
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as reply:
            return reply.status, json.loads(reply.read()), reply.headers
    except urllib.error.HTTPError as error:
        with error:
            return error.code, json.loads(error.read()), error.headers


def test_health(server):
    status, reply, headers = call(server, '/health')
    assert status == 200 and headers['Content-Type'] == 'application/json'
    assert reply == {
        'status': 'ok',
        'model': 'SqueezeNet',
        'classes': 10,
        'labels': list(CIFAR10_NAMES),
        'preset': '32',
        'top': inference.DEFAULT_TOP,
        'max_bytes': MAX_BYTES,
        'max_pixels': serving.MAX_PIXELS,
    }


def test_predict_a_png(server, predictor):
    status, reply, headers = call(server, '/predict', png())
    assert status == 200 and headers['Content-Type'] == 'application/json'
    predictions = reply['predictions']
    assert len(predictions) == inference.DEFAULT_TOP
    assert [set(p) for p in predictions] == [{'label', 'probability'}] * 3
    direct = predictor.predict([open_image(png())], inference.DEFAULT_TOP)[0]
    assert predictions == [{'label': p.label, 'probability': p.probability} for p in direct]


def test_predict_top_and_other_modes(server):
    status, reply, _ = call(server, '/predict?top=10', png(1, (7, 90), 'LA'))
    assert status == 200
    probabilities = [p['probability'] for p in reply['predictions']]
    assert len(probabilities) == 10 and sum(probabilities) == pytest.approx(1)
    assert probabilities == sorted(probabilities, reverse=True)


@pytest.mark.parametrize('query', ['top=0', 'top=x', 'top=-1'])
def test_bad_top_is_400(server, query):
    status, reply, _ = call(server, f'/predict?{query}', png())
    assert status == 400 and reply['error'].startswith('top must be')


@pytest.mark.parametrize(
    ('body', 'message'),
    [
        (b'garbage, not an image', 'not an image'),
        (png()[:100], 'damaged image'),
        (b'', 'empty body'),
    ],
)
def test_bad_image_is_400(server, body, message):
    status, reply, _ = call(server, '/predict', body, method='POST')
    assert status == 400 and reply['error'].startswith(message)


@pytest.mark.parametrize('size', [MAX_BYTES + 1, 4 * 2**20])
def test_too_large_is_413(server, size):
    """Even a client that sends a big body without waiting reads the 413, not a broken pipe."""
    status, reply, _ = call(server, '/predict', b'x' * size)
    assert status == 413
    assert reply['error'] == f'body of {size} bytes is over the limit of {MAX_BYTES}'


def test_too_large_is_refused_before_the_body_with_expect_100(server):
    connection = http.client.HTTPConnection('127.0.0.1', server.server_address[1], timeout=10)
    connection.putrequest('POST', '/predict')
    connection.putheader('Content-Length', str(10 * MAX_BYTES))
    connection.putheader('Expect', '100-continue')
    connection.endheaders()
    reply = connection.getresponse()  # answered without a byte of the body sent
    assert reply.status == 413 and 'over the limit' in json.loads(reply.read())['error']
    connection.close()


def test_no_content_length_is_411(server):
    connection = http.client.HTTPConnection('127.0.0.1', server.server_address[1], timeout=10)
    connection.putrequest('POST', '/predict')
    connection.endheaders()
    reply = connection.getresponse()
    assert reply.status == 411 and 'Content-Length' in json.loads(reply.read())['error']
    connection.close()


def test_chunked_body_is_411(server):
    """Chunked bodies (no Content-Length) are refused; the client still reads the reply."""
    connection = http.client.HTTPConnection('127.0.0.1', server.server_address[1], timeout=10)
    connection.request('POST', '/predict', iter([png()] * 50), encode_chunked=True)
    reply = connection.getresponse()
    assert reply.status == 411
    connection.close()


def test_a_refused_big_body_still_gets_its_reply(server):
    status, _, headers = call(server, '/health', b'x' * 2**21, method='POST')
    assert status == 405 and headers['Connection'] == 'close'


def test_a_client_that_hangs_up_early_does_not_stop_the_server(server):
    connection = http.client.HTTPConnection('127.0.0.1', server.server_address[1], timeout=10)
    connection.putrequest('POST', '/predict')
    connection.putheader('Content-Length', '1000')
    connection.endheaders(b'only a few bytes')
    connection.close()
    assert call(server, '/health')[0] == 200


def test_unknown_route_is_404(server):
    status, reply, _ = call(server, '/nothing')
    assert status == 404 and 'POST /predict' in reply['error']


@pytest.mark.parametrize(
    ('path', 'method', 'main', 'allowed'),
    [
        ('/predict', 'GET', 'POST', 'POST, OPTIONS'),
        ('/health', 'POST', 'GET', 'GET, HEAD, OPTIONS'),
        ('/predict', 'PUT', 'POST', 'POST, OPTIONS'),
        ('/', 'DELETE', 'GET', 'GET, HEAD, OPTIONS'),
    ],
)
def test_wrong_method_is_405(server, path, method, main, allowed):
    status, reply, headers = call(server, path, b'x' if method != 'GET' else None, method)
    assert status == 405 and headers['Allow'] == allowed
    assert reply == {'error': f'{path} takes {main}, not {method}'}


def test_concurrent_requests_get_the_same_answers(server):
    bodies = [png(seed % 3) for seed in range(12)]
    with ThreadPoolExecutor(6) as pool:
        replies = list(pool.map(lambda body: call(server, '/predict', body)[:2], bodies))
    assert all(status == 200 for status, _ in replies)
    for i, (_, reply) in enumerate(replies):  # batched with others: equal to float rounding
        first = replies[i % 3][1]['predictions']
        assert [p['label'] for p in reply['predictions']] == [p['label'] for p in first]
        assert [p['probability'] for p in reply['predictions']] == pytest.approx(
            [p['probability'] for p in first], rel=1e-5, abs=1e-9
        )


def test_keep_alive_serves_several_requests_on_one_connection(server):
    connection = http.client.HTTPConnection('127.0.0.1', server.server_address[1], timeout=10)
    for _ in range(2):
        connection.request('POST', '/predict', png())
        reply = connection.getresponse()
        assert reply.status == 200 and 'predictions' in json.loads(reply.read())
    connection.close()


def test_busy_port_gives_a_clear_error(server, predictor):
    with pytest.raises(serving.ServeError, match=r'cannot listen on 127\.0\.0\.1:\d+ \('):
        serving.make_server(predictor, '127.0.0.1', server.server_address[1])


def test_parser_checks_port_and_limit():
    parser = serving.build_parser()
    args = parser.parse_args(['-m', 'model.npz'])
    assert (args.host, args.port, args.max_bytes) == ('127.0.0.1', 8000, serving.MAX_BYTES)
    for flags in (['--port', '70000'], ['--max-bytes', '0']):
        with pytest.raises(SystemExit):
            parser.parse_args(['-m', 'model.npz', *flags])


def test_the_start_up_line_names_the_backend_and_its_threads(monkeypatch):
    """`serve` says what runs the model: Chainer on the CPU with the kernels' thread count,
    or ONNX Runtime with its own."""
    import chainer
    import numpy as np

    from inference.predictor import Predictor
    from layers import onednn, runtime
    from serving.server import backend_of

    monkeypatch.setenv('OMP_NUM_THREADS', '3')
    link = chainer.links.Linear(3 * 32 * 32, 10)
    chainer_predictor = Predictor(link, [str(i) for i in range(10)], '32')
    monkeypatch.setattr(onednn, 'version', lambda: None)
    assert (
        backend_of(chainer_predictor)
        == 'chainer, CPU, 3 threads'
        == (f'chainer, CPU, {runtime.thread_count()} threads')
    )
    monkeypatch.setattr(onednn, 'version', lambda: '3.2.0')
    assert backend_of(chainer_predictor) == 'chainer, CPU, 3 threads, oneDNN 3.2.0 convolutions'

    class Onnx:  # an ONNX backend's forward: a callable with its thread count
        threads = 2

        def __call__(self, x):
            return np.zeros((len(x), 10), np.float32)

    assert backend_of(Predictor(Onnx(), chainer_predictor.labels, '32')) == (
        'onnx runtime, CPU, 2 threads'
    )
