"""Batch normalization fused with the ReLU after it, on NHWC activations.

Training: the per-channel mean and variance in one compiled pass with float64 accumulators,
then ``max(x * scale + shift, 0)`` in one more; the running statistics are updated exactly as
Chainer's ``BatchNormalization`` link does (decay, unbiased variance). Backward: one
reduction pass (the gamma and beta gradients) and one elementwise pass (the input gradient),
the ReLU's mask recomputed from the input. Test mode is the elementwise pass alone, with
the running statistics. Either way no normalized copy of the input is kept.

One node can normalize the same input with several batch normalizations (a Fire module's
two expands): the statistics are gathered once, both outputs written in one pass, and the
backward passes read the input once for both, returning one input gradient (no sum of two
gradients afterwards). With ``passthrough`` the node also returns the input itself, for a
second use such as a bypass; that use's gradient is added in the same elementwise pass.
"""

import chainer
import chainer.functions as F
import numpy as np
from chainer import function_node

from layers import kernels, workspace
from layers.fallback import plain_grads, wants_graph


class BNReLUNHWC(function_node.FunctionNode):
    """relu(batch_normalization_j(x)) over the last axis of an NHWC x, for each j.

    Inputs: x, then gamma_j, beta_j for each j. Outputs: one per j, then x itself when
    ``passthrough``.

    Args:
        eps: added to the variance, one per normalization (or one for all).
        running: per normalization (avg_mean, avg_var, decay) to update in place in training
            mode, or None (none updated).
        fixed: per normalization (mean, var) to normalize with instead of the batch's (test
            mode), or None.
        passthrough: also output x (its gradient is added to the input gradient).
        relu: apply the ReLU (False: the batch normalizations alone, as before a residual
            add).
    """

    def __init__(
        self,
        eps,
        running: tuple | None = None,
        fixed: tuple | None = None,
        passthrough: bool = False,
        relu: bool = True,
    ):
        self.eps = eps
        self.running, self.fixed, self.passthrough = running, fixed, passthrough
        self.relu = relu
        self.floor = 0.0 if relu else -np.inf  # the kernels' max(z, floor)

    def _eps(self, count: int) -> np.ndarray:
        eps = np.broadcast_to(np.asarray(self.eps, np.float64), (count,))
        return eps.reshape(count, 1)

    def forward_cpu(self, inputs):
        x, params = inputs[0], inputs[1:]
        c = x.shape[-1]
        x2 = np.ascontiguousarray(x).reshape(-1, c)
        count = self._statistics(x2, params)
        ys = workspace.array((count, *x.shape), x.dtype)
        kernels.scale_shift_relu(x2, self.scale, self.shift, ys.reshape(count, -1, c), self.floor)
        self.retain_inputs(tuple(range(len(inputs))))
        return (*ys, x) if self.passthrough else tuple(ys)

    def _statistics(self, x2: np.ndarray, params: tuple) -> int:
        """The batch's (or the fixed) statistics of the 2-D x2, the running averages updated,
        and each normalization's ``scale`` and ``shift``; returns how many there are."""
        gammas, betas = np.stack(params[0::2]), np.stack(params[1::2])
        count = len(gammas)
        if self.fixed is None:
            mean, var = kernels.moments(x2)
            self._update_running(mean, var, x2.shape[0])
            mean, var = mean[None], var[None]
        else:
            mean = np.stack([np.asarray(m, np.float64) for m, _ in self.fixed])
            var = np.stack([np.asarray(v, np.float64) for _, v in self.fixed])
        inv_std = 1.0 / np.sqrt(var + self._eps(count))
        scale, shift = _affine(gammas, betas, mean, inv_std)
        self.scale, self.shift = scale.astype(x2.dtype), shift.astype(x2.dtype)
        self.mean, self.inv_std = mean[0], inv_std
        return count

    def _update_running(self, mean: np.ndarray, var: np.ndarray, m: int) -> None:
        adjust = m / max(m - 1.0, 1.0)  # unbiased estimate, as Chainer
        for avg_mean, avg_var, decay in self.running or ():
            avg_mean *= decay
            avg_mean += ((1 - decay) * mean).astype(avg_mean.dtype)
            avg_var *= decay
            avg_var += ((1 - decay) * adjust * var).astype(avg_var.dtype)

    def backward(self, indexes, grad_outputs):
        inputs = self.get_retained_inputs()
        if wants_graph() or self.fixed is not None:
            return plain_grads(self.plain, inputs, indexes, grad_outputs)
        x = inputs[0].array
        count = len(inputs[1::2])
        x2 = x.reshape(-1, x.shape[-1])
        gys = tuple(
            np.zeros_like(x2) if g is None else np.ascontiguousarray(g.array).reshape(x2.shape)
            for g in grad_outputs[:count]
        )
        gpass = grad_outputs[count] if self.passthrough else None
        grads = self._grads(inputs, indexes, gys, gpass)
        return tuple(chainer.Variable(grads[i]) if i in grads else None for i in indexes)

    def _grads(self, inputs, indexes, gys: tuple, gpass) -> dict:
        """Input index -> gradient array, for x and each gamma and beta, from the 2-D output
        gradients ``gys`` (before the ReLU's mask, which is applied here) and a passthrough
        gradient (or None)."""
        x, gammas = inputs[0].array, np.stack([v.array for v in inputs[1::2]])
        count = len(gammas)
        c = x.shape[-1]
        x2 = x.reshape(-1, c)
        mean = self.mean.astype(x.dtype)
        sum_g, sum_gx = kernels.bn_relu_grad_sums(gys, x2, mean, self.scale, self.shift, self.floor)
        # sum_gx is about the float32-rounded mean; correct it to the exact one
        sum_gx += (mean - self.mean) * sum_g
        ggamma = sum_gx * self.inv_std
        gbeta = sum_g
        grads = {}
        for j in range(count):
            grads[1 + 2 * j] = ggamma[j].astype(gammas.dtype)
            grads[2 + 2 * j] = gbeta[j].astype(gammas.dtype)
        if 0 in indexes:
            m = x2.shape[0]
            a = gammas * self.inv_std
            b = -a * self.inv_std * ggamma / m
            d = -a * gbeta / m - b * (self.mean - mean)
            gpass = np.empty((0, c), x.dtype) if gpass is None else gpass.array.reshape(-1, c)
            gx = workspace.array(x.shape, x.dtype)
            dtype = x.dtype
            kernels.bn_relu_grad_x(
                gys,
                x2,
                mean,
                self.scale,
                self.shift,
                a.astype(dtype),
                b.sum(axis=0).astype(dtype),
                d.sum(axis=0).astype(dtype),
                np.ascontiguousarray(gpass),
                gx.reshape(-1, c),
                self.floor,
            )
            grads[0] = gx
        return grads

    def plain(self, x, *params):
        """The same function from Chainer's differentiable functions (for double backprop)."""
        count = len(params) // 2
        eps = self._eps(count)[:, 0]
        outputs = []
        for j in range(count):
            gamma, beta = params[2 * j], params[2 * j + 1]
            if self.fixed is None:
                h = F.batch_normalization(x, gamma, beta, eps=eps[j], axis=(0, 1, 2))
            else:
                mean, var = self.fixed[j]
                h = F.fixed_batch_normalization(x, gamma, beta, mean, var, eps[j], axis=(0, 1, 2))
            outputs.append(F.relu(h) if self.relu else h)
        if self.passthrough:
            outputs.append(F.identity(x))
        return tuple(outputs)


