"""oneDNN's convolution kernels for the NHWC fast path, through its C API (ctypes).

oneDNN is the library PyTorch's CPU convolutions run on. Its JIT kernels (``brgconv`` on
AVX-512) convolve NHWC images directly, without im2col's columns, and reach 200 to 250
GFLOP/s on the 2 cores here where the im2col path's GEMMs reach 150 to 170 (OpenBLAS's
kernel is about 100 GFLOP/s a core; docs/performance.md). ``conv_nhwc`` hands every
convolution to it (``pays``) where the library loads: the ``onednn-cpu-tbb`` wheel
(``make install``, x86-64 Linux), found in the environment's ``lib`` folder or on the
loader's path, with the oneTBB that Numba's loops run on (one pool of workers for both,
held to the kernels' thread count) and Intel's compiler runtime it links. Anywhere else,
with ``LAYERS_ONEDNN=0``, or in a child forked after the library started, the im2col path
runs: same results within float32 rounding.

Activations stay NHWC and weights in Chainer's (O, C, kh, kw) layout: each call hands
oneDNN a (kh, kw, C, O) copy (``hwio``, microseconds; training changes them every step;
kept between calls where the weights hold still, ``layers.frozen``) and turns its weight
gradient back. oneDNN's convolutions need dense NHWC arrays: a branch
writing into a column slice of a wider output (a Fire module's expands) runs as a matmul
straight into it where it is 1x1 (``Matmul``), else through a dense temporary
(``ConvolutionsNHWC``).
"""

import ctypes
import ctypes.util
import os
import sys
import threading

import numpy as np

from layers import frozen, kernels, runtime, workspace

LIBRARY = 'libdnnl.so.3'
RUNTIME_LIBRARIES = ('libintlc.so.5', 'libimf.so')  # the intel-cmplr-lib-rt wheel's
VARIABLE = 'LAYERS_ONEDNN'
"""Set to 0 to keep oneDNN out (the im2col kernels run instead)."""

# oneDNN 3's C API constants (oneapi/dnnl/dnnl_types.h, dnnl_common_types.h)
_F32, _ANY, _CPU, _IN_ORDER = 3, 1, 1, 1
_FORWARD_TRAINING = 64  # the hint backward needs; inference would choose the same kernels
_DIRECT = 1
_Q_IMPL, _Q_WEIGHTS, _Q_DIFF_WEIGHTS, _Q_SCRATCHPAD = 8, 131, 132, 136
_SCRATCHPAD_USER = 1
_SRC, _DST, _WEIGHTS, _BIAS = 1, 17, 33, 41
_DIFF_SRC, _DIFF_DST, _DIFF_WEIGHTS, _DIFF_BIAS = 129, 145, 161, 169
_SCRATCHPAD = 80
_ADDEND = 32768 | 2  # DNNL_ARG_ATTR_MULTIPLE_POST_OP(0) | DNNL_ARG_SRC_1: the binary add's
_BINARY_ADD = 0x1FFF0
_Dims = ctypes.c_int64 * 12
_P = ctypes.c_void_p


class OneDNNError(RuntimeError):
    """A oneDNN call failed; the message names it and its status."""


class _Arg(ctypes.Structure):
    _fields_ = [('arg', ctypes.c_int), ('memory', _P)]


_lock = threading.Lock()
_state: dict = {}


def _forked_child() -> None:
    # a fork after oneTBB's workers started is outside what oneTBB supports (their state
    # is copied, the threads are not): a child convolves on the im2col kernels
    _state['lib'] = None


def library():
    """The loaded library with its engine and stream (a dict), or None where it is not
    installed, ``LAYERS_ONEDNN=0``, or this process was forked after it started."""
    if 'lib' in _state:
        return _state['lib']
    with _lock:
        if 'lib' not in _state:
            _state['lib'] = _load() if os.environ.get(VARIABLE, '1') != '0' else None
            if _state['lib'] is not None and hasattr(os, 'register_at_fork'):
                os.register_at_fork(after_in_child=_forked_child)
    return _state['lib']


