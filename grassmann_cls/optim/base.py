r"""What every optimizer of this package shares: :class:`ManifoldOptimizer`."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator
from typing import Any, ClassVar, cast

import torch
from torch.optim import Optimizer
from torch.optim.sgd import sgd

from manifolds import InPlaceManifold
from manifolds import checks as _checks

from ..errors import CheckpointError, ConfigError, GrassmannError, ManifoldTypeError, OptionError
from .guard import NONFINITE, apply_nonfinite_policy, is_manifold_parameter

__all__ = ["ManifoldOptimizer", "check_sgd_options", "check_foreach", "sgd_step"]


class ManifoldOptimizer(Optimizer):
    r"""A ``torch.optim`` optimizer that steps plain tensors as torch does and bases on their manifold.

    The base class of :class:`~grassmann_cls.RiemannianSGD`,
    :class:`~grassmann_cls.RiemannianAdam` and :class:`~grassmann_cls.LandingSGD`,
    and of optimizers written for this library. Parameters for which
    :func:`~grassmann_cls.is_manifold_parameter` holds (a
    ``geoopt.ManifoldParameter`` on a non-Euclidean manifold, e.g.
    ``GrassmannHead.bases`` of shape ``(..., n, k)``) are *manifold
    parameters*; every other tensor is *plain*.

    A subclass provides three methods:

    - ``_validate_group(group)``: raise an error of :mod:`grassmann_cls.errors`
      for a bad option of one parameter group (a ``dict`` of the group's
      options). Called at construction, by :meth:`add_param_group` and by
      :meth:`load_state_dict`; never per step.
    - ``_step_plain(group, params)``: step the plain tensors ``params`` of
      ``group`` (those with a gradient), e.g. with a ``torch.optim`` function.
    - ``_step_manifold(group, p)``: step one manifold parameter ``p`` of
      ``group`` in place through its manifold's public methods, keeping its
      state in ``self.state[p]``.

    and may override:

    - ``_validate_manifold_parameter(group, p)``: refuse a manifold parameter
      that ``group``'s options cannot step (default: accept). Every manifold
      parameter must in any case be on a :class:`manifolds.InPlaceManifold`.
    - ``_state_shapes(p)``: the shape of each state tensor of ``p`` that
      :meth:`load_state_dict` checks (default: ``"momentum_buffer"`` shaped
      like ``p``).
    - the class attributes ``_dense_gradients_only`` (``True``: refuse sparse
      gradients of plain tensors too; manifold parameters always need dense
      ones) and ``_geoopt_counterpart`` (the ``geoopt.optim`` class that error
      messages suggest for manifolds that are not in-place ones).

    In return the subclass gets :meth:`step` (closure, :meth:`check_gradients`,
    the ``nonfinite`` policy, :meth:`update`), validated :meth:`add_param_group`,
    a :meth:`load_state_dict` that refuses a damaged state dict and changes
    nothing, and pickling that keeps ``nonfinite``.

    Parameters
    ----------
    params : iterable
        Parameters, named parameters or parameter groups, as for any
        ``torch.optim`` optimizer.
    defaults : dict
        Each option's default for the groups; checked by ``_validate_group``.
    nonfinite : {"raise", "skip"}
        If any gradient holds a NaN or Inf, or would move a basis further than
        its dtype resolves (see :func:`~grassmann_cls.optim.guard.first_bad_gradient`):
        raise :class:`~grassmann_cls.errors.NonFiniteError` naming the
        parameter, or skip the whole step with a ``RuntimeWarning``. Nothing is
        written in either case. One value for all groups.

    Attributes
    ----------
    nonfinite : str
        The policy above.

    Examples
    --------
    Riemannian gradient descent without momentum, plain tensors by SGD:

    >>> import torch
    >>> from grassmann_cls import GrassmannHead
    >>> from grassmann_cls.optim.base import ManifoldOptimizer, check_foreach, sgd_step
    >>> class RiemannianGD(ManifoldOptimizer):
    ...     def __init__(self, params, lr, *, nonfinite="raise"):
    ...         super().__init__(params, {"lr": lr, "momentum": 0.0, "dampening": 0.0, "weight_decay": 0.0,
    ...                                   "nesterov": False, "foreach": None}, nonfinite=nonfinite)
    ...     def _validate_group(self, group):
    ...         if not group["lr"] >= 0:
    ...             raise ValueError(f"lr must be >= 0; got {group['lr']}")
    ...         check_foreach(group)
    ...     def _step_plain(self, group, params):
    ...         sgd_step(self, group, params)
    ...     def _step_manifold(self, group, p):
    ...         p.manifold.retr_(p, p.manifold.egrad2rgrad(p, p.grad), alpha=-group["lr"])
    >>> model = torch.nn.Sequential(torch.nn.Linear(8, 16), GrassmannHead(16, 3, 2))
    >>> opt = RiemannianGD(model.parameters(), lr=0.1)
    >>> model(torch.randn(4, 8)).logsumexp(-1).mean().backward()
    >>> opt.step()
    """

    _dense_gradients_only: ClassVar[bool] = False
    _geoopt_counterpart: ClassVar[str | None] = None

    def __init__(self, params: Iterable[Any], defaults: dict[str, Any], *, nonfinite: str = "raise") -> None:
        self.nonfinite = _checks.choice("nonfinite", nonfinite, NONFINITE)
        self._validate_group(defaults)
        with _torch_argument_errors():
            super().__init__(params, defaults)

    # --- what a subclass provides -------------------------------------------------
    def _validate_group(self, group: dict[str, Any]) -> None:
        raise NotImplementedError(f"{type(self).__name__}._validate_group")

    def _step_plain(self, group: dict[str, Any], params: list[torch.Tensor]) -> None:
        raise NotImplementedError(f"{type(self).__name__}._step_plain")

    def _step_manifold(self, group: dict[str, Any], p: torch.Tensor) -> None:
        raise NotImplementedError(f"{type(self).__name__}._step_manifold")

    def _validate_manifold_parameter(self, group: dict[str, Any], p: Any) -> None:
        return None

    def _state_shapes(self, p: torch.Tensor) -> dict[str, tuple[int, ...]]:
        return {"momentum_buffer": tuple(p.shape)}

    # --- what it gets ---------------------------------------------------------------
    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Add a parameter group (a dict with ``'params'`` and options), checked like the constructor's.

        Raises
        ------
        ManifoldTypeError
            If ``param_group`` is not a dict, or a manifold parameter is not on a
            :class:`manifolds.InPlaceManifold`.
        ConfigError
            If it has no ``'params'``, or torch refuses the parameters.
        OptionError
            If an option is invalid, or a manifold cannot honour the group's options.
        """
        if not isinstance(param_group, dict):
            raise ManifoldTypeError(f"a parameter group must be a dict; got {type(param_group).__name__}")
        if "params" not in param_group:
            raise ConfigError(f"a parameter group needs 'params'; got keys {sorted(map(str, param_group))}")
        self._validate_group({**self.defaults, **{k: v for k, v in param_group.items() if k != "params"}})
        with _torch_argument_errors():
            super().add_param_group(param_group)
        try:
            self._validate_manifolds(self.param_groups[-1])
        except Exception:
            self.param_groups.pop()  # a refused group leaves no trace
            raise

    def _validate_manifolds(self, group: dict[str, Any]) -> None:
        """Every manifold parameter of ``group`` is on an InPlaceManifold and passes the subclass's check."""
        for p in group["params"]:
            if not is_manifold_parameter(p):
                continue
            if not isinstance(p.manifold, InPlaceManifold):
                alternative = (
                    f" (use geoopt.optim.{self._geoopt_counterpart} for it)" if self._geoopt_counterpart else ""
                )
                raise ManifoldTypeError(
                    f"{type(self).__name__} steps manifold parameters through manifolds.InPlaceManifold's in-place "
                    f"methods; a parameter of shape {tuple(p.shape)} is on {type(p.manifold).__name__}, which is "
                    f"not one{alternative}"
                )
            self._validate_manifold_parameter(group, p)

    def __getstate__(self) -> dict[str, Any]:
        return {**super().__getstate__(), "nonfinite": self.nonfinite}

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        if not hasattr(self, "nonfinite"):
            self.nonfinite = "raise"

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Load a :meth:`state_dict`; a mismatching or damaged one raises and changes nothing.

        Raises
        ------
        CheckpointError
            If ``state_dict`` does not fit these parameters (group sizes, state
            shapes) or holds bad options or non-finite state.
        """
        if not isinstance(state_dict, dict) or not isinstance(state_dict.get("param_groups"), list):
            raise CheckpointError(
                f"expected an optimizer state_dict with 'state' and 'param_groups'; got {type(state_dict).__name__}"
            )
        previous = Optimizer.state_dict(self)
        try:
            super().load_state_dict(state_dict)
            self._check_loaded()
        except (GrassmannError, KeyError, ValueError, TypeError, RuntimeError, IndexError) as err:
            Optimizer.load_state_dict(self, previous)
            first = " ".join(str(err).split())[:200] or type(err).__name__
            raise CheckpointError(f"optimizer state_dict does not match {type(self).__name__} ({first})") from None

    def _check_loaded(self) -> None:
        """Every group's options valid; every checked state tensor finite and of its expected shape."""
        for group in self.param_groups:
            self._validate_group(group)
            self._validate_manifolds(group)
            for p in group["params"]:
                state = self.state.get(p, {})
                for key, shape in self._state_shapes(p).items():
                    value = state.get(key)
                    if value is None:
                        continue
                    if tuple(value.shape) != shape:
                        raise CheckpointError(
                            f"{key} of shape {tuple(value.shape)} for a parameter of shape {tuple(p.shape)}"
                        )
                    if not bool(torch.isfinite(value).all()):
                        raise CheckpointError(f"the {key} of a parameter of shape {tuple(p.shape)} holds NaN or Inf")

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """Perform one optimisation step; returns ``closure()``'s loss if given.

        ``closure`` is evaluated with gradients enabled; then :meth:`check_gradients`,
        the ``nonfinite`` policy, and :meth:`update` if the step goes ahead.
        """
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        self.check_gradients()
        if apply_nonfinite_policy(self.param_groups, self.nonfinite):
            self.update()
        return loss

    def check_gradients(self) -> None:
        """Refuse gradients the update cannot use (sparse ones), before anything is written.

        :meth:`step` calls this, then the ``nonfinite`` policy, then :meth:`update`;
        an optimizer that drives several (e.g. :class:`~grassmann_cls.optim.HybridOptimizer`)
        may do the same in its own order.

        Raises
        ------
        OptionError
            If a manifold parameter has a sparse gradient, or (for optimizers
            whose plain update has no sparse form, e.g. Adam) any parameter does.
        """
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None or not p.grad.is_sparse:
                    continue
                if is_manifold_parameter(p):
                    raise OptionError(
                        f"manifold parameters need dense gradients; got a sparse one for shape {tuple(p.shape)}"
                    )
                if self._dense_gradients_only:
                    raise OptionError(
                        f"{type(self).__name__} needs dense gradients; got a sparse one for shape {tuple(p.shape)}"
                    )

    @torch.no_grad()
    def update(self) -> None:
        """The update of :meth:`step` alone, for gradients already checked (no scan, no ``nonfinite`` policy)."""
        for group in self.param_groups:
            self._step_plain(group, [p for p in group["params"] if p.grad is not None and not is_manifold_parameter(p)])
            for p in group["params"]:
                if p.grad is not None and is_manifold_parameter(p):
                    self._step_manifold(group, p)


