"""The predictions of ``trainer.predict`` over HTTP, with the standard library only.

    POST /predict[?top=K]  body: the raw image bytes -> {"predictions": [{"label", "probability"}]}
    GET  /health                                     -> {"status": "ok", "classes": N}

Errors are JSON ``{"error": "..."}``: 400 bad image or query, 411 no Content-Length, 413
body over the limit (refused from the header, before reading), 404 unknown route, 405
wrong method. The model is loaded once; ``Predictor`` serializes the forward passes while
requests are decoded in parallel, one thread each.
"""

import argparse
import json
import logging
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from trainer import validators
from trainer.cli import add_model_arguments
from trainer.errors import ImageError, ServeError
from trainer.images import open_image
from trainer.predict import DEFAULT_TOP, Predictor

logger = logging.getLogger(__name__)

MAX_BYTES = 10 * 2**20  # largest accepted image upload, 10 MiB
TIMEOUT = 30  # seconds a connection may stall before it is dropped
# After an error reply, discard up to this much of the unread body (within LINGER_SECONDS)
# before closing, as nginx's lingering close does: a client that sends its whole body
# without waiting (no "Expect: 100-continue") then reads the 413 (411, 405, ...) instead
# of a broken pipe.
LINGER_BYTES = 64 * 2**20
LINGER_SECONDS = 2.0
ROUTES = {'/health': 'GET', '/predict': 'POST'}


class PredictionServer(ThreadingHTTPServer):
    """A threading HTTP server answering with one shared Predictor.

    Args:
        address: (host, port) to listen on; port 0 picks a free one.
        predictor: the loaded model.
        max_bytes: largest request body accepted.
        top: predictions per image when the request has no ``?top=``.
    """

    def __init__(
        self,
        address: tuple[str, int],
        predictor: Predictor,
        max_bytes: int = MAX_BYTES,
        top: int = DEFAULT_TOP,
    ) -> None:
        self.predictor = predictor
        self.max_bytes = max_bytes
        self.top = top
        super().__init__(address, Handler)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f'http://{host}:{port}'

    def handle_error(self, request, client_address) -> None:
        """Log a failed connection: a client that went away briefly, anything else in full."""
        error = sys.exc_info()[1]
        if isinstance(error, ConnectionError | TimeoutError):
            logger.warning('%s: connection lost (%s)', client_address[0], error)
        else:
            logger.exception('error while serving %s', client_address[0])


