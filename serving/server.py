"""The prediction service: connections on one asyncio loop, images on a few worker threads.

Why this shape: a connection costs a socket and a coroutine, not a thread, so slow or idle
clients cannot use up the workers. Only a complete request reaches the bounded pool of
``workers`` threads that decode and shrink images to 32x32; the model then classifies the
images waiting for it together, one batched forward pass at a time on its own thread (a
pass over 32 images costs about what 3 single ones do). Memory is bounded at each step:

- the request head (64 KiB) and body (``max_bytes``) of at most ``max_connections``
  connections, bodies held at once within UPLOAD_MEMORY (a request waits for its share).
  A share is taken only once the body has begun to arrive, and kept only while the body
  keeps pace to arrive within the timeout (after PACE_GRACE seconds, the part received
  at least the part of the time gone), so connections that declare large bodies and
  send nothing, or a byte now and then, cannot hold the budget that honest uploads need;
- decoding: at most ``workers`` images at once, each within ``max_pixels`` read from its
  header before decoding (``trainer.images``), so about
  ``workers * max_pixels * BYTES_PER_PIXEL`` in all; freed heap pages go back to the
  system after a large image (glibc's malloc_trim).

Time is bounded too: the whole request (head and body) must arrive within ``timeout``
seconds (else 408), an idle keep-alive connection is closed after ``idle_timeout``, and
a burst of connections waits in a listen backlog of BACKLOG.

Stopping drains: on ``shutdown()`` or a stop signal (``run``: SIGTERM, SIGINT) the server
stops accepting, closes idle connections, lets the requests in flight finish within
``drain`` seconds (answered with ``Connection: close``), then drops what is left; a second
signal drops it at once.
"""

import asyncio
import collections
import contextlib
import functools
import importlib.resources
import json
import logging
import resource
import signal
import socket
import sys
import threading
import time
from collections.abc import AsyncIterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from inference.predictor import BATCH, DEFAULT_TOP, ChainerForward, Predictor, top_k
from layers import onednn, runtime
from serving.protocol import (
    KNOWN_METHODS,
    ClientGone,
    HTTPError,
    Request,
    Stream,
    escape,
    form_file,
    is_form,
    read_head,
    response,
)
from trainer import validators
from trainer.errors import ImageError, ServeError
from trainer.images import BYTES_PER_PIXEL, ImageTooLargeError, open_image, to_cifar_image

logger = logging.getLogger('serving')

MAX_BYTES = 10 * 2**20  # largest image upload, 10 MiB
# Largest decoded image: a 7,300 x 5,500 PNG (up to 400 MB to decode); JPEGs count at the
# 1/2 to 1/8 scale they are decoded at, so photos pass up to Pillow's own 179 MP limit.
MAX_PIXELS = 40_000_000
WORKERS = 2  # images decoded at once; the model classifies them in shared batches
TIMEOUT = 30.0  # seconds for a whole request, head and body
IDLE_TIMEOUT = 5.0  # seconds a keep-alive connection may wait for its next request
MAX_CONNECTIONS = 512  # open connections; more are answered 503 at once
BACKLOG = 1024  # connections the kernel holds before they are accepted
UPLOAD_MEMORY = 128 * 2**20  # request bodies held at once, bytes
# Seconds a body holding its share of UPLOAD_MEMORY may lag behind the pace that gets it in
# within the timeout (slow start, a pause) before it is cut off (408) and its share freed.
PACE_GRACE = 1.0
DRAIN_SECONDS = 10.0  # on stopping, how long requests in flight may take to finish
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)  # what stops ``run`` (draining)
# After an error reply, read and drop up to LINGER_BYTES of what the client still sends,
# for at most LINGER_SECONDS, before closing (nginx's lingering close): a client that sends
# its whole body without waiting then reads the 413 (411, 405...) instead of a reset.
LINGER_BYTES = 64 * 2**20
LINGER_SECONDS = 2.0
TRIM_BYTES = 64 * 2**20  # after decoding an image this large, return freed memory
# Formats a hostile upload may use: common raster formats Pillow decodes itself (no EPS,
# which runs Ghostscript, nor rarely used legacy decoders).
FORMATS = ('PNG', 'JPEG', 'GIF', 'BMP', 'TIFF', 'WEBP')  # JPEG opens MPO too
JSON = 'application/json'
PAGE_FILES = {  # the web page: path -> (file in page/, content type)
    '/': ('index.html', 'text/html; charset=utf-8'),
    '/page.css': ('page.css', 'text/css; charset=utf-8'),
    '/page.js': ('page.js', 'text/javascript; charset=utf-8'),
}
ROUTES = {'/health': 'GET', '/predict': 'POST'} | {path: 'GET' for path in PAGE_FILES}
PAGE_HEADERS = {
    'Cache-Control': 'no-cache',
    'Content-Security-Policy': "default-src 'none'; script-src 'self'; style-src 'self'; "
    "img-src 'self' blob: data:; connect-src 'self'; base-uri 'none'; form-action 'none'; "
    "frame-ancestors 'none'",
}