def _load():
    # oneTBB first (Numba's layer runs on the same one), then Intel's compiler runtime
    # that the library links against: all from the environment's lib folder
    if not runtime.load_tbb():
        return None
    for name in RUNTIME_LIBRARIES:
        runtime.load_global(name)
    threads = runtime.limit_tbb(runtime.kernel_threads())
    found = ctypes.util.find_library('dnnl')
    candidates = [os.path.join(sys.prefix, 'lib', LIBRARY), LIBRARY, found]
    for candidate in filter(None, candidates):
        try:
            lib = ctypes.CDLL(candidate)
        except OSError:
            continue
        state = _setup(lib)
        if state is not None:
            state['threads'] = threads
        return state
    return None


def _setup(lib) -> dict | None:
    lib.dnnl_primitive_desc_query.argtypes = [_P, ctypes.c_int, ctypes.c_int, _P]
    lib.dnnl_primitive_desc_query_md.restype = _P
    lib.dnnl_primitive_desc_query_md.argtypes = [_P, ctypes.c_int, ctypes.c_int]
    lib.dnnl_memory_desc_get_size.restype = ctypes.c_size_t
    lib.dnnl_memory_desc_get_size.argtypes = [_P]
    lib.dnnl_memory_desc_equal.argtypes = [_P, _P]
    lib.dnnl_memory_create.argtypes = [_P, _P, _P, _P]
    lib.dnnl_memory_destroy.argtypes = [_P]
    lib.dnnl_memory_set_data_handle.argtypes = [_P, _P]
    lib.dnnl_primitive_execute.argtypes = [_P, _P, ctypes.c_int, _P]
    lib.dnnl_post_ops_append_binary.argtypes = [_P, ctypes.c_int, _P]
    lib.dnnl_matmul_primitive_desc_create.argtypes = [_P, _P, _P, _P, _P, _P, _P]
    lib.dnnl_version.restype = ctypes.POINTER(_Version)
    engine, stream = _P(), _P()
    try:
        _check(lib.dnnl_engine_create(ctypes.byref(engine), _CPU, 0), 'engine')
        _check(lib.dnnl_stream_create(ctypes.byref(stream), engine, _IN_ORDER), 'stream')
    except OneDNNError:
        return None
    return {'lib': lib, 'engine': engine, 'stream': stream, 'cache': {}}


def _check(status: int, what: str) -> None:
    if status != 0:
        raise OneDNNError(f'oneDNN {what} failed with status {status}')


class _Version(ctypes.Structure):
    _fields_ = [('major', ctypes.c_int), ('minor', ctypes.c_int), ('patch', ctypes.c_int)]


def version() -> str | None:
    """oneDNN's version ('3.2.0'), or None where it does not run here (``library``)."""
    state = library()
    if state is None:
        return None
    found = state['lib'].dnnl_version().contents
    return f'{found.major}.{found.minor}.{found.patch}'


def threads() -> int | None:
    """The threads oneDNN's kernels run on (oneTBB's allowed parallelism, held to the
    kernels' thread count), or None where it does not run here (``library``)."""
    state = library()
    return None if state is None else state['threads']


def available(dtype) -> bool:
    """Whether oneDNN's kernels can run for ``dtype`` (float32) in this process."""
    return np.dtype(dtype) == np.float32 and library() is not None


MIN_FLOPS = 0
"""The least work (2 x multiply-adds, forward) a convolution hands to oneDNN: every one.
GNU OpenMP's build woke its sleeping threads at each call (about 50 microseconds), so
small convolutions stayed on the im2col kernels below 2**26; oneTBB's build shares its
workers with Numba's loops, and with every convolution on it (separate processes
alternating, two medians each; against GNU OpenMP's build from 2**26 in brackets):
SqueezeNet evaluation at 128 px 1.06 to 1.09x at batch 1 (1.04 to 1.42x), 1.04 to 1.13x
at 4 and 16 (1.08 to 1.11x), 0.97 to 1.04x at 64 (1.03x); ResNet-20 at 32 px 1.08 to
1.11x at batch 1 (1.10x), 1.07 to 1.28x at 64 (1.12 to 1.35x), training 1.01 to 1.04x
(1.13 to 1.23x); the VGG example's training 1.00 to 1.10x against GNU OpenMP's; SqueezeNet's
training 0.97 to 1.00x. ``benchmarks.onednn --min-flops`` tries other values."""


