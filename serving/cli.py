"""The command line of ``main.py serve``: the model flags of predict, address and limits."""

import argparse

from inference.cli import add_model_arguments
from serving.server import MAX_BYTES, MAX_PIXELS, TIMEOUT, WORKERS
from trainer import validators
from trainer.help_format import HelpFormatter
from trainer.images import BYTES_PER_PIXEL


def build_parser(prog: str | None = None) -> argparse.ArgumentParser:
    """The parser of ``serve``; its values are make_server's arguments of the same names."""
    parser = argparse.ArgumentParser(
        prog=prog,
        description='Serve predictions over HTTP: a web page at /, POST /predict with the '
        'image bytes as body (?top=K), GET /health.',
        formatter_class=HelpFormatter,
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
        help='largest image upload, bytes',
    )
    add(
        '--max-pixels',
        type=validators.argtype(validators.positive),
        default=MAX_PIXELS,
        help='largest decoded image, pixels (read from its header before decoding; JPEGs '
        'count at the 1/2 to 1/8 scale they are decoded at)',
    )
    add(
        '--workers',
        type=validators.argtype(validators.integer, 1, 64),
        default=WORKERS,
        help='images decoded at once (memory: about workers x max-pixels x '
        f'{BYTES_PER_PIXEL} bytes); the model classifies them in shared batches',
    )
    add(
        '--timeout',
        type=validators.argtype(validators.positive_float),
        default=TIMEOUT,
        help='seconds for a whole request, headers and body (408 after)',
    )
    return parser