@dataclass
class Reply:
    """One response to send; ``close`` ends the connection after it (lingering)."""

    status: int
    body: bytes = b''
    content_type: str = JSON
    headers: dict = field(default_factory=dict)
    close: bool = False
    head: bool = False  # a HEAD request: headers only

    @classmethod
    def json(cls, status: int, payload: dict, **kwargs) -> 'Reply':
        return cls(status, json.dumps(payload).encode(), **kwargs)


@dataclass(frozen=True)
class Drained:
    """How a stop went: requests in flight when it began, those dropped, seconds taken."""

    in_flight: int
    dropped: int
    seconds: float


class PredictionServer:
    """Answers /predict, /health and the page with one shared Predictor.

    Use like socketserver's servers: ``serve_forever()`` (in any thread), ``shutdown()``
    from another thread, ``server_close()``; or ``with server: server.serve_forever()``.

    Args:
        sock: a bound, listening TCP socket.
        predictor: the loaded model.
        max_bytes: largest request body accepted (413 beyond, from the header).
        top: predictions per image when the request has no ``?top=``.
        max_pixels: largest decoded image (413 beyond, from the image header).
        workers: threads decoding images, so images decoded at once.
        timeout: seconds for a whole request, head and body (408 beyond).
        idle_timeout: seconds an open connection may wait for a request.
        max_connections: open connections at once (503 beyond).
        drain: on stopping, seconds the requests in flight may take to finish.
    """

    def __init__(
        self,
        sock: socket.socket,
        predictor: Predictor,
        max_bytes: int = MAX_BYTES,
        top: int = DEFAULT_TOP,
        *,
        max_pixels: int = MAX_PIXELS,
        workers: int = WORKERS,
        timeout: float = TIMEOUT,
        idle_timeout: float = IDLE_TIMEOUT,
        max_connections: int = MAX_CONNECTIONS,
        drain: float = DRAIN_SECONDS,
    ) -> None:
        self.socket = sock
        self.server_address = sock.getsockname()
        self.predictor = predictor
        self.max_bytes = max_bytes
        self.top = top
        self.max_pixels = max_pixels
        self.workers = workers
        self.timeout = timeout
        self.idle_timeout = idle_timeout
        self.max_connections = max_connections
        self.drain = drain
        self.stopped_by: str | None = None  # the signal that stopped serve_forever, if one did
        self.drained: Drained | None = None  # how the last stop went
        self.pages = {path: _page(name, kind) for path, (name, kind) in PAGE_FILES.items()}
        runtime.return_freed_memory()  # a decoded bomb's memory goes back, not the training's way
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix='decode')
        self._batcher = _Batcher(predictor, BATCH)
        self._connections: set[asyncio.Task] = set()
        self._busy: set[asyncio.Task] = set()  # connections in the middle of a request
        self._draining = False
        self._hurry: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._stop_requested = False
        self._lock = threading.Lock()
        self._stopped = threading.Event()

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f'http://[{host}]:{port}' if ':' in host else f'http://{host}:{port}'

    def health(self) -> dict:
        """What /health answers: the model and the limits, for clients and the page."""
        return {
            'status': 'ok',
            'model': self.predictor.name,
            'classes': len(self.predictor.labels),
            'labels': list(self.predictor.labels),
            'preset': self.predictor.preset,
            'top': self.top,
            'max_bytes': self.max_bytes,
            'max_pixels': self.max_pixels,
        }

    def serve_forever(self, stop_signals: Sequence[int] = ()) -> None:
        """Serve on this thread until ``shutdown()`` or one of ``stop_signals``, then drain.

        ``stop_signals`` (main thread only, e.g. STOP_SIGNALS) stop the server as
        ``shutdown()`` does: no new connection, the requests in flight finish within
        ``drain`` seconds; a second signal drops them at once. ``drained`` then says how
        it went.
        """
        self._stopped.clear()
        try:
            asyncio.run(self._serve(tuple(stop_signals)))
        finally:
            self._stopped.set()

    def shutdown(self) -> None:
        """Stop ``serve_forever`` (from another thread) and wait until it has returned."""
        with self._lock:
            self._stop_requested = True
            loop, stop = self._loop, self._stop
        if loop is not None and stop is not None:
            with contextlib.suppress(RuntimeError):  # the loop has already closed
                loop.call_soon_threadsafe(stop.set)
            self._stopped.wait()

    def server_close(self) -> None:
        """Close the listening socket and the worker pool."""
        self.socket.close()
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._batcher.thread.shutdown(wait=False, cancel_futures=True)

    def __enter__(self) -> 'PredictionServer':
        return self

    def __exit__(self, *exc_info) -> None:
        self.server_close()

    async def _serve(self, stop_signals: tuple[int, ...] = ()) -> None:
        self._uploads = _Budget(max(UPLOAD_MEMORY, self.max_bytes))
        self._draining, self.stopped_by, self.drained = False, None, None
        self._hurry = asyncio.Event()
        server = await asyncio.start_server(self._accept, sock=self.socket, backlog=BACKLOG)
        loop = asyncio.get_running_loop()
        with self._lock:
            self._loop, self._stop = loop, asyncio.Event()
            if self._stop_requested:
                self._stop.set()
        for number in stop_signals:
            loop.add_signal_handler(number, self._signalled, number)
        try:
            await self._stop.wait()
        finally:
            server.close()  # no new connection from here on
            if asyncio.current_task().cancelling():  # interrupted (Ctrl-C without handlers)
                self._hurry.set()
            await self._drain()
            for number in stop_signals:
                loop.remove_signal_handler(number)
            with self._lock:
                self._loop = self._stop = None

    def _signalled(self, number: int) -> None:
        """A stop signal: the first starts draining, a second drops what is left."""
        if self._stop.is_set():
            self._hurry.set()
        else:
            self.stopped_by = signal.Signals(number).name
            self._stop.set()

    async def _drain(self) -> None:
        """Close idle connections, give requests in flight ``drain`` s, drop the rest."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        self._draining = True
        for task in self._connections - self._busy:  # waiting for a request: nothing lost
            task.cancel()
        in_flight = set(self._busy)
        pending = set(in_flight)
        hurry = asyncio.ensure_future(self._hurry.wait())
        deadline = started + self.drain
        while pending and not self._hurry.is_set() and loop.time() < deadline:
            _, pending = await asyncio.wait(
                pending | {hurry},
                timeout=deadline - loop.time(),
                return_when=asyncio.FIRST_COMPLETED,
            )
            pending.discard(hurry)
        hurry.cancel()
        dropped = sum(not task.done() for task in in_flight)
        for task in list(self._connections):
            task.cancel()
        await asyncio.gather(*self._connections, hurry, return_exceptions=True)
        self.drained = Drained(len(in_flight), dropped, loop.time() - started)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """One connection, from accept to close; nothing it raises stops the server."""
        task = asyncio.current_task()
        self._connections.add(task)
        peer = writer.get_extra_info('peername')
        client = escape(str(peer[0])) if peer else '-'
        stream = Stream(reader)
        try:
            if len(self._connections) > self.max_connections:
                busy = {'error': 'server busy: too many connections, retry later'}
                reply = Reply.json(503, busy, headers={'Retry-After': '1'}, close=True)
                await self._finish(stream, writer, client, '-', reply, time.monotonic())
            else:
                await self._connection(stream, writer, client)
        except (ConnectionError, ClientGone, TimeoutError):
            pass
        except Exception:  # a bug: log it, drop this connection, keep serving
            logger.exception('error while serving %s', client)
        finally:
            self._connections.discard(task)
            if task.cancelling():  # shutting down: drop what is unsent
                writer.transport.abort()
            else:
                writer.close()

    async def _connection(self, stream: Stream, writer: asyncio.StreamWriter, client: str):
        """Requests of one connection, in turn, until it closes, idles out or the server stops."""
        task = asyncio.current_task()
        while not self._draining:
            if not stream.buffer:  # idle: wait for the first byte of the next request
                try:
                    async with asyncio.timeout(self.idle_timeout):
                        if not await stream.fill():
                            return
                except TimeoutError:
                    return
            self._busy.add(task)  # in flight from its first byte: a stop lets it finish
            try:
                if not await self._request(stream, writer, client):
                    return
            finally:
                self._busy.discard(task)

    async def _request(self, stream: Stream, writer: asyncio.StreamWriter, client: str) -> bool:
        """Read, answer and log one request; False if the connection ends after it."""
        started = time.monotonic()
        deadline = asyncio.get_running_loop().time() + self.timeout
        line, request = '-', None
        try:
            try:
                async with asyncio.timeout_at(deadline):
                    request, line = await read_head(stream)
            except TimeoutError:
                raise HTTPError(408, self._late()) from None
            reply = await self._route(request, stream, writer, deadline)
        except HTTPError as error:
            line = error.line or line
            head = request is not None and request.method == 'HEAD'
            reply = Reply.json(
                error.status,
                {'error': error.message},
                headers=error.headers,
                close=True,
                head=head,
            )
        if (request is not None and not request.keep_alive) or self._draining:
            reply.close = True
        return await self._finish(stream, writer, client, line, reply, started)

    async def _finish(
        self,
        stream: Stream,
        writer: asyncio.StreamWriter,
        client: str,
        line: str,
        reply: Reply,
        started: float,
    ) -> bool:
        """Send ``reply``, log it; linger and return False if the connection ends."""
        reply.headers.setdefault('X-Content-Type-Options', 'nosniff')
        reply.headers['Connection'] = 'close' if reply.close else 'keep-alive'
        data = response(reply.status, reply.body, reply.content_type, reply.headers, reply.head)
        writer.write(data)
        async with asyncio.timeout(self.timeout):
            await writer.drain()
        milliseconds = (time.monotonic() - started) * 1000
        logger.info(
            '%s "%s" %d %d %.0fms',
            client,
            escape(line[:1000]),
            reply.status,
            len(reply.body),
            milliseconds,
        )
        if reply.close:
            if writer.can_write_eof():
                writer.write_eof()
            with contextlib.suppress(TimeoutError, ConnectionError):
                async with asyncio.timeout(LINGER_SECONDS):
                    await stream.discard(LINGER_BYTES)
        return not reply.close

    async def _route(
        self, request: Request, stream: Stream, writer: asyncio.StreamWriter, deadline: float
    ) -> Reply:
        method, path = request.method, request.path
        if method not in KNOWN_METHODS:
            raise HTTPError(501, f'method {method} is not supported')
        if path == '*' and method == 'OPTIONS':
            return Reply(204, headers={'Allow': 'GET, HEAD, POST, OPTIONS'})
        main = ROUTES.get(path)
        if main is None:
            raise HTTPError(404, f'no route {path}: use GET /, GET /health or POST /predict')
        allowed = 'POST, OPTIONS' if main == 'POST' else 'GET, HEAD, OPTIONS'
        if method == 'OPTIONS':
            return Reply(204, headers={'Allow': allowed})
        if method not in allowed.split(', '):
            raise HTTPError(405, f'{path} takes {main}, not {method}', {'Allow': allowed})
        if path == '/predict':
            return await self._predict(request, stream, writer, deadline)
        # GET or HEAD: a body, if any was sent, is not read, so the connection then ends
        has_body = 'transfer-encoding' in request.headers or request.content_length()
        head = method == 'HEAD'
        if path == '/health':
            return Reply.json(200, self.health(), head=head, close=bool(has_body))
        body, kind = self.pages[path]
        return Reply(200, body, kind, dict(PAGE_HEADERS), close=bool(has_body), head=head)

    async def _predict(
        self, request: Request, stream: Stream, writer: asyncio.StreamWriter, deadline: float
    ) -> Reply:
        """Check the request from its head, read the body, classify it on a worker."""
        try:
            top = validators.positive(request.query.get('top', [str(self.top)])[-1])
        except ValueError as error:
            raise HTTPError(400, f'top {error}') from None
        length = request.content_length()
        if length is None:  # chunked bodies are not supported
            raise HTTPError(411, 'Content-Length required: send the image bytes as the body')
        if length > self.max_bytes:
            raise HTTPError(413, f'body of {length} bytes is over the limit of {self.max_bytes}')
        if length == 0:
            raise HTTPError(400, 'empty body: send the image bytes')
        content_type = request.header('Content-Type')
        expect = request.header('Expect')
        if expect is not None and request.version >= (1, 1):
            if expect.lower() != '100-continue':
                raise HTTPError(417, f'Expect: {expect} is not supported')
            writer.write(b'HTTP/1.1 100 Continue\r\n\r\n')
        try:  # a share of the upload budget only for a body that has begun to arrive
            async with asyncio.timeout_at(deadline):
                if not stream.buffer and not await stream.fill():
                    raise HTTPError(400, f'body ended after 0 of {length} bytes')
        except TimeoutError:
            raise HTTPError(408, self._late()) from None
        async with self._uploads.hold(length, deadline):
            body = await self._receive(stream, length, deadline)
            loop = asyncio.get_running_loop()
            try:
                image = await loop.run_in_executor(self._pool, self._decode, body, content_type)
            finally:
                del body  # the upload is released with its budget share, before the model
        try:
            probabilities = await self._batcher.probabilities(image)
        except Exception:  # a bug, not the client's fault: log it, answer, keep serving
            logger.exception('prediction failed')
            raise HTTPError(500, 'internal error while predicting') from None
        predictions = top_k(probabilities, self.predictor.labels, top)
        items = [{'label': p.label, 'probability': p.probability} for p in predictions]
        return Reply.json(200, {'predictions': items})

    async def _receive(self, stream: Stream, length: int, deadline: float) -> bytearray:
        """The body, which must keep pace to arrive by ``deadline``; HTTPError (408, 400).

        After PACE_GRACE seconds, the part received must be at least the part of the time
        gone, so a body that trickles in cannot hold its share of the budget to the end.
        """
        loop = asyncio.get_running_loop()
        start = loop.time()
        allowed = max(deadline - start, 1e-3)
        body = bytearray()
        while len(body) < length:
            due = min(deadline, start + PACE_GRACE + allowed * len(body) / length)
            try:
                async with asyncio.timeout_at(due):
                    chunk = await stream.some(length - len(body))
            except TimeoutError:
                if due >= deadline:
                    raise HTTPError(408, self._late()) from None
                raise HTTPError(
                    408,
                    f'body too slow: {len(body)} of {length} bytes in {loop.time() - start:.1f} '
                    f's, at a pace that would not arrive within {self.timeout:g} s',
                ) from None
            if not chunk:
                raise HTTPError(400, f'body ended after {len(body)} of {length} bytes')
            body += chunk
        return body

    def _decode(self, body: bytes | bytearray, content_type: str | None = None) -> Image.Image:
        """On a worker: the 32x32 image of ``body``, decoded within the limits; HTTPError.

        The body is the image's bytes, or a ``multipart/form-data`` form holding it.
        """
        image = None
        try:
            if is_form(content_type):
                body = form_file(body, content_type)
            image = open_image(body, self.max_pixels, FORMATS)
            return to_cifar_image(image)
        except ImageTooLargeError as error:
            raise HTTPError(413, str(error)) from None
        except ImageError as error:
            raise HTTPError(400, str(error)) from None
        except HTTPError:  # a malformed form
            raise
        except Exception:  # a bug, not the client's fault: log it, answer, keep serving
            logger.exception('decoding failed')
            raise HTTPError(500, 'internal error while decoding') from None
        finally:
            large = image is not None and image.width * image.height * BYTES_PER_PIXEL
            image = None
            if large and large >= TRIM_BYTES:
                runtime.release_memory()

    def _late(self) -> str:
        return f'request not received in full within {self.timeout:g} s'


class _Batcher:
    """Images waiting for the model, classified together, one forward pass at a time.

    While a pass runs on the model's thread, newly decoded images wait; the next pass takes
    up to ``size`` of them. A lone request waits for nothing. Chainer runs one pass at a
    time anyway, and on the CPU a pass over 32 images costs about what 3 single ones do.
    """

    def __init__(self, predictor: Predictor, size: int) -> None:
        self.predictor = predictor
        self.size = size
        self.thread = ThreadPoolExecutor(1, thread_name_prefix='forward')
        self._waiting: collections.deque = collections.deque()
        self._running = False

    async def probabilities(self, image: Image.Image) -> np.ndarray:
        """The class probabilities of one 32x32 image, from a batched forward pass."""
        future = asyncio.get_running_loop().create_future()
        self._waiting.append((image, future))
        if not self._running:
            self._next()
        return await future

    def _next(self) -> None:
        batch = []
        while self._waiting and len(batch) < self.size:
            image, future = self._waiting.popleft()
            if not future.done():  # its client may have gone (cancelled)
                batch.append((image, future))
        self._running = bool(batch)
        if batch:
            images = [image for image, _ in batch]
            loop = asyncio.get_running_loop()
            forward = loop.run_in_executor(self.thread, self.predictor.probabilities, images)
            forward.add_done_callback(functools.partial(self._done, batch))

    def _done(self, batch: list, forward: asyncio.Future) -> None:
        error = asyncio.CancelledError() if forward.cancelled() else forward.exception()
        for i, (_, future) in enumerate(batch):
            if future.done():
                continue
            if error is not None:
                future.set_exception(error)
            else:
                future.set_result(forward.result()[i])
        self._next()


class _Budget:
    """Bytes of request bodies held at once: a request waits for its share of ``total``."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.free = total
        self._changed = asyncio.Condition()

    @contextlib.asynccontextmanager
    async def hold(self, amount: int, deadline: float) -> AsyncIterator[None]:
        """Hold ``amount`` bytes while the block runs; HTTPError(503) if none by ``deadline``."""
        async with self._changed:
            try:
                async with asyncio.timeout_at(deadline):
                    await self._changed.wait_for(lambda: self.free >= amount)
            except TimeoutError:
                raise HTTPError(503, 'server busy: too many uploads, retry later') from None
            self.free -= amount
        try:
            yield
        finally:
            self.free += amount
            async with self._changed:
                self._changed.notify_all()


