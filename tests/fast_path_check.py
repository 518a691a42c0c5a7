"""Shared by the layers tests: a unit or function run on the fast path (channels-last input)
against the plain path (``fast_path(False)``), in float64, outputs and every gradient."""

import chainer
import chainer.functions as F
import chainer.links as L
import numpy as np

import layers


def float64(link):
    """``link`` with float64 parameters and BN statistics (in place)."""
    for param in link.params():
        if param.array is not None:
            param.array = param.array.astype(np.float64)
    for child in link.links():
        if isinstance(child, L.BatchNormalization) and child.avg_mean is not None:
            child.avg_mean = child.avg_mean.astype(np.float64)
            child.avg_var = child.avg_var.astype(np.float64)
    return link


def statistics(link) -> dict:
    return {
        f'{name}/{key}': np.array(getattr(child, key))
        for name, child in link.namedlinks()
        if isinstance(child, L.BatchNormalization)
        for key in ('avg_mean', 'avg_var')
    }


def run(function, link, xs, fast: bool, train: bool, graph: bool = True) -> dict:
    """Output, input and parameter gradients, BN statistics of ``function(link copy, *xs)``.

    The output must be channels-last on the fast path (the next unit stays fast)."""
    link = link.copy(mode='copy') if link is not None else None
    if link is not None:
        link.cleargrads()
    vs = [chainer.Variable(x.copy()) for x in xs]
    with layers.fast_path(fast), chainer.using_config('train', train):
        inputs = [layers.channels_last(v) for v in vs]
        if not graph:
            with chainer.no_backprop_mode():
                y = function(link, *inputs)
            out = {'y': np.array(y.array)}
            if fast and y.ndim == 4:
                assert layers.is_channels_last(y)
            return out
        y = function(link, *inputs)
        if fast and y.ndim == 4:
            assert layers.is_channels_last(y), 'the output left the channels-last layout'
        weight = np.arange(y.size, dtype=y.dtype).reshape(y.shape) % 7 - 3
        F.sum(y * weight).backward()
    out = {'y': np.array(y.array)}
    out.update({f'x{i}': v.grad for i, v in enumerate(vs)})
    if link is not None:
        out.update({name: p.grad for name, p in link.namedparams()})
        out.update(statistics(link))
    return out


def assert_paths_agree(function, link, xs, train: bool = True, graph: bool = True) -> None:
    """Fast and plain paths agree to float64 rounding, in every output and gradient."""
    if link is not None:
        float64(link)
    xs = [np.asarray(x, np.float64) for x in xs]
    plain = run(function, link, xs, fast=False, train=train, graph=graph)
    fast = run(function, link, xs, fast=True, train=train, graph=graph)
    assert plain.keys() == fast.keys()
    for key, value in plain.items():
        assert value is not None and fast[key] is not None, key
        scale = max(1.0, float(np.abs(value).max()))
        np.testing.assert_allclose(fast[key], value, rtol=1e-10, atol=1e-11 * scale, err_msg=key)