class BNAddReLUNHWC(BNReLUNHWC):
    """relu(batch_normalization(x) + r) over the last axis of NHWC x and r: the end of a
    post-activation residual block (Conv-BN, add the shortcut, ReLU) in one pass, with no
    pass and no node of its own for the add and the ReLU.

    Inputs: x, gamma, beta, r. The backward recomputes the ReLU's mask from x and r (the
    forward's float arithmetic): the masked output gradient is r's gradient as it is, and
    the normalization's output gradient. Args: as ``BNReLUNHWC``'s first three.
    """

    def __init__(self, eps, running: tuple | None = None, fixed: tuple | None = None):
        super().__init__(eps, running, fixed, relu=False)  # the BN's own grads see no mask

    def forward_cpu(self, inputs):
        x, gamma, beta, r = inputs
        c = x.shape[-1]
        x2 = np.ascontiguousarray(x).reshape(-1, c)
        self._statistics(x2, (gamma, beta))
        y = workspace.array(x.shape, x.dtype)
        r2 = np.ascontiguousarray(r).reshape(-1, c)
        kernels.scale_shift_add_relu(x2, self.scale[0], self.shift[0], r2, y.reshape(-1, c))
        self.retain_inputs((0, 1, 2, 3))
        return (y,)

    def backward(self, indexes, grad_outputs):
        inputs = self.get_retained_inputs()
        if wants_graph() or self.fixed is not None:
            return plain_grads(self.plain, inputs, indexes, grad_outputs)
        x, r = inputs[0].array, inputs[3].array
        c = x.shape[-1]
        (g,) = grad_outputs
        gm = workspace.array(x.shape, x.dtype)
        kernels.add_relu_grad(
            np.ascontiguousarray(g.array).reshape(-1, c),
            x.reshape(-1, c),
            self.scale[0],
            self.shift[0],
            np.ascontiguousarray(r).reshape(-1, c),
            gm.reshape(-1, c),
        )
        grads = self._grads(inputs[:3], indexes, (gm.reshape(-1, c),), None)
        grads[3] = gm
        return tuple(chainer.Variable(grads[i]) if i in grads else None for i in indexes)

    def plain(self, x, gamma, beta, r):
        """The same function from Chainer's differentiable functions (for double backprop)."""
        (h,) = super().plain(x, gamma, beta)
        return (F.relu(h + r),)


