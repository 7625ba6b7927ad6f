"""What Riemannian SGD refuses to step on: non-finite gradients and steps beyond a dtype's resolution.

Both :class:`~grassmann_cls.RiemannianSGD` and
:class:`~grassmann_cls.HybridOptimizer` check every gradient with
:func:`apply_nonfinite_policy` before they write anything.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import geoopt
import torch

from ..errors import NonFiniteError

__all__ = ["NONFINITE", "is_manifold_parameter", "first_bad_gradient", "apply_nonfinite_policy"]

NONFINITE = ("raise", "skip")
"""Accepted values of ``nonfinite``."""


def is_manifold_parameter(p: torch.Tensor) -> bool:
    """Whether ``p`` is a geoopt tensor on a non-Euclidean manifold (stepped on the manifold)."""
    return isinstance(p, geoopt.ManifoldTensor) and not isinstance(p.manifold, geoopt.Euclidean)


# Note [steps beyond a dtype's resolution]
# A finite gradient can still wreck a basis: a step of 1e8 radians in float32
# is numerically arbitrary (ulp(1e8) > pi), and from ~1e19 on, u^T u overflows
# and the retraction returns NaN. The momentum buffer is at most
# max|g| / (1 - momentum), so ||lr * direction||_F <= lr * max|g| * sqrt(n k)
# / (1 - momentum); a gradient for which this exceeds 1 / eps(dtype) is
# treated like a non-finite one. No sensible run comes near the bound
# (float32: 8.4e6 rad), and it needs no extra pass: the same inf-norms and the
# same host sync as the NaN check.


def _step_bound(group: dict, p: torch.Tensor) -> float:
    """Largest ``max |grad|`` whose step ``p`` can take, ``inf`` for plain tensors (see the note above)."""
    if not is_manifold_parameter(p) or not p.is_floating_point() or p.dim() < 2:
        return math.inf
    momentum = group.get("momentum", 0.0)
    scale = group.get("lr", 0.0) * math.sqrt(p.shape[-2] * p.shape[-1])
    if 0.0 < momentum < 1.0:
        scale /= 1.0 - momentum
    return math.inf if scale == 0.0 else 1.0 / (torch.finfo(p.dtype).eps * scale)


def first_bad_gradient(param_groups: list[dict]) -> str | None:
    """Why the first unusable gradient of ``param_groups`` is unusable, or ``None``.

    A gradient is unusable if it holds a NaN or Inf, or if it is a manifold
    parameter's and could move it further than its dtype resolves (a step
    whose size in radians exceeds what the dtype can represent makes the
    basis numerically arbitrary). One inf-norm pass over the gradients and
    one device-to-host copy of one number per parameter (the step's only sync);
    the parameter's name (``param_names``) is given when known.
    """
    items = [(i, j, p) for i, g in enumerate(param_groups) for j, p in enumerate(g["params"]) if p.grad is not None]
    if not items:
        return None
    norms = _inf_norms([_dense(p.grad) for _, _, p in items])
    device = norms[0].device
    values = torch.stack([n.to(device=device, dtype=torch.float64) for n in norms]).tolist()
    for (i, j, p), norm in zip(items, values):
        problem = None
        if not math.isfinite(norm):
            problem = "non-finite gradient in {label} of shape {shape}"
        elif norm > (bound := _step_bound(param_groups[i], p)):
            problem = (
                f"gradient of {{label}} of shape {{shape}} is too large: max |grad| = {norm:.3g} > {bound:.3g}, "
                f"a step beyond what {p.dtype} resolves; lower the learning rate or clip the gradients"
            )
        if problem is not None:
            names = param_groups[i].get("param_names")
            where = f"param_groups[{i}]['params'][{j}]"
            label = f"{names[j]!r} ({where})" if names else where
            return problem.format(label=label, shape=tuple(p.shape))
    return None


def apply_nonfinite_policy(param_groups: list[dict], policy: str, *, stacklevel: int = 3) -> bool:
    """Whether the step may go ahead: raise or warn (``policy``) on :func:`first_bad_gradient`."""
    reason = first_bad_gradient(param_groups)
    if reason is None:
        return True
    message = f"{reason}; nothing was updated"
    if policy == "raise":
        raise NonFiniteError(message + " (pass nonfinite='skip' to skip such steps)")
    warnings.warn(message + " (step skipped)", RuntimeWarning, stacklevel=stacklevel)
    return False


def _inf_norms(grads: list[torch.Tensor]) -> list[torch.Tensor]:
    """``max |g|`` of every gradient (NaN if it holds one); 0 for an empty one.

    # Note [inf-norms on CPU]
    # torch 2.13's CPU inf-norm reduction (_foreach_norm, vector_norm,
    # abs().amax()) costs about 7 elementwise passes: 42 ms for a 65 MB
    # gradient, against 6 ms to add two such tensors and 3 ms for aminmax over
    # a 1-D view of the same memory. max(max g, -min g) is exactly max |g| and
    # is NaN when g holds one, so real CPU gradients take that route; others
    # keep the fused multi-tensor kernel.
    """
    norms: list[torch.Tensor | None] = [
        _minmax_inf_norm(g) if g.device.type == "cpu" and g.is_floating_point() else None for g in grads
    ]
    rest = [i for i, n in enumerate(norms) if n is None]
    fused: Sequence[torch.Tensor] = []
    if rest:
        try:
            fused = torch._foreach_norm([grads[i] for i in rest], ord=float("inf"))
        except (RuntimeError, TypeError):  # older torch without an inf-norm foreach kernel
            fused = [torch.linalg.vector_norm(grads[i], ord=float("inf")) for i in rest]
    by_index = dict(zip(rest, fused))
    return [n if n is not None else by_index[i] for i, n in enumerate(norms)]


def _minmax_inf_norm(g: torch.Tensor) -> torch.Tensor:
    """``max |g|`` of a real tensor as ``max(max g, -min g)`` over a 1-D view of its memory."""
    if g.numel() == 0:
        return g.new_zeros(())
    low, high = torch.aminmax(_flat(g))
    return torch.maximum(high, low.neg())


def _flat(t: torch.Tensor) -> torch.Tensor:
    """``t``'s elements as a 1-D view when its memory is dense in some order of its dims, else ``t``."""
    if t.is_contiguous():
        return t.view(-1)
    dense = t.permute(sorted(range(t.dim()), key=t.stride, reverse=True))
    return dense.view(-1) if dense.is_contiguous() else t


def _dense(t: torch.Tensor) -> torch.Tensor:
    return t.coalesce().values() if t.is_sparse else t