def pays(flops: float) -> bool:
    """Whether oneDNN runs a convolution of ``flops`` (forward) rather than the im2col and
    GEMM kernels: from ``MIN_FLOPS`` on (every one), 1x1 convolutions (plain GEMMs on NHWC)
    and an image's first convolution (3 channels) included. Forward in test mode, batch 64,
    against the im2col / GEMM path in one process, alternating: SqueezeNet's conv1 (3 ->
    96, 7x7/2) 1.64x (1.66x its weight gradient), its 1x1 convolutions 1.17 to 2.28x (the
    shorter the GEMM, the more), their gradients 1.11 to 1.16x."""
    return flops >= MIN_FLOPS


class _Primitives:
    """oneDNN primitives and the descriptors they need, owned (released with the object),
    each run with the process's one scratchpad (``_execute``)."""

    def __init__(self, state) -> None:
        self.state = state
        self.owned = []  # (destroy function, handle): released with the object
        self.scratchpads = {}  # primitive -> its scratchpad's memory desc and bytes
        self.bound = {}  # primitive -> its memory objects and argument array (``_execute``)

    def __del__(self) -> None:
        lib = self.state['lib']
        for destroy, handle in reversed(getattr(self, 'owned', [])):
            getattr(lib, destroy)(handle)

    def _buffer(self, md) -> np.ndarray:
        size = self.state['lib'].dnnl_memory_desc_get_size(md)
        return np.empty(-(-size // 4), np.float32)

    def _descriptor(self, create, *args):
        pd = _P()
        _check(create(ctypes.byref(pd), *args), create.__name__)
        self.owned.append(('dnnl_primitive_desc_destroy', pd))
        return pd

    def _nhwc(self, n, c, h, w):
        """Logical (N, C, H, W), stored NHWC: the dims oneDNN names, the strides we have."""
        return self._strided((n, c, h, w), (h * w * c, 1, w * c, c))

    def _strided(self, dims, strides):
        md = _P()
        lib = self.state['lib']
        status = lib.dnnl_memory_desc_create_with_strides(
            ctypes.byref(md), len(dims), _Dims(*dims), _F32, _Dims(*strides)
        )
        _check(status, 'memory_desc_create_with_strides')
        self.owned.append(('dnnl_memory_desc_destroy', md))
        return md

    def _attributes(self, addend=None):
        """Primitive attributes with the scratchpad in our hands (``_execute`` passes one
        reused buffer): left to oneDNN, every primitive keeps one of its own, which made
        SqueezeNet's training 14 % larger in peak memory. ``addend``: the memory desc of
        an array the kernel adds to its result as it writes it (a binary add post-op: a
        bypass read where it lies, with no copy of it into the destination first)."""
        lib, attr = self.state['lib'], _P()
        _check(lib.dnnl_primitive_attr_create(ctypes.byref(attr)), 'attr_create')
        self.owned.append(('dnnl_primitive_attr_destroy', attr))
        status = lib.dnnl_primitive_attr_set_scratchpad_mode(attr, _SCRATCHPAD_USER)
        _check(status, 'set_scratchpad_mode')
        if addend is not None:
            post_ops = _P()
            _check(lib.dnnl_post_ops_create(ctypes.byref(post_ops)), 'post_ops_create')
            try:
                status = lib.dnnl_post_ops_append_binary(post_ops, _BINARY_ADD, addend)
                _check(status, 'append_binary')
                _check(lib.dnnl_primitive_attr_set_post_ops(attr, post_ops), 'set_post_ops')
            finally:
                lib.dnnl_post_ops_destroy(post_ops)
        return attr

    def _primitive(self, pd):
        lib, primitive = self.state['lib'], _P()
        _check(lib.dnnl_primitive_create(ctypes.byref(primitive), pd), 'primitive')
        self.owned.append(('dnnl_primitive_destroy', primitive))
        scratchpad = _P(lib.dnnl_primitive_desc_query_md(pd, _Q_SCRATCHPAD, 0))
        self.scratchpads[primitive.value] = (scratchpad, lib.dnnl_memory_desc_get_size(scratchpad))
        return primitive

    def _execute(self, primitive, args) -> None:
        """Run ``primitive`` on (argument, memory desc, array) triples, with the scratchpad
        it needs (a scratch buffer shared by all primitives).

        Each primitive's memory objects are made on its first run and pointed at the
        arrays of each later one: making and freeing them every call took 15 of the 17
        microseconds a small convolution's call cost here."""
        lib, stream = self.state['lib'], self.state['stream']
        scratchpad, size = self.scratchpads[primitive.value]
        arrays = [array for _, _, array in args]
        if size:
            args = [*args, (_SCRATCHPAD, scratchpad, None)]
            arrays.append(workspace.scratch('onednn', (size,), np.uint8))
        bound = self.bound.get(primitive.value)
        if bound is None:
            bound = self.bound[primitive.value] = self._bind([(a, md) for a, md, _ in args])
        memories, pairs = bound
        with _lock:  # one stream for the process, and memories shared: one run at a time
            for memory, array in zip(memories, arrays, strict=True):
                _check(lib.dnnl_memory_set_data_handle(memory, array.ctypes.data), 'handle')
            _check(lib.dnnl_primitive_execute(primitive, stream, len(pairs), pairs), 'execute')
            _check(lib.dnnl_stream_wait(stream), 'stream_wait')

    def _bind(self, args) -> tuple:
        """Memory objects for (argument, memory desc) pairs, owned, and the argument array
        ``dnnl_primitive_execute`` takes."""
        lib, engine = self.state['lib'], self.state['engine']
        memories = []
        for _, md in args:
            memory = _P()
            _check(lib.dnnl_memory_create(ctypes.byref(memory), md, engine, None), 'memory')
            self.owned.append(('dnnl_memory_destroy', memory))
            memories.append(memory)
        pairs = (_Arg * len(args))(*(_Arg(a, m) for (a, _), m in zip(args, memories, strict=True)))
        return memories, pairs


class Convolution(_Primitives):
    """One convolution geometry's oneDNN primitives (forward, backward data and weights),
    created once and reused: dense NHWC source and destination, float32.

    The forward reads the weights in HWIO order (``hwio``, a compiled copy): its brgconv
    kernels do so as fast as from their own blocked layout (0.89 to 1.66x, measured), and
    no reorder call wakes oneDNN's threads. The backward kernels get the layout they ask
    for (reordered there, and the weight gradient back): with HWIO oneDNN falls back to
    GEMM-based ones, which made a training step 1.2 to 2.3 times slower."""

    def __init__(self, state, x_shape, w_shape, stride, pad, bias, add):
        super().__init__(state)
        lib, engine = state['lib'], state['engine']
        self.w_shape = tuple(w_shape)
        n, h, w, c = x_shape
        o, _, kh, kw = w_shape
        oh, ow = (h + 2 * pad - kh) // stride + 1, (w + 2 * pad - kw) // stride + 1
        self.y_shape = (n, oh, ow, o)
        self.src = self._nhwc(n, c, h, w)
        self.dst = self._nhwc(n, o, oh, ow)
        self.weights = self._strided((o, c, kh, kw), (1, o, kw * c * o, c * o))  # HWIO
        self.b_md = self._strided((o,), (1,)) if bias else None
        self.geometry = (_Dims(stride, stride), _Dims(0, 0), _Dims(pad, pad), _Dims(pad, pad))
        self.attr = self._attributes()  # the scratchpad ours, for all of them
        self.addend = self.dst if add else None  # a dense array of y's shape, added
        attr = self._attributes(self.addend) if add else self.attr
        self.forward_pd = self._descriptor(
            lib.dnnl_convolution_forward_primitive_desc_create, engine, _FORWARD_TRAINING,
            _DIRECT, self.src, self.weights, self.b_md, self.dst, *self.geometry, attr,
        )  # fmt: skip
        self.forward = self._primitive(self.forward_pd)
        self.backward_data = self.backward_weights = None
        self.descriptors = {'forward': self.forward_pd}

    def _prepare_backward(self) -> None:
        lib, engine = self.state['lib'], self.state['engine']
        chosen = _P()
        _check(
            lib.dnnl_memory_desc_create_with_tag(
                ctypes.byref(chosen), 4, _Dims(*self.w_shape), _F32, _ANY
            ),
            'memory_desc_create_with_tag',
        )
        try:
            data_pd = self._descriptor(
                lib.dnnl_convolution_backward_data_primitive_desc_create, engine, _DIRECT,
                self.src, chosen, self.dst, *self.geometry, self.forward_pd, self.attr,
            )  # fmt: skip
            weights_pd = self._descriptor(
                lib.dnnl_convolution_backward_weights_primitive_desc_create, engine,
                _DIRECT, self.src, chosen, self.b_md, self.dst, *self.geometry,
                self.forward_pd, self.attr,
            )  # fmt: skip
        finally:
            lib.dnnl_memory_desc_destroy(chosen)
        self.data_w = _P(lib.dnnl_primitive_desc_query_md(data_pd, _Q_WEIGHTS, 0))
        self.weights_gw = _P(lib.dnnl_primitive_desc_query_md(weights_pd, _Q_DIFF_WEIGHTS, 0))
        self.to_data_w = self._reorder(self.weights, self.data_w)
        self.from_gw = self._reorder(self.weights_gw, self.weights)
        self.backward_data = self._primitive(data_pd)
        self.backward_weights = self._primitive(weights_pd)
        self.descriptors.update(backward_data=data_pd, backward_weights=weights_pd)

    def _reorder(self, src, dst):
        """A reorder primitive between two weight layouts, or None where they are one."""
        lib, engine = self.state['lib'], self.state['engine']
        if lib.dnnl_memory_desc_equal(src, dst):
            return None
        pd = self._descriptor(
            lib.dnnl_reorder_primitive_desc_create, src, engine, dst, engine, self.attr
        )
        return self._primitive(pd)

    def implementations(self) -> dict:
        """oneDNN's names for the kernels it chose (``brgconv:avx512_core``...), forward and
        backward (``ref:any`` would be its slow reference code)."""
        if self.backward_data is None:
            self._prepare_backward()
        lib = self.state['lib']
        return {direction: _implementation(lib, pd) for direction, pd in self.descriptors.items()}

    def run_forward(self, x: np.ndarray, w: np.ndarray, b, y: np.ndarray, z=None) -> None:
        """y = conv(x, w) + b (+ z, where this geometry adds: an array laid out as y);
        x, y and z C-contiguous, w in Chainer's (O, C, kh, kw)."""
        weights = frozen.derived('hwio', (w,), lambda: hwio(w))  # kept where weights hold still
        args = [(_SRC, self.src, x), (_WEIGHTS, self.weights, weights), (_DST, self.dst, y)]
        if self.b_md is not None:
            args.append((_BIAS, self.b_md, b))
        if self.addend is not None:
            args.append((_ADDEND, self.addend, z))
        self._execute(self.forward, args)

    def run_backward(self, x, w, gy, want_x: bool, want_w: bool):
        """(gx or None, gw or None, gb or None) for the output gradient ``gy`` (dense)."""
        if self.backward_data is None:
            self._prepare_backward()
        gx = gw = gb = None
        if want_x:
            gx = workspace.array(x.shape, np.float32)
            wd = hwio(w)
            if self.to_data_w is not None:
                wd, w_hwio = self._buffer(self.data_w), wd
                self._execute(
                    self.to_data_w, [(_SRC, self.weights, w_hwio), (_DST, self.data_w, wd)]
                )
            args = [(_DIFF_DST, self.dst, gy), (_WEIGHTS, self.data_w, wd)]
            self._execute(self.backward_data, [*args, (_DIFF_SRC, self.src, gx)])
        if want_w:
            o, c, kh, kw = w.shape
            gw_hwio = np.empty((kh, kw, c, o), np.float32)
            native = gw_hwio if self.from_gw is None else self._buffer(self.weights_gw)
            args = [(_SRC, self.src, x), (_DIFF_DST, self.dst, gy)]
            args.append((_DIFF_WEIGHTS, self.weights_gw, native))
            if self.b_md is not None:
                gb = np.empty(o, np.float32)
                args.append((_DIFF_BIAS, self.b_md, gb))
            self._execute(self.backward_weights, args)
            if self.from_gw is not None:
                back = [(_SRC, self.weights_gw, native), (_DST, self.weights, gw_hwio)]
                self._execute(self.from_gw, back)
            gw = np.ascontiguousarray(gw_hwio.transpose(3, 2, 0, 1))
        return gx, gw, gb


class Matmul(_Primitives):
    """A 1x1 stride-1 convolution's forward as oneDNN's matmul, writing into columns of a
    wider output: y[:, :o] (rows ``ldy`` apart) = x @ W.T + b (+ z[:, :o], laid out as y,
    where it adds: a bypass's columns, added as they are read). A
    convolution's destination must be dense (a column slice makes oneDNN use its reference
    code, so ``Convolution`` writes a temporary that is then copied); the matmul takes a
    row stride, so a Fire module's 1x1 expand writes its slice of the concatenation
    directly: measured 1.2 to 1.9x faster than the convolution and the copy. Adding the
    bypass in the kernel (a binary post-op) rather than copying it into the columns for a
    sum post-op: 2.62 -> 1.97 ms for 65536 x 16 -> 64 of 128 columns, 3.23 -> 1.62 ms for
    18496 x 64 -> 256 of 512. (oneDNN's JIT GEMM takes the addend with y's row stride
    only; with any other it runs its reference code.)
    """

    def __init__(self, state, rows, c, o, ldy, add):
        super().__init__(state)
        lib = state['lib']
        self.src = self._strided((rows, c), (c, 1))
        self.weights = self._strided((c, o), (1, c))  # W's (O, C) matrix read transposed
        self.b_md = self._strided((1, o), (o, 1))
        self.dst = self._strided((rows, o), (ldy, 1))
        self.addend = self.dst if add else None
        pd = self._descriptor(
            lib.dnnl_matmul_primitive_desc_create, state['engine'], self.src, self.weights,
            self.b_md, self.dst, self._attributes(self.addend),
        )  # fmt: skip
        self.descriptors = {'forward': pd}
        self.forward = self._primitive(pd)

    def implementations(self) -> dict:
        """oneDNN's name for the kernel it chose (``gemm:jit:f32``; ``ref`` would be slow)."""
        return {'forward': _implementation(self.state['lib'], self.descriptors['forward'])}

    def run_forward(self, x: np.ndarray, w: np.ndarray, b: np.ndarray, y: np.ndarray, z=None):
        """y (a 2-D view, rows ``ldy`` apart) = x @ w.T + b (+ z, a 2-D view laid out as y,
        where this geometry adds); x (rows, C) and w (O, C) C-contiguous."""
        args = [(_SRC, self.src, x), (_WEIGHTS, self.weights, w), (_BIAS, self.b_md, b)]
        args.append((_DST, self.dst, y))
        if self.addend is not None:
            args.append((_ADDEND, self.addend, z))
        self._execute(self.forward, args)


def _implementation(lib, pd) -> str:
    name = ctypes.c_char_p()
    _check(lib.dnnl_primitive_desc_query(pd, _Q_IMPL, 0, ctypes.byref(name)), 'query')
    return name.value.decode()


def matmul(rows, c, o, ldy, add=False):
    """The cached ``Matmul`` of this geometry (created on first use)."""
    return _cached(Matmul, (rows, c, o, ldy, add))


def hwio(w: np.ndarray) -> np.ndarray:
    """Chainer's (O, C, kh, kw) weights as a C-contiguous (kh, kw, C, O) array (a parallel
    kernel, ``kernels.oihw_to_hwio``)."""
    o, c, kh, kw = w.shape
    out = np.empty((kh, kw, c, o), w.dtype)
    kernels.oihw_to_hwio(w, out)
    return out


CACHED = 256
"""Geometries whose primitives are kept (a batch size, image size or layer each); the
least recently used goes beyond that (a service seeing many batch sizes)."""


def convolution(x_shape, w_shape, stride, pad, bias, add=False):
    """The cached ``Convolution`` of this geometry (created on first use)."""
    return _cached(Convolution, (tuple(x_shape), tuple(w_shape), stride, pad, bias, add))


def _cached(kind, key: tuple):
    state = library()
    cache = state['cache']
    key = (kind.__name__, *key)
    found = cache.pop(key, None)
    if found is None:
        found = kind(state, *key[1:])
        while len(cache) >= CACHED:
            cache.pop(next(iter(cache)))
    cache[key] = found  # dicts keep insertion order: the newest last
    return found