def _page(name: str, kind: str) -> tuple[bytes, str]:
    return (importlib.resources.files(__package__) / 'page' / name).read_bytes(), kind


def make_server(
    predictor: Predictor,
    host: str = '127.0.0.1',
    port: int = 8000,
    max_bytes: int = MAX_BYTES,
    top: int = DEFAULT_TOP,
    **options,
) -> PredictionServer:
    """A PredictionServer listening on host:port; raises ServeError if it cannot.

    ``options`` are PredictionServer's keyword arguments (max_pixels, workers, timeout,
    idle_timeout, max_connections).
    """
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
        sock = socket.create_server((host, port), family=family, backlog=BACKLOG)
    except OSError as error:
        raise ServeError(f'cannot listen on {host}:{port} ({error.strerror or error})') from None
    return PredictionServer(sock, predictor, max_bytes, top, **options)


def run(server: PredictionServer) -> None:
    """Serve until SIGTERM or SIGINT, drain, close; log the address, then one line on stopping.

    The stop drains (``PredictionServer.serve_forever``): requests in flight are answered
    within ``server.drain`` seconds. The last line says what stopped it, how many requests
    were in flight and dropped, and the peak memory.
    """
    logger.info(
        'serving %s (%d classes, preset %s) at %s on %s, with %d workers, images up to %s pixels',
        server.predictor.name,
        len(server.predictor.labels),
        server.predictor.preset,
        server.url,
        backend_of(server.predictor),
        server.workers,
        f'{server.max_pixels:,}',
    )
    main = threading.current_thread() is threading.main_thread()
    with server:
        try:
            server.serve_forever(STOP_SIGNALS if main else ())
        except KeyboardInterrupt:
            pass
    drained = server.drained
    if server.stopped_by is not None and drained is not None:
        logger.info(
            '%s: stopped accepting; %d requests in flight finished, %d dropped, in %.1f s; '
            'peak memory %.0f MiB',
            server.stopped_by,
            drained.in_flight - drained.dropped,
            drained.dropped,
            drained.seconds,
            peak_rss() / 2**20,
        )
    else:
        logger.info('stopped; peak memory %.0f MiB', peak_rss() / 2**20)


def backend_of(predictor: Predictor) -> str:
    """What runs the model, for the start-up line: 'chainer, CPU, 2 threads, oneDNN 3.2.0
    convolutions' and the like (oneDNN where ``layers.onednn`` loads it)."""
    forward = predictor.forward
    if isinstance(forward, ChainerForward):
        if forward.device.xp is np:
            convolutions = onednn.version()
            kernels = f', oneDNN {convolutions} convolutions' if convolutions else ''
            return f'chainer, CPU, {runtime.thread_count()} threads{kernels}'
        return f'chainer, {forward.device}'
    threads = getattr(forward, 'threads', None)
    return 'onnx runtime, CPU' + (f', {threads} threads' if threads else '')


def peak_rss() -> int:
    """This process's peak resident memory in bytes (Linux: ru_maxrss is in KiB)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == 'darwin' else peak * 1024