class Handler(BaseHTTPRequestHandler):
    """Routes requests to /health and /predict; every reply is JSON with a Content-Length."""

    server: PredictionServer
    protocol_version = 'HTTP/1.1'
    timeout = TIMEOUT

    def do_GET(self) -> None:
        self._route('GET')

    def do_POST(self) -> None:
        self._route('POST')

    def do_PUT(self) -> None:
        self._route('PUT')

    def do_DELETE(self) -> None:
        self._route('DELETE')

    def do_PATCH(self) -> None:
        self._route('PATCH')

    def _route(self, method: str) -> None:
        self._body_read = False
        url = urlsplit(self.path)
        allowed = ROUTES.get(url.path)
        if allowed is None:
            self._error(404, f'no route {url.path}: use GET /health or POST /predict')
        elif method != allowed:
            self._error(405, f'{url.path} takes {allowed}, not {method}', {'Allow': allowed})
        elif url.path == '/health':
            self._reply(200, {'status': 'ok', 'classes': len(self.server.predictor.labels)})
        else:
            self._predict(parse_qs(url.query))

    def _predict(self, query: dict) -> None:
        try:
            top = validators.positive(query.get('top', [str(self.server.top)])[-1])
        except ValueError as error:
            return self._error(400, f'top {error}')
        length = self.headers.get('Content-Length')
        if length is None or 'Transfer-Encoding' in self.headers:  # chunked bodies unsupported
            return self._error(411, 'Content-Length required: send the image bytes as the body')
        try:
            length = validators.non_negative(length)
        except ValueError as error:
            return self._error(400, f'Content-Length {error}')
        if length > self.server.max_bytes:
            return self._error(413, self._too_large(length))
        body = self.rfile.read(length)
        self._body_read = True
        if len(body) < length:
            return self._error(400, f'body ended after {len(body)} of {length} bytes')
        if not body:
            return self._error(400, 'empty body: send the image bytes')
        try:
            predictions = self.server.predictor.predict([open_image(body)], top)[0]
        except ImageError as error:
            return self._error(400, str(error))
        except Exception:  # a bug, not the client's fault: log it, answer, keep serving
            logger.exception('prediction failed')
            return self._error(500, 'internal error while predicting')
        items = [{'label': p.label, 'probability': p.probability} for p in predictions]
        self._reply(200, {'predictions': items})

    def handle_expect_100(self) -> bool:
        """Answer "Expect: 100-continue" with 413 at once when the body would be too large."""
        length = self.headers.get('Content-Length', '')
        if urlsplit(self.path).path == '/predict' and length.isdigit():
            if int(length) > self.server.max_bytes:
                self._error(413, self._too_large(int(length)), discard=False)
                return False
        return super().handle_expect_100()

    def _too_large(self, length: int) -> str:
        return f'body of {length} bytes is over the limit of {self.server.max_bytes}'

    def _unread(self) -> int:
        """How much of this request's body is still unread, at most LINGER_BYTES."""
        if self._body_read:
            return 0
        if 'Transfer-Encoding' in self.headers:
            return LINGER_BYTES
        length = self.headers.get('Content-Length', '')
        return min(int(length), LINGER_BYTES) if length.isdigit() else 0

    def _discard(self, length: int) -> None:
        """Read and drop up to ``length`` bytes, for at most LINGER_SECONDS."""
        if length <= 0:
            return
        deadline = time.monotonic() + LINGER_SECONDS
        try:
            self.wfile.flush()
            while length > 0 and (left := deadline - time.monotonic()) > 0:
                self.connection.settimeout(left)
                chunk = self.rfile.read1(min(length, 2**16))
                if not chunk:
                    break
                length -= len(chunk)
        except OSError:
            pass

    def _error(
        self, status: int, message: str, headers: dict | None = None, discard: bool = True
    ) -> None:
        """Reply with ``{"error": message}`` and close: an unread body must not be parsed.

        With ``discard``, what the client still sends of the body is read and dropped first
        (see LINGER_BYTES); not before "100 Continue", when it has sent none.
        """
        self.close_connection = True
        self._reply(status, {'error': message}, {'Connection': 'close', **(headers or {})})
        if discard:
            self._discard(self._unread())

    def _reply(self, status: int, payload: dict, headers: dict | None = None) -> None:
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header('Content-Type', 'application/json')
        self.send_header('Content-Length', str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args) -> None:
        logger.info('%s %s', self.address_string(), format % args)


def make_server(
    predictor: Predictor,
    host: str = '127.0.0.1',
    port: int = 8000,
    max_bytes: int = MAX_BYTES,
    top: int = DEFAULT_TOP,
) -> PredictionServer:
    """A bound PredictionServer; raises ServeError when the address cannot be used."""
    try:
        return PredictionServer((host, port), predictor, max_bytes, top)
    except OSError as error:
        raise ServeError(f'cannot listen on {host}:{port} ({error.strerror or error})') from None


def run(server: PredictionServer) -> None:
    """Serve until interrupted (Ctrl-C), then close the socket."""
    logger.info('serving a %d-class model on %s', len(server.predictor.labels), server.url)
    with server:
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            logger.info('stopped')


def build_parser(prog: str | None = None) -> argparse.ArgumentParser:
    """The command line of ``serve``: the model flags of predict plus address and limit."""
    parser = argparse.ArgumentParser(
        prog=prog,
        description='Serve predictions over HTTP: POST /predict with the image bytes as body '
        '(?top=K), GET /health.',
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add_model_arguments(parser)
    add = parser.add_argument
    add('--host', default='127.0.0.1', help='address to listen on (0.0.0.0: all interfaces)')
    add(
        '--port',
        type=validators.argtype(validators.integer, 0, 65535),
        default=8000,
        help='TCP port (0: any free one)',
    )
    add(
        '--max-bytes',
        type=validators.argtype(validators.positive),
        default=MAX_BYTES,
        help='largest image upload',
    )
    return parser