def _affine(gammas, betas, mean, inv_std) -> tuple:
    """(scale, shift) with bn(x) = x * scale + shift, in float64."""
    scale = gammas * inv_std
    return scale, betas - mean * scale


def inference_affine(bn: chainer.links.BatchNormalization, dtype) -> tuple:
    """(scale, shift) of ``bn`` in test mode (its running statistics), in ``dtype``: the
    numbers ``BNReLUNHWC`` normalizes with, for a convolution that applies them itself."""
    gamma, beta = bn.gamma.array, bn.beta.array
    scale, shift = np.empty(gamma.shape, dtype), np.empty(gamma.shape, dtype)
    kernels.inference_affine(gamma, beta, bn.avg_mean, bn.avg_var, float(bn.eps), scale, shift)
    return scale, shift


def bn_relus_nhwc(bns, x: chainer.Variable, passthrough: bool = False, relu: bool = True) -> tuple:
    """relu(bn(x)) for each ``bn`` of ``bns`` (NHWC x), in train or test mode as
    ``chainer.config.train`` says; with ``passthrough`` also x itself, last; without
    ``relu`` the batch normalizations alone.

    Follows the links exactly: batch statistics and a running-average update in training
    (none while Chainer recomputes a forward pass), the running averages in test mode.
    ``finetune`` mode is not supported here; use the link itself for it.
    """
    bns = tuple(bns)
    node = BNReLUNHWC(**_mode(bns), passthrough=passthrough, relu=relu)
    params = [p for bn in bns for p in (bn.gamma, bn.beta)]
    return node.apply((x, *params))


def _mode(bns: tuple) -> dict:
    """The nodes' ``eps`` and ``running`` or ``fixed`` arguments for the links ``bns`` as
    ``chainer.config`` says: batch statistics updating the running averages in training
    (none while Chainer recomputes a forward pass), the running averages in test mode."""
    eps = tuple(bn.eps for bn in bns)
    if not chainer.config.train:
        return {'eps': eps, 'fixed': tuple((bn.avg_mean, bn.avg_var) for bn in bns)}
    if chainer.config.in_recomputing:
        return {'eps': eps, 'running': None}
    return {'eps': eps, 'running': tuple((bn.avg_mean, bn.avg_var, bn.decay) for bn in bns)}


def bn_relu_nhwc(bn: chainer.links.BatchNormalization, x: chainer.Variable) -> chainer.Variable:
    """relu(bn(x)) for an NHWC x: ``bn_relus_nhwc`` with one normalization."""
    return bn_relus_nhwc((bn,), x)[0]


def bn_nhwc(bn: chainer.links.BatchNormalization, x: chainer.Variable) -> chainer.Variable:
    """bn(x) for an NHWC x, without a ReLU (a post-activation block's last normalization)."""
    return bn_relus_nhwc((bn,), x, relu=False)[0]


def bn_add_relu_nhwc(
    bn: chainer.links.BatchNormalization, x: chainer.Variable, r: chainer.Variable
) -> chainer.Variable:
    """relu(bn(x) + r) for NHWC x and r of the same shape, in one pass (``BNAddReLUNHWC``);
    the link's statistics and mode as ``bn(x)`` would use them."""
    return BNAddReLUNHWC(**_mode((bn,))).apply((x, bn.gamma, bn.beta, r))[0]
