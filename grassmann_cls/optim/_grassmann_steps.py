r"""Riemannian SGD steps on plain :class:`manifolds.Grassmann` bases, through :mod:`manifolds.inplace`.

:class:`~grassmann_cls.RiemannianSGD` steps a manifold parameter with these
functions when :func:`applies` says so: its manifold is exactly
:class:`manifolds.Grassmann`. Every other manifold keeps the generic path of
``rsgd.py``; in particular :class:`~grassmann_cls.PaddedGrassmann`, whose
padded columns must stay masked, which the plain projection here would not do.
The formulas are those of :class:`~grassmann_cls.RiemannianSGD`'s docstring.

# Note [in-place Grassmann steps]
# A step on C x n x k bases is memory-bound (65 MB per tensor for an
# ImageNet head), and a fresh tensor costs 3-4 elementwise passes in page
# faults alone. The generic path allocates the projected gradient every step
# and updates the momentum in a separate pass. Here:
# - "transport": the projection of the Euclidean gradient is accumulated
#   straight into the momentum buffer, M <- mu M + (1 - tau) P_S D, in one
#   chunked pass; the retraction and the projection transport of M are one
#   more (Grassmann.retr_transp_).
# - "transport" with the projection transport (the default): the transport
#   is deferred to the next step, where it is the same projection as the
#   gradient's: M <- P_S(mu M + (1 - tau) D) is one pass with one Gram and
#   one apply product, and the retraction is the other. Projection is linear,
#   so this is the step above in exact arithmetic (Note [deferred transport]);
#   it saves a third of the batched products. The stored buffer is therefore
#   tangent at the basis *before* the last step.
# - "paper": B <- mu B + (1 - tau) D is one elementwise pass, P_S B goes to a
#   scratch tensor, and the exponential map steps along it in place.
#
# Note [deferred transport]
# With T_{S->S'} = P_{S'} (the projection transport), the transport step
#     M_t = mu P_{S_t} M_{t-1} + (1 - tau) P_{S_t} D_t = P_{S_t}(mu M_{t-1} + (1 - tau) D_t),
# where M_{t-1} was stepped along at S_{t-1}. Keeping M_{t-1} as it was
# and projecting the sum at S_t does the transport and the gradient's
# projection with one product pair instead of two. Nesterov needs P_S D on
# its own (the direction is P_S D + mu M_t) and other transports are not a
# projection; both keep the eager transport.
# Nothing is allocated after the first step: "momentum_buffer" and, where a
# second tangent is needed (Nesterov, "paper", no momentum), "scratch" are
# created once in the parameter's memory layout (the (C, k, n) rows of a
# GrassmannHead). The scratch is overwritten before it is read in every step,
# so RiemannianSGD.state_dict leaves it out.
"""

from __future__ import annotations

import torch

from manifolds import Grassmann, inplace

__all__ = ["SCRATCH", "applies", "defers_transport", "step"]

SCRATCH = "scratch"
"""State key of the per-parameter scratch tangent (not saved by ``state_dict``)."""


def applies(p: torch.Tensor) -> bool:
    """Whether ``p`` (a manifold parameter) is stepped here: its manifold is exactly ``Grassmann``."""
    return type(p.manifold) is Grassmann


def step(group: dict, p: torch.Tensor, state: dict, *, reorthonormalize: bool) -> None:
    """One step of ``p`` (shape ``(..., n, k)``) with ``group``'s options, in place.

    ``state`` holds ``"momentum_buffer"`` and ``"scratch"`` (both shaped and
    laid out like ``p``) once they are needed. With ``reorthonormalize`` the
    step ends with ``S <- qf(S)`` (sign-fixed QR) and, for ``"transport"``
    with an eager transport, the buffer projected onto the new basis (a
    deferred transport projects it at the next step).
    """
    transport = group["grassmann_momentum"] == "transport"
    if transport:
        _transport_step(group, p, state)
    else:
        _paper_step(group, p, state)
    if reorthonormalize:
        inplace.orthonormalize_(p)
        buf = state.get("momentum_buffer")
        if transport and buf is not None and not defers_transport(group, p):
            inplace.project(p, buf, out=buf)


def defers_transport(group: dict, p: torch.Tensor) -> bool:
    """Whether ``p``'s momentum buffer is transported at the next step (Note [deferred transport])."""
    return (
        group["grassmann_momentum"] == "transport"
        and group["momentum"] != 0
        and not group["nesterov"]
        and p.manifold.transport_name == "projection"
    )


def _transport_step(group: dict, p: torch.Tensor, state: dict) -> None:
    r"""``G = P_S D``, ``M <- mu M + (1 - tau) G`` (``M_0 = G``), ``S <- R_S(-lr M)``, ``M`` transported."""
    manifold, grad, momentum, lr = p.manifold, p.grad, group["momentum"], group["lr"]
    if momentum == 0:
        manifold.retr_(p, inplace.project(p, grad, out=_tensor(state, SCRATCH, p)), alpha=-lr)
        return
    buf = state.get("momentum_buffer")
    if group["nesterov"]:  # direction G + mu M; M is what is carried on
        rgrad = inplace.project(p, grad, out=_tensor(state, SCRATCH, p))
        if buf is None:
            buf = _tensor(state, "momentum_buffer", p).copy_(rgrad)
        else:
            buf.mul_(momentum).add_(rgrad, alpha=1 - group["dampening"])
        manifold.retr_transp_(p, rgrad.add_(buf, alpha=momentum), buf, alpha=-lr)
        return
    deferred = defers_transport(group, p)
    if buf is None:
        buf = inplace.project(p, grad, out=_tensor(state, "momentum_buffer", p))
    elif deferred:  # the previous step's transport happens here
        inplace.momentum_step_(p, grad, buf, lr=lr, momentum=momentum, dampening=group["dampening"],
                               retraction=manifold.retraction)
        return
    else:
        inplace.project(p, grad, out=buf, alpha=1 - group["dampening"], beta=momentum)
    if deferred:
        manifold.retr_(p, buf, alpha=-lr)
    else:
        manifold.retr_transp_(p, buf, buf, alpha=-lr)


def _paper_step(group: dict, p: torch.Tensor, state: dict) -> None:
    r"""``B <- mu B + (1 - tau) D`` (``B_0 = D``), ``S <- Exp_S(-lr P_S B)``."""
    grad, momentum = p.grad, group["momentum"]
    buf = state.get("momentum_buffer")
    if buf is not None and momentum != 0 and not group["nesterov"]:  # one chunked pass
        inplace.momentum_step_(p, grad, buf, lr=group["lr"], momentum=momentum, dampening=group["dampening"],
                               mode="paper")
        return
    scratch = _tensor(state, SCRATCH, p)
    direction = grad
    if momentum != 0:
        if buf is None:
            buf = _tensor(state, "momentum_buffer", p).copy_(grad)
        else:
            buf.mul_(momentum).add_(grad, alpha=1 - group["dampening"])
        direction = torch.add(grad, buf, alpha=momentum, out=scratch) if group["nesterov"] else buf
    inplace.project(p, direction, out=scratch)
    inplace._retract(p, scratch, -group["lr"], "exp", None, check_values=False)  # hot path: no sync


def _tensor(state: dict, key: str, p: torch.Tensor) -> torch.Tensor:
    """``state[key]``, created uninitialised with ``p``'s shape and memory layout if missing."""
    t = state.get(key)
    if t is None:
        t = state[key] = torch.empty_like(p, memory_format=torch.preserve_format)
    return t