# --- helpers for subclasses -------------------------------------------------------------


def check_sgd_options(group: dict[str, Any]) -> None:
    """Check ``torch.optim.SGD``'s options of one group: lr, momentum, dampening, weight_decay, nesterov, foreach."""
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
    check_foreach(group)


def check_foreach(group: dict[str, Any]) -> None:
    """``group["foreach"]`` (if any) is ``None`` or a bool."""
    if group.get("foreach") is not None and not isinstance(group["foreach"], bool):
        raise OptionError(f"foreach must be None or a bool; got {group['foreach']!r}")


def sgd_step(optimizer: Optimizer, group: dict[str, Any], params: list[torch.Tensor]) -> None:
    """Exactly ``torch.optim.SGD.step`` for ``params`` of ``group``, state in ``optimizer.state``.

    ``group`` has ``torch.optim.SGD``'s options (see :func:`check_sgd_options`);
    ``params`` are plain tensors with gradients.
    """
    # Note [foreach Nesterov writes into p.grad]
    # torch's multi-tensor SGD adds the momentum into the gradient tensors in
    # place when nesterov=True; the single-tensor path does not. Both compute
    # the same numbers, so Nesterov always takes the single path.
    if not params:
        return
    grads = [cast(torch.Tensor, p.grad) for p in params]  # every one is set
    momentum = group["momentum"]
    buffers = [optimizer.state[p].get("momentum_buffer") for p in params] if momentum != 0 else []
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
        optimizer.state[p]["momentum_buffer"] = buf


@contextlib.contextmanager
def _torch_argument_errors() -> Iterator[None]:
    """Turn ``torch.optim.Optimizer``'s own argument errors (bad params) into the library's."""
    try:
        yield
    except GrassmannError:
        raise
    except TypeError as err:
        raise ManifoldTypeError(f"params: {' '.join(str(err).split())}") from err
    except ValueError as err:
        raise ConfigError(f"params: {' '.join(str(err).split())}") from err
