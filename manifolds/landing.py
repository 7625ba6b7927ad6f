r"""The landing field on full-rank ``n x k`` matrices: retraction-free steps toward orthonormal bases.

The landing method (Ablin & Peyré, 2022; Ablin, Vary, Gao & Absil, 2024)
moves a basis :math:`S` (shape ``(..., n, k)``, not necessarily orthonormal)
along the relative gradient of a direction :math:`D` plus a normal term that
pulls it back toward :math:`S^TS = I`:

.. math:: \Lambda(S) = \psi S + \lambda\, S (S^TS - I), \qquad
          \psi = D S^T - S D^T \;(\text{skew}), \qquad
          \psi S = D\, S^TS - S\, D^TS.

Only ``k x k`` Gram matrices and ``n x k`` products are formed (never the
``n x n`` matrix :math:`\psi`). At an orthonormal basis :math:`\psi S = (I -
SS^T) D` when :math:`S^TD` is symmetric, which holds for every objective that
depends on :math:`S` only through its span (``f(SQ) = f(S)``): it is then the
Riemannian gradient that :class:`~grassmann_cls.RiemannianSGD` steps along,
so step sizes carry over. (Ablin et al. write :math:`\psi = \operatorname{skew}(DS^T)`,
half of ours.) Everything here is equivariant: ``S -> SQ``, ``D -> DQ`` with
``Q`` orthogonal gives ``Λ -> ΛQ`` and the same step size.

:func:`safe_step_size` is the largest step that keeps
:math:`\|S^TS - I\|_F \le \varepsilon` (see its Notes).
"""

from __future__ import annotations

import torch

from ._linalg import combine, gram

__all__ = ["landing_field", "safe_step_size", "landing_step_"]


def landing_field(s: torch.Tensor, direction: torch.Tensor, attraction: float) -> tuple[torch.Tensor, torch.Tensor]:
    r"""The landing field :math:`\Lambda` and the distance :math:`\|S^TS - I\|_F`.

    Parameters
    ----------
    s : torch.Tensor
        Full-rank basis, shape ``(..., n, k)``.
    direction : torch.Tensor
        Euclidean gradient (or momentum of gradients) :math:`D`, same shape.
    attraction : float
        :math:`\lambda \ge 0`, the weight of the normal term.

    Returns
    -------
    field : torch.Tensor
        :math:`D\,S^TS - S\,D^TS + \lambda S(S^TS - I)`, shape ``(..., n, k)``.
    distance : torch.Tensor
        :math:`\|S^TS - I\|_F`, shape ``(...)``.
    """
    g = gram(s, s)
    eye = torch.eye(g.shape[-1], dtype=g.dtype, device=g.device)
    error = g - eye
    field = combine(direction, g, s, attraction * error - gram(direction, s))
    return field, torch.linalg.matrix_norm(error)


def safe_step_size(distance: torch.Tensor, field: torch.Tensor, attraction: float, bound: float) -> torch.Tensor:
    r"""Largest step :math:`\eta` after which :math:`\|S'^TS' - I\|_F \le \varepsilon`, :math:`S' = S - \eta\Lambda`.

    .. math:: \eta^* = \min\Bigl(\frac{1}{2\lambda},\;
              \frac{\lambda d(1-d) + \sqrt{\lambda^2 d^2 (1-d)^2 + q(\varepsilon - d)}}{q}\Bigr),
              \qquad d = \|S^TS - I\|_F,\; q = \|\Lambda\|_F^2.

    Parameters
    ----------
    distance : torch.Tensor
        :math:`d`, shape ``(...)`` (from :func:`landing_field`).
    field : torch.Tensor
        :math:`\Lambda`, shape ``(..., n, k)``.
    attraction : float
        :math:`\lambda > 0`.
    bound : float
        :math:`\varepsilon \in (0, 1)`.

    Returns
    -------
    torch.Tensor
        :math:`\eta^*`, shape ``(...)``; ``inf`` where :math:`\Lambda = 0`.

    Notes
    -----
    With :math:`E = S^TS - I` and :math:`\psi` skew, :math:`S^T\Lambda + \Lambda^TS
    = 2\lambda(E + E^2)`, so
    :math:`S'^TS' - I = E\,(I - 2\eta\lambda(I + E)) + \eta^2\Lambda^T\Lambda`.
    For :math:`\eta \le 1/(2\lambda)` and :math:`d < 1` the first term has
    Frobenius norm at most :math:`d\,(1 - 2\eta\lambda(1 - d))`, the second
    at most :math:`\eta^2 q`; :math:`\eta^*` is where their sum reaches
    :math:`\varepsilon` (the bound of Ablin & Peyré's safe step, with the
    exact :math:`q`). From :math:`d \le \varepsilon` a step of at most
    :math:`\eta^*` stays within :math:`\varepsilon`; from :math:`d > \varepsilon`
    (no step can stay within it) :math:`\eta^*` is the step that brings the
    bound lowest, so the distance shrinks.
    """
    q = field.square().sum(dim=(-2, -1))
    pull = attraction * distance * (1 - distance)
    root = (pull.square() + q * (bound - distance)).clamp_min(0).sqrt()
    step = torch.where(q > 0, (pull + root) / q.clamp_min(torch.finfo(q.dtype).tiny), torch.inf)
    return step.clamp_max(0.5 / attraction) if attraction > 0 else step


def landing_step_(s, grad, buf, *, lr, momentum, dampening=0.0, nesterov=False, attraction=1.0, bound=0.1):
    """One landing step with heavy-ball momentum, in place; see :meth:`manifolds.Grassmann.landing_step_`."""
    with torch.no_grad():
        direction = grad
        if momentum != 0:
            if buf is None:
                buf = torch.empty_like(s, memory_format=torch.preserve_format).copy_(grad)
            else:
                buf.mul_(momentum).add_(grad, alpha=1 - dampening)
            direction = grad.add(buf, alpha=momentum) if nesterov else buf
        field, distance = landing_field(s, direction, attraction)
        step = safe_step_size(distance, field, attraction, bound).clamp_max(lr)
        s.sub_(field * step[..., None, None])
    return buf if momentum != 0 else None
