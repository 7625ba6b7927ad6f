r"""Riemannian SGD for models whose class subspaces live on the Grassmann manifold."""

from __future__ import annotations

import contextlib

import geoopt
import torch
from torch.optim import Optimizer
from torch.optim.sgd import sgd

from .. import _checks
from . import _grassmann_steps
from .guard import NONFINITE, apply_nonfinite_policy, is_manifold_parameter
from ..errors import CheckpointError, ConfigError, GrassmannError, ManifoldTypeError, OptionError

__all__ = ["RiemannianSGD", "is_manifold_parameter", "GRASSMANN_MOMENTUM", "NONFINITE"]

GRASSMANN_MOMENTUM = ("transport", "paper")
"""Accepted values of ``grassmann_momentum``."""

_PAPER_REORTH_EVERY = 5


def _reorth_every(group: dict) -> int:
    """The group's re-orthonormalisation period; 0 means never."""
    every = group["reorth_every"]
    if every is None:
        return _PAPER_REORTH_EVERY if group["grassmann_momentum"] == "paper" else 0
    return every


class RiemannianSGD(Optimizer):
    r"""SGD for plain tensors and Riemannian SGD for Grassmann bases, in one optimizer.

    Plain tensors (and geoopt tensors on ``geoopt.Euclidean``) are stepped by
    the same function as :class:`torch.optim.SGD`, with the same state, so
    the results are identical. Every ``geoopt.ManifoldParameter`` on another
    manifold (e.g. :class:`manifolds.Grassmann`, ``GrassmannHead.bases``) is
    stepped on its manifold; weight decay never touches it, and ``p.grad`` is
    never modified. With Euclidean gradient :math:`D` at the basis :math:`S`,
    momentum :math:`\mu`, dampening :math:`\tau` and learning rate
    :math:`\eta`:

    ``grassmann_momentum="transport"`` (default): a tangent momentum buffer,
    carried to the new point by the manifold's vector transport,

    .. math:: G = (I - SS^T) D, \quad M \leftarrow \mu M + (1-\tau) G
              \;(M_0 = G), \quad S' = R_S(-\eta M), \quad
              M \leftarrow \mathcal{T}_{S \to S'} M,

    with the manifold's retraction :math:`R` and transport :math:`\mathcal{T}`.
    For the projection transport (the default) on a plain
    :class:`manifolds.Grassmann`, the transport is deferred to the next step,
    where :math:`M \leftarrow (I - SS^T)(\mu M + (1-\tau) D)` does it together
    with the gradient's projection: the same step in exact arithmetic, with a
    third fewer batched products. ``state["momentum_buffer"]`` then holds
    :math:`M` as stepped along, tangent at the basis before the last step;
    its projection onto the current basis is the transported buffer.

    ``grassmann_momentum="paper"``: the reference algorithm of the GCR paper.
    The buffer holds raw Euclidean gradients and is projected only when used;
    the step is the exponential map (the paper's thin-SVD geodesic
    :math:`S' = (S V\cos\eta\Sigma - U\sin\eta\Sigma) V^T` for
    :math:`G = U\Sigma V^T`, computed here through the ``k x k`` Gram matrix),

    .. math:: B \leftarrow \mu B + (1-\tau) D \;(B_0 = D), \quad
              G = (I - SS^T) B, \quad S' = \operatorname{Exp}_S(-\eta G),

    and every ``reorth_every``-th step (default 5) :math:`S` is replaced by the
    sign-fixed QR factor of itself. With ``nesterov=True`` the direction is
    :math:`D + \mu B` (paper) or :math:`G + \mu M` (transport), as in
    ``torch.optim.SGD``.

    Parameters
    ----------
    params : iterable
        Parameters, named parameters or parameter groups, as for any
        ``torch.optim`` optimizer. Groups may override every option below
        except ``nonfinite``.
    lr : float
        Learning rate :math:`\eta \ge 0`.
    momentum, dampening, weight_decay : float
        As in ``torch.optim.SGD``; ``weight_decay`` applies to plain tensors only.
    nesterov : bool
        Nesterov momentum (needs ``momentum > 0`` and ``dampening = 0``).
    grassmann_momentum : {"transport", "paper"}
        How manifold parameters keep momentum (see above).
    reorth_every : int, optional
        Replace each basis by its sign-fixed QR factor every this many steps;
        0 never. ``None``: 5 for ``"paper"``, never for ``"transport"`` (the
        retraction already returns orthonormal bases).
    nonfinite : {"raise", "skip"}
        If any gradient holds a NaN or Inf, or would move a basis further than
        its dtype resolves (see :func:`~grassmann_cls.optim.guard.first_bad_gradient`): raise
        :class:`~grassmann_cls.errors.NonFiniteError` naming the parameter, or
        skip the whole step with a ``RuntimeWarning``. Nothing is written in
        either case, so bases and momentum stay finite. (``torch.optim.SGD``
        would write the NaN.)
    foreach : bool, optional
        As in ``torch.optim.SGD``, for the plain tensors.

    Notes
    -----
    State per manifold parameter: ``"momentum_buffer"`` (shape and memory
    layout of the parameter, allocated once) and ``"step"``; bases on a plain
    :class:`manifolds.Grassmann` are stepped in place through
    :mod:`manifolds.inplace` and may also hold a ``"scratch"`` tangent of the
    same shape, which :meth:`state_dict` leaves out (it holds nothing between
    steps). State per plain tensor: ``"momentum_buffer"`` exactly as
    ``torch.optim.SGD`` keeps it.

    Examples
    --------
    >>> import torch
    >>> from grassmann_cls import GrassmannHead
    >>> model = torch.nn.Sequential(torch.nn.Linear(8, 16), GrassmannHead(16, 3, 2))
    >>> opt = RiemannianSGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    >>> loss = model(torch.randn(4, 8)).logsumexp(-1).mean()
    >>> loss.backward()
    >>> opt.step()
    """

    def __init__(
        self,
        params,
        lr: float,
        momentum: float = 0,
        dampening: float = 0,
        weight_decay: float = 0,
        nesterov: bool = False,
        *,
        grassmann_momentum: str = "transport",
        reorth_every: int | None = None,
        nonfinite: str = "raise",
        foreach: bool | None = None,
    ):
        self.nonfinite = _checks.choice("nonfinite", nonfinite, NONFINITE)
        defaults = {
            "lr": lr,
            "momentum": momentum,
            "dampening": dampening,
            "weight_decay": weight_decay,
            "nesterov": nesterov,
            "foreach": foreach,
            "grassmann_momentum": grassmann_momentum,
            "reorth_every": reorth_every,
        }
        _validate_group(defaults)
        with _torch_argument_errors():
            super().__init__(params, defaults)

    def add_param_group(self, param_group: dict) -> None:
        if not isinstance(param_group, dict):
            raise ManifoldTypeError(f"a parameter group must be a dict; got {type(param_group).__name__}")
        if "params" not in param_group:
            raise ConfigError(f"a parameter group needs 'params'; got keys {sorted(param_group)}")
        _validate_group({**self.defaults, **{k: v for k, v in param_group.items() if k != "params"}})
        with _torch_argument_errors():
            super().add_param_group(param_group)

    def __setstate__(self, state):
        super().__setstate__(state)
        if not hasattr(self, "nonfinite"):
            self.nonfinite = "raise"

    def load_state_dict(self, state_dict: dict) -> None:
        """Load a :meth:`state_dict`; a mismatching or damaged one raises and changes nothing.

        Raises
        ------
        CheckpointError
            If ``state_dict`` does not fit these parameters (group sizes, buffer
            shapes) or holds bad options or non-finite momentum buffers.
        """
        load_checked(self, super().load_state_dict, state_dict)

    def state_dict(self) -> dict:
        """``torch.optim.Optimizer.state_dict`` without the scratch tensors (rebuilt by the next step)."""
        packed = super().state_dict()
        scratch = _grassmann_steps.SCRATCH
        packed["state"] = {i: {k: v for k, v in s.items() if k != scratch} for i, s in packed["state"].items()}
        return packed

    def __getstate__(self):
        return {**super().__getstate__(), "nonfinite": self.nonfinite}

    @torch.no_grad()
    def step(self, closure=None):
        """Perform one optimisation step; returns ``closure()``'s loss if given."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        self._check_gradients()
        if apply_nonfinite_policy(self.param_groups, self.nonfinite):
            self._update()
        return loss

    @torch.no_grad()
    def _update(self) -> None:
        """The update itself, for gradients already checked (see :meth:`step`).

        :class:`~grassmann_cls.optim.HybridOptimizer` checks every inner
        optimizer's gradients at once and then calls this, so the bases'
        gradients are not scanned twice per step.
        """
        for group in self.param_groups:
            plain = [p for p in group["params"] if p.grad is not None and not is_manifold_parameter(p)]
            self._step_plain(group, plain)
            for p in group["params"]:
                if p.grad is not None and is_manifold_parameter(p):
                    self._step_manifold(group, p)

    # --- checks -----------------------------------------------------------------
    def _check_gradients(self) -> None:
        """Refuse what the manifold step cannot use, before anything is written."""
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None and p.grad.is_sparse and is_manifold_parameter(p):
                    raise OptionError(
                        f"manifold parameters need dense gradients; got a sparse one for shape {tuple(p.shape)}"
                    )

    # --- plain tensors ----------------------------------------------------------
    def _step_plain(self, group: dict, params: list[torch.Tensor]) -> None:
        """Exactly ``torch.optim.SGD.step`` for these parameters.

        # Note [foreach Nesterov writes into p.grad]
        # torch's multi-tensor SGD adds the momentum into the gradient tensors
        # in place when nesterov=True; the single-tensor path does not. Both
        # compute the same numbers, so Nesterov always takes the single path.
        """
        if not params:
            return
        grads = [p.grad for p in params]
        momentum = group["momentum"]
        buffers = [self.state[p].get("momentum_buffer") for p in params] if momentum != 0 else []
        sgd(
            params,
            grads,
            buffers,
            has_sparse_grad=any(g.is_sparse for g in grads),
            foreach=False if group["nesterov"] else group["foreach"],
            weight_decay=group["weight_decay"],
            momentum=momentum,
            lr=group["lr"],
            dampening=group["dampening"],
            nesterov=group["nesterov"],
            maximize=False,
        )
        for p, buf in zip(params, buffers):
            self.state[p]["momentum_buffer"] = buf

    # --- manifold parameters -----------------------------------------------------
    def _step_manifold(self, group: dict, p: torch.Tensor) -> None:
        state = self.state[p]
        state["step"] = state.get("step", 0) + 1
        every = _reorth_every(group)
        reorthonormalize = bool(every) and state["step"] % every == 0
        if _grassmann_steps.applies(p):  # plain Grassmann: in place (Note [in-place Grassmann steps])
            _grassmann_steps.step(group, p, state, reorthonormalize=reorthonormalize)
            return
        if group["grassmann_momentum"] == "paper":
            self._paper_step(group, p, state)
        else:
            self._transport_step(group, p, state)
        if reorthonormalize:
            manifold = p.manifold
            p.copy_(manifold.projx(p))
            buf = state.get("momentum_buffer")
            if buf is not None and group["grassmann_momentum"] == "transport":
                buf.copy_(manifold.proju(p, buf))

    def _buffer(self, state: dict, p: torch.Tensor, first: torch.Tensor, group: dict) -> torch.Tensor:
        """Update (or create, as a copy of ``first``) the momentum buffer in place."""
        buf = state.get("momentum_buffer")
        if buf is None:
            buf = torch.empty_like(p, memory_format=torch.preserve_format).copy_(first)
            state["momentum_buffer"] = buf
        else:
            buf.mul_(group["momentum"]).add_(first, alpha=1 - group["dampening"])
        return buf

    def _paper_step(self, group: dict, p: torch.Tensor, state: dict) -> None:
        manifold, grad, momentum = p.manifold, p.grad, group["momentum"]
        direction = grad
        if momentum != 0:
            buf = self._buffer(state, p, grad, group)
            direction = grad.add(buf, alpha=momentum) if group["nesterov"] else buf
        step = manifold.proju(p, direction).mul_(-group["lr"])
        p.copy_(manifold.expmap(p, step))

    def _transport_step(self, group: dict, p: torch.Tensor, state: dict) -> None:
        manifold, momentum, lr = p.manifold, group["momentum"], group["lr"]
        rgrad = manifold.egrad2rgrad(p, p.grad)  # a fresh tensor: reused as the direction below
        if momentum == 0:
            _retract_(manifold, p, rgrad, -lr)
            return
        buf = self._buffer(state, p, rgrad, group)
        direction = rgrad.add_(buf, alpha=momentum) if group["nesterov"] else buf
        _retract_transport_(manifold, p, direction, buf, -lr)


def _retract_(manifold, x: torch.Tensor, u: torch.Tensor, alpha: float) -> None:
    """``x <- retr(x, alpha u)``, in place where the manifold offers ``retr_``."""
    if hasattr(manifold, "retr_"):
        manifold.retr_(x, u, alpha=alpha)
    else:
        x.copy_(manifold.retr(x, u.mul_(alpha)))


def _retract_transport_(manifold, x: torch.Tensor, u: torch.Tensor, v: torch.Tensor, alpha: float) -> None:
    """``x <- y = retr(x, alpha u)`` and ``v <- transp(x, y, v)``; in place where offered (``v`` may be ``u``)."""
    if hasattr(manifold, "retr_transp_"):
        manifold.retr_transp_(x, u, v, alpha=alpha)
        return
    new_point, new_v = manifold.retr_transp(x, u * alpha, v)
    x.copy_(new_point)
    v.copy_(new_v)


@contextlib.contextmanager
def _torch_argument_errors():
    """Turn ``torch.optim.Optimizer``'s own argument errors (bad params) into the library's."""
    try:
        yield
    except GrassmannError:
        raise
    except TypeError as err:
        raise ManifoldTypeError(f"params: {' '.join(str(err).split())}") from err
    except ValueError as err:
        raise ConfigError(f"params: {' '.join(str(err).split())}") from err


def load_checked(optimizer: Optimizer, load, state_dict) -> None:
    """``load(state_dict)`` then check options and buffers, restoring the old state on failure."""
    if not isinstance(state_dict, dict) or not isinstance(state_dict.get("param_groups"), list):
        raise CheckpointError(f"expected an optimizer state_dict with 'state' and 'param_groups'; got {type(state_dict).__name__}")
    previous = Optimizer.state_dict(optimizer)
    try:
        load(state_dict)
        _check_loaded(optimizer)
    except (GrassmannError, KeyError, ValueError, TypeError, RuntimeError, IndexError) as err:
        Optimizer.load_state_dict(optimizer, previous)
        first = " ".join(str(err).split())[:200] or type(err).__name__
        raise CheckpointError(f"optimizer state_dict does not match {type(optimizer).__name__} ({first})") from None


def _check_loaded(optimizer: Optimizer) -> None:
    """Every group's options valid; every momentum buffer finite and shaped like its parameter."""
    for group in optimizer.param_groups:
        if "grassmann_momentum" in group:
            _validate_group(group)
        for p in group["params"]:
            buf = optimizer.state.get(p, {}).get("momentum_buffer")
            if buf is None:
                continue
            if buf.shape != p.shape:
                raise CheckpointError(f"momentum buffer of shape {tuple(buf.shape)} for a parameter of shape {tuple(p.shape)}")
            if not bool(torch.isfinite(buf).all()):
                raise CheckpointError(f"the momentum buffer of a parameter of shape {tuple(p.shape)} holds NaN or Inf")


def _validate_group(group: dict) -> None:
    """Check one parameter group's options (at construction, never per step)."""
    _checks.real("lr", group["lr"], minimum=0.0)
    momentum = _checks.real("momentum", group["momentum"], minimum=0.0)
    dampening = _checks.real("dampening", group["dampening"], minimum=0.0, maximum=1.0)
    _checks.real("weight_decay", group["weight_decay"], minimum=0.0)
    if not isinstance(group["nesterov"], bool):
        raise OptionError(f"nesterov must be a bool; got {group['nesterov']!r}")
    if group["nesterov"] and (momentum <= 0 or dampening != 0):
        raise OptionError(
            f"nesterov=True needs momentum > 0 and dampening = 0; got momentum={momentum}, dampening={dampening}"
        )
    _checks.choice("grassmann_momentum", group["grassmann_momentum"], GRASSMANN_MOMENTUM)
    if group["reorth_every"] is not None:
        _checks.integer("reorth_every", group["reorth_every"], minimum=0)
    if group.get("foreach") is not None and not isinstance(group["foreach"], bool):
        raise OptionError(f"foreach must be None or a bool; got {group['foreach']!r}")
