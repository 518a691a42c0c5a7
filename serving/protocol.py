"""HTTP/1.1 on asyncio streams: read one request's head and body, write one response.

Only what the service needs, strictly: a request line and headers within fixed limits
(RFC 9112), a body with one Content-Length and no Transfer-Encoding, and the file of a
``multipart/form-data`` body (an HTML form, ``curl -F``). Anything else
raises HTTPError with the status to answer, so every layer's error becomes the same JSON
reply. Knows nothing about prediction.
"""

import asyncio
import email.utils
import re
from dataclasses import dataclass, field
from urllib.parse import parse_qs, urlsplit

MAX_LINE = 8192  # bytes of the request line (414 beyond) or of one header line (431)
MAX_HEADERS = 100  # header lines (431 beyond)
MAX_HEAD = 65536  # bytes of the request line and all headers together (431 beyond)
READ_CHUNK = 65536
# Every method RFC 9110 defines, plus PATCH: known, so answered 405 where a route does
# not take them; any other token is 501.
KNOWN_METHODS = frozenset(
    {'GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'CONNECT', 'OPTIONS', 'TRACE', 'PATCH'}
)
TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
VERSION = re.compile(r'HTTP/(\d)\.(\d)')
DIGITS = re.compile(r'[0-9]+')
BOUNDARY = re.compile(r';\s*boundary=(?:"([^"]{1,70})"|([^\s;]{1,70}))', re.IGNORECASE)
RAW_BYTES = (  # the end of a refused form's error: how to send an image
    'send the image bytes as the body (curl --data-binary @cat.jpg) or one file in a form '
    '(curl -F file=@cat.jpg)'
)
REASONS = {
    100: 'Continue',
    200: 'OK',
    204: 'No Content',
    400: 'Bad Request',
    404: 'Not Found',
    405: 'Method Not Allowed',
    408: 'Request Timeout',
    411: 'Length Required',
    413: 'Content Too Large',
    414: 'URI Too Long',
    417: 'Expectation Failed',
    431: 'Request Header Fields Too Large',
    500: 'Internal Server Error',
    501: 'Not Implemented',
    503: 'Service Unavailable',
    505: 'HTTP Version Not Supported',
}
# Control characters (C0, DEL, C1) and the backslash, as \xNN and \\ in the log, so a
# request cannot clear a terminal or forge log lines (http.server's own rule, plus "\").
LOG_ESCAPES = {c: f'\\x{c:02x}' for c in (*range(0x20), *range(0x7F, 0xA0))} | {0x5C: '\\\\'}


class HTTPError(Exception):
    """A request that must be answered with ``status`` and ``{"error": message}``."""

    def __init__(self, status: int, message: str, headers: dict | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}
        self.line: str | None = None  # the request line, when one was read (for the log)


class ClientGone(Exception):
    """The client closed the connection in the middle of a request."""


def escape(text: str) -> str:
    """``text`` with control characters and backslashes escaped, safe for a log line."""
    return text.translate(LOG_ESCAPES)


@dataclass
class Request:
    """One parsed request head."""

    method: str
    target: str
    version: tuple[int, int]
    headers: dict[str, list[str]] = field(default_factory=dict)  # lower-case name -> values

    @property
    def path(self) -> str:
        return urlsplit(self.target).path if self.target != '*' else '*'

    @property
    def query(self) -> dict[str, list[str]]:
        return parse_qs(urlsplit(self.target).query)

    def header(self, name: str) -> str | None:
        """The value of a header sent once; HTTPError(400) if it was sent several times."""
        values = self.headers.get(name.lower(), [])
        if len(values) > 1:
            raise HTTPError(400, f'{name} sent {len(values)} times')
        return values[0] if values else None

    @property
    def keep_alive(self) -> bool:
        """Whether the client wants the connection kept open (HTTP/1.1's default)."""
        tokens = {
            token.strip().lower()
            for value in self.headers.get('connection', [])
            for token in value.split(',')
        }
        if self.version >= (1, 1):
            return 'close' not in tokens
        return 'keep-alive' in tokens

    def content_length(self) -> int | None:
        """The body's length, None without one; HTTPError(400) if malformed or conflicting.

        Several Content-Length headers, or a list in one, are accepted only when they all
        give the same number (RFC 9112 6.3); ``Transfer-Encoding`` beside one is refused.
        """
        values = [
            part.strip()
            for value in self.headers.get('content-length', [])
            for part in value.split(',')
        ]
        if not values:
            return None
        if 'transfer-encoding' in self.headers:
            raise HTTPError(400, 'both Transfer-Encoding and Content-Length sent')
        bad = [value for value in values if not DIGITS.fullmatch(value)]
        if bad:
            raise HTTPError(400, f'Content-Length must be a number of bytes, got {bad[0]!r}')
        lengths = {int(value.lstrip('0')[:19] or '0') for value in values}  # 19 digits: >1e18
        if len(lengths) > 1:
            raise HTTPError(400, f'conflicting Content-Length values: {", ".join(values)}')
        return lengths.pop()


class Stream:
    """A StreamReader with its own buffer, so the server knows whether any byte came."""

    def __init__(self, reader: asyncio.StreamReader) -> None:
        self.reader = reader
        self.buffer = bytearray()

    async def fill(self) -> bool:
        """Read what has arrived (at least a byte); False at end of stream."""
        chunk = await self.reader.read(READ_CHUNK)
        self.buffer += chunk
        return bool(chunk)

    async def line(self, limit: int, status: int, what: str) -> bytes:
        """One line ending in LF; HTTPError(status) past ``limit`` bytes."""
        start = 0
        while (end := self.buffer.find(b'\n', start)) < 0:
            if len(self.buffer) > limit:
                raise HTTPError(status, f'{what} longer than {limit} bytes')
            start = len(self.buffer)
            if not await self.fill():
                raise ClientGone
        if end + 1 > limit + 2:  # CRLF not counted
            raise HTTPError(status, f'{what} longer than {limit} bytes')
        line = bytes(self.buffer[: end + 1])
        del self.buffer[: end + 1]
        return line

    async def exactly(self, length: int) -> bytes:
        """The next ``length`` bytes; ClientGone if the stream ends first."""
        if len(self.buffer) >= length:
            data = bytes(self.buffer[:length])
            del self.buffer[:length]
            return data
        head, self.buffer = bytes(self.buffer), bytearray()
        try:
            return head + await self.reader.readexactly(length - len(head))
        except asyncio.IncompleteReadError as error:
            raise ClientGone(len(head) + len(error.partial)) from None

    async def some(self, limit: int) -> bytes:
        """Up to ``limit`` bytes: the buffer's first, else what arrives next; b'' at the end."""
        if self.buffer:
            data = bytes(self.buffer[:limit])
            del self.buffer[:limit]
            return data
        return await self.reader.read(min(limit, READ_CHUNK))

    async def discard(self, length: int) -> None:
        """Read and drop up to ``length`` bytes, until the stream ends."""
        length -= len(self.buffer)
        self.buffer.clear()
        while length > 0:
            chunk = await self.reader.read(min(length, READ_CHUNK))
            if not chunk:
                return
            length -= len(chunk)


async def read_head(stream: Stream) -> tuple[Request, str]:
    """The next request's head and its request line (for the log); HTTPError if invalid.

    Limits: MAX_LINE per line, MAX_HEADERS header lines, MAX_HEAD bytes in all. HTTP/1.0
    and 1.1 only; an HTTP/1.1 request needs exactly one Host header (RFC 9112 3.2).
    """
    raw = b'\r\n'
    for _ in range(3):  # a client may send blank lines before the request (RFC 9112 2.2)
        raw = await stream.line(MAX_LINE, 414, 'request line')
        if raw.strip(b'\r\n'):
            break
    line = raw.rstrip(b'\r\n').decode('latin-1')
    try:
        return await _parse_head(stream, raw, line), line
    except HTTPError as error:
        error.line = line
        raise


async def _parse_head(stream: Stream, raw: bytes, line: str) -> Request:
    words = line.split(' ')
    if len(words) != 3 or not all(words):
        raise HTTPError(400, 'bad request line: expected "METHOD /path HTTP/1.1"')
    method, target, version_text = words
    version = VERSION.fullmatch(version_text)
    if version is None:
        raise HTTPError(400, f'bad HTTP version {version_text!r}')
    version = (int(version[1]), int(version[2]))
    if version >= (2, 0) or version < (1, 0):
        raise HTTPError(505, f'{version_text} is not supported: use HTTP/1.1')
    if not TOKEN.fullmatch(method):
        raise HTTPError(400, 'bad method name')
    if not (target.startswith('/') or target == '*' or target.startswith(('http://', 'https://'))):
        raise HTTPError(400, 'bad request target: expected a path such as /predict')
    if any(ord(c) < 0x21 or ord(c) > 0x7E for c in target):
        raise HTTPError(400, 'bad request target: control or non-ASCII characters')
    request = Request(method, target, version)
    size = len(raw)
    for count in range(MAX_HEADERS + 1):
        raw = await stream.line(MAX_LINE, 431, 'header line')
        size += len(raw)
        if size > MAX_HEAD:
            raise HTTPError(431, f'request head longer than {MAX_HEAD} bytes')
        text = raw.rstrip(b'\r\n').decode('latin-1')
        if not text:
            break
        if count == MAX_HEADERS:
            raise HTTPError(431, f'more than {MAX_HEADERS} headers')
        name, colon, value = text.partition(':')
        if not colon or not TOKEN.fullmatch(name):  # also refuses folded lines
            raise HTTPError(400, 'bad header line')
        request.headers.setdefault(name.lower(), []).append(value.strip(' \t'))
    if version >= (1, 1) and len(request.headers.get('host', [])) != 1:
        raise HTTPError(400, 'an HTTP/1.1 request needs one Host header')
    return request


def is_form(content_type: str | None) -> bool:
    """Whether a Content-Type is ``multipart/form-data`` (an HTML form, ``curl -F``)."""
    return content_type is not None and (
        content_type.split(';')[0].strip().lower() == 'multipart/form-data'
    )


def form_file(body: bytes | bytearray, content_type: str) -> bytes:
    """The content of a ``multipart/form-data`` body's file (RFC 7578); HTTPError(400).

    The first part with a ``filename`` (``curl -F file=@cat.jpg``), else the first part.
    """
    found = BOUNDARY.search(content_type)
    if found is None:
        raise HTTPError(400, f'multipart/form-data without a boundary: {RAW_BYTES}')
    delimiter = b'--' + (found[1] or found[2]).encode('latin-1')
    position = body.find(delimiter)
    first = None
    while position >= 0:
        start = position + len(delimiter)
        if body[start : start + 2] == b'--':  # the closing delimiter
            break
        head_end = body.find(b'\r\n\r\n', start)
        end = body.find(b'\r\n' + delimiter, head_end + 4) if head_end >= 0 else -1
        if end < 0:
            break
        head = bytes(body[start:head_end]).lower()
        if b'filename=' in head:
            return bytes(body[head_end + 4 : end])
        if first is None:
            first = (head_end + 4, end)
        position = end + 2
    if first is None:
        raise HTTPError(400, f'multipart/form-data with no complete part: {RAW_BYTES}')
    return bytes(body[first[0] : first[1]])


def response(
    status: int, body: bytes, content_type: str, headers: dict | None = None, head: bool = False
) -> bytes:
    """The bytes of an HTTP/1.1 response with a Content-Length (no body when ``head``)."""
    lines = [
        f'HTTP/1.1 {status} {REASONS.get(status, "")}',
        f'Date: {email.utils.formatdate(usegmt=True)}',
    ]
    if status >= 200 and status != 204:  # no content headers on 1xx and 204 (RFC 9110)
        lines += [f'Content-Type: {content_type}', f'Content-Length: {len(body)}']
    lines += [f'{name}: {value}' for name, value in (headers or {}).items()]
    text = '\r\n'.join(lines) + '\r\n\r\n'
    return text.encode('latin-1') + (b'' if head else body)
