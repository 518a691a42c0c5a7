"""Batch normalization fused with the ReLU after it, on NHWC activations.

Training: the per-channel mean and variance in one compiled pass with float64 accumulators,
then ``max(x * scale + shift, 0)`` in one more; the running statistics are updated exactly as
Chainer's ``BatchNormalization`` link does (decay, unbiased variance). Backward: one
reduction pass (the gamma and beta gradients) and one elementwise pass (the input gradient),
the ReLU's mask read from the retained output. Test mode is the elementwise pass alone,
with the running statistics. Either way no normalized copy of the input is kept.
"""

import chainer
import chainer.functions as F
import numpy as np
from chainer import function_node

from layers import kernels
from layers.fallback import plain_grads, wants_graph


class BNReLUNHWC(function_node.FunctionNode):
    """relu(batch_normalization(x)) over the last axis of an NHWC x; inputs x, gamma, beta.

    Args:
        eps: added to the variance.
        running: (avg_mean, avg_var, decay) to update in place in training mode, or None.
        fixed: (mean, var) to normalize with instead of the batch's (test mode), or None.
    """

    def __init__(self, eps: float, running: tuple | None = None, fixed: tuple | None = None):
        self.eps, self.running, self.fixed = eps, running, fixed

    def forward_cpu(self, inputs):
        x, gamma, beta = inputs
        c = x.shape[-1]
        x2 = np.ascontiguousarray(x).reshape(-1, c)
        if self.fixed is None:
            mean, var = kernels.moments(x2)
            self._update_running(mean, var, x2.shape[0])
        else:
            mean, var = (np.asarray(v, np.float64) for v in self.fixed)
        inv_std = 1.0 / np.sqrt(var + self.eps)
        scale = gamma * inv_std
        shift = beta - mean * scale
        y = np.empty(x.shape, x.dtype)
        kernels.scale_shift_relu(x2, scale.astype(x.dtype), shift.astype(x.dtype), y.reshape(-1, c))
        self.mean, self.inv_std = mean, inv_std
        self.retain_inputs((0, 1, 2))
        self.retain_outputs((0,))
        return (y,)

    def _update_running(self, mean: np.ndarray, var: np.ndarray, m: int) -> None:
        if self.running is None:
            return
        avg_mean, avg_var, decay = self.running
        adjust = m / max(m - 1.0, 1.0)  # unbiased estimate, as Chainer
        avg_mean *= decay
        avg_mean += ((1 - decay) * mean).astype(avg_mean.dtype)
        avg_var *= decay
        avg_var += ((1 - decay) * adjust * var).astype(avg_var.dtype)

    def backward(self, indexes, grad_outputs):
        inputs = self.get_retained_inputs()
        if wants_graph() or self.fixed is not None:
            return plain_grads(self.plain, inputs, indexes, grad_outputs)
        x, gamma, _ = (v.array for v in inputs)
        (y,) = (v.array for v in self.get_retained_outputs())
        (gy,) = grad_outputs
        c = x.shape[-1]
        x2, y2 = x.reshape(-1, c), y.reshape(-1, c)
        gy2 = np.ascontiguousarray(gy.array).reshape(-1, c)
        mean = self.mean.astype(x.dtype)
        sum_g, sum_gx = kernels.bn_relu_grad_sums(gy2, y2, x2, mean)
        # sum_gx is about the float32-rounded mean; correct it to the exact one
        sum_gx += (mean - self.mean) * sum_g
        ggamma = sum_gx * self.inv_std
        gbeta = sum_g
        grads = {1: ggamma.astype(gamma.dtype), 2: gbeta.astype(gamma.dtype)}
        if 0 in indexes:
            m = x2.shape[0]
            a = gamma * self.inv_std
            b = -a * self.inv_std * ggamma / m
            d = -a * gbeta / m - b * (self.mean - mean)
            gx = np.empty(x.shape, x.dtype)
            dtype = x.dtype
            kernels.bn_relu_grad_x(
                gy2,
                y2,
                x2,
                mean,
                a.astype(dtype),
                b.astype(dtype),
                d.astype(dtype),
                gx.reshape(-1, c),
            )
            grads[0] = gx
        return tuple(chainer.Variable(grads[i]) if i in grads else None for i in indexes)

    def plain(self, x, gamma, beta):
        """The same function from Chainer's differentiable functions (for double backprop)."""
        if self.fixed is None:
            h = F.batch_normalization(x, gamma, beta, eps=self.eps, axis=(0, 1, 2))
        else:
            mean, var = self.fixed
            h = F.fixed_batch_normalization(x, gamma, beta, mean, var, self.eps, axis=(0, 1, 2))
        return (F.relu(h),)


def bn_relu_nhwc(bn: chainer.links.BatchNormalization, x: chainer.Variable) -> chainer.Variable:
    """relu(bn(x)) for an NHWC x, in train or test mode as ``chainer.config.train`` says.

    Follows the link exactly: batch statistics and a running-average update in training
    (none while Chainer recomputes a forward pass), the running averages in test mode.
    ``finetune`` mode is not supported here; use the link itself for it.
    """
    if chainer.config.train:
        running = None
        if not chainer.config.in_recomputing:
            running = (bn.avg_mean, bn.avg_var, bn.decay)
        node = BNReLUNHWC(bn.eps, running=running)
    else:
        node = BNReLUNHWC(bn.eps, fixed=(bn.avg_mean, bn.avg_var))
    return node.apply((x, bn.gamma, bn.beta))[0]
