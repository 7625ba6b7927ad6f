"""The chunked-kernel path of :meth:`manifolds.Grassmann.momentum_step_`.

Same steps as :meth:`manifolds.stepping.InPlaceManifold.momentum_step_` (the
generic path), for a retraction with a kernel and the projection transport,
through :mod:`manifolds.inplace`.
"""

# Note [in-place Grassmann steps]
# A step on C x n x k bases is memory-bound (65 MB per tensor for an
# ImageNet head), and a fresh tensor costs 3-4 elementwise passes in page
# faults alone. The generic path allocates the projected gradient every step
# and updates the momentum in a separate pass. Here:
# - "transport" (momentum, no Nesterov): the transport is deferred to the
#   next step, where it is the same projection as the gradient's:
#   M <- P_S(mu M + (1 - tau) D) is one chunked pass with one Gram and one
#   apply product, and the retraction is the other (Note [deferred
#   transport]); it saves a third of the batched products. The stored buffer
#   is therefore tangent at the basis *before* the last step.
# - "paper": B <- mu B + (1 - tau) D, P_S B and the retraction are one
#   chunked pass (_fused.momentum_step_rows).
# Nesterov, no momentum and the first step allocate one tangent per call.
#
# Note [deferred transport]
# With T_{S->S'} = P_{S'} (the projection transport), the transport step
#     M_t = mu P_{S_t} M_{t-1} + (1 - tau) P_{S_t} D_t = P_{S_t}(mu M_{t-1} + (1 - tau) D_t),
# where M_{t-1} was stepped along at S_{t-1}. Keeping M_{t-1} as it was
# and projecting the sum at S_t does the transport and the gradient's
# projection with one product pair instead of two. Nesterov needs P_S D on
# its own (the direction is P_S D + mu M_t), so it keeps the eager transport.

from __future__ import annotations

from collections.abc import Callable

import torch

from . import _fused, inplace

__all__ = ["applies", "momentum_step_"]


def applies(retraction: Callable, transport_name: str, *tensors: torch.Tensor) -> bool:
    """Whether the kernels serve this step: a kernel retraction, projection transport, float32/64 row storage."""
    if inplace.kernel_name(retraction) is None or transport_name != "projection":
        return False
    x = tensors[0]
    return x.dtype in (torch.float32, torch.float64) and _fused.row_view(x) is not None


def momentum_step_(retraction, x, grad, buf, *, lr, momentum, dampening, nesterov, style, reorthonormalize):
    """The kernel path; arguments and result as :meth:`manifolds.Grassmann.momentum_step_`."""
    deferred = style == "transport" and momentum != 0 and not nesterov
    if style == "transport":
        buf = _transport_step(retraction, x, grad, buf, lr, momentum, dampening, nesterov)
    else:
        buf = _paper_step(retraction, x, grad, buf, lr, momentum, dampening, nesterov)
    if reorthonormalize:
        inplace.orthonormalize_(x)
        if style == "transport" and buf is not None and not deferred:
            inplace.project(x, buf, out=buf)
    return buf


def _retract(x, u, alpha, retraction):
    return inplace._retract(x, u, alpha, retraction, None, check_values=False)  # hot path: no device sync


def _new_buffer(x: torch.Tensor) -> torch.Tensor:
    return torch.empty_like(x, memory_format=torch.preserve_format)


def _transport_step(retraction, x, grad, buf, lr, momentum, dampening, nesterov):
    if momentum == 0:
        _retract(x, inplace.project(x, grad), -lr, retraction)
        return None
    if nesterov:  # direction G + mu M; M is what is carried on
        rgrad = inplace.project(x, grad)
        if buf is None:
            buf = _new_buffer(x).copy_(rgrad)
        else:
            buf.mul_(momentum).add_(rgrad, alpha=1 - dampening)
        inplace._retract_transport(x, rgrad.add_(buf, alpha=momentum), buf, -lr, retraction, check_values=False)
        return buf
    if buf is None:
        buf = inplace.project(x, grad, out=_new_buffer(x))
        _retract(x, buf, -lr, retraction)  # its transport happens at the next step
        return buf
    inplace.momentum_step_(x, grad, buf, lr=lr, momentum=momentum, dampening=dampening, retraction=retraction)
    return buf


def _paper_step(retraction, x, grad, buf, lr, momentum, dampening, nesterov):
    if buf is not None and momentum != 0 and not nesterov:  # one chunked pass
        inplace.momentum_step_(
            x, grad, buf, lr=lr, momentum=momentum, dampening=dampening, mode="paper", retraction=retraction
        )
        return buf
    direction = grad
    if momentum != 0:
        if buf is None:
            buf = _new_buffer(x).copy_(grad)
        else:
            buf.mul_(momentum).add_(grad, alpha=1 - dampening)
        direction = torch.add(grad, buf, alpha=momentum) if nesterov else buf
    _retract(x, inplace.project(x, direction), -lr, retraction)
    return buf if momentum != 0 else None
