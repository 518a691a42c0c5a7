"""Serving: the predictions of ``inference`` over HTTP, standard library only.

    GET  /                                        the web page: pick or drop an image
    POST /predict[?top=K]  body: the image bytes -> {"predictions": [{"label", "probability"}]}
                           (or a multipart/form-data form with the file: curl -F file=@cat.jpg)
    GET  /health                                 -> {"status": "ok", "model", "classes", ...}

Every error is JSON ``{"error": "..."}`` with its status: 400 bad image, query or request
(malformed or conflicting Content-Length, bad headers), 404 unknown path, 405 wrong
method, 408 request not received in time, 411 no Content-Length, 413 body or decoded image
over the limit, 414/431 request line or headers too long, 501 unknown method, 503 busy,
505 not HTTP/1.x. ``server`` says how memory and time are bounded; ``protocol`` reads
requests; ``page/`` is the web page; ``cli`` is the command line of ``main.py serve``.
Built on ``inference`` (the Predictor, image decoding), which imports nothing from here.
"""

import chainer_compat  # noqa: F401  (first: lets Chainer import on current stacks)

# isort: split
from serving.cli import build_parser
from serving.server import (
    IDLE_TIMEOUT,
    MAX_BYTES,
    MAX_CONNECTIONS,
    MAX_PIXELS,
    TIMEOUT,
    WORKERS,
    PredictionServer,
    make_server,
    peak_rss,
    run,
)
from trainer.errors import ServeError

__all__ = [
    'IDLE_TIMEOUT',
    'MAX_BYTES',
    'MAX_CONNECTIONS',
    'MAX_PIXELS',
    'TIMEOUT',
    'WORKERS',
    'PredictionServer',
    'ServeError',
    'build_parser',
    'make_server',
    'peak_rss',
    'run',
]
