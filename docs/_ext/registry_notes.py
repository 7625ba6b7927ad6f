"""Hand-written notes on registry entries: formula, cost and reference.

Keyed by ``(registry kind, entry name)``; fields ``formula``, ``cost`` (short,
for the table), ``notes`` (optional) and ``reference``. The ``registry`` directive
(``registry_doc.py``) lists every registered entry whether or not it has a
note here, measures its order of agreement itself, and shows the docstring; a
note adds the formula, the cost and the reference. Text is reStructuredText.

Costs count floating-point operations for one ``n x k`` basis (``n >> k``),
to leading order; ``k x k`` factorisations add ``O(k^3)``.
"""

from __future__ import annotations

EDELMAN = (
    "A. Edelman, T. A. Arias, S. T. Smith, *The geometry of algorithms with "
    "orthogonality constraints*, SIAM J. Matrix Anal. Appl. 20(2), 1998"
)
ABSIL = (
    "P.-A. Absil, R. Mahony, R. Sepulchre, *Optimization Algorithms on Matrix "
    "Manifolds*, Princeton University Press, 2008"
)
HANDBOOK = (
    "T. Bendokat, R. Zimmermann, P.-A. Absil, *A Grassmann manifold handbook: "
    "basic geometry and computational aspects*, Adv. Comput. Math. 50, 2024"
)
YE_LIM = (
    "K. Ye, L.-H. Lim, *Schubert varieties and distances between subspaces of "
    "different dimensions*, SIAM J. Matrix Anal. Appl. 37(3), 2016"
)

NOTES: dict[tuple[str, str], dict[str, str]] = {
    # --- retractions: signature (x, u) -> y -------------------------------
    ("retraction", "qr"): {
        "formula": r":math:`\operatorname{qf}(x + u)`, :math:`\operatorname{diag} R \ge 0`",
        "cost": r":math:`4nk^2`",
        "notes": r"Householder QR of :math:`x+u`: :math:`2nk^2` to factor and :math:`2nk^2` "
        r"to form :math:`Q`, in :math:`k` sequential steps. The in-place step "
        r"(``Grassmann.retr_``) computes the same factor by Cholesky-QR, :math:`3nk^2` in "
        r"matrix-matrix products, with Householder QR for ill-conditioned items; the retired "
        r"name ``cholesky_qr`` resolves to this entry.",
        "reference": ABSIL + ", Chapter 4; T. Fukaya, Y. Nakatsukasa, Y. Yanagisawa, Y. Yamamoto, "
        "*CholeskyQR2: a simple and communication-avoiding algorithm for computing a tall-skinny "
        "QR factorization*, ScalA 2014",
    },
    ("retraction", "polar"): {
        "formula": r":math:`(x+u)(I + u^Tu)^{-1/2}`",
        "cost": r":math:`4nk^2`",
        "notes": r"Gram matrix and one product, plus a :math:`k \times k` ``eigh``.",
        "reference": "P.-A. Absil, J. Malick, *Projection-like retractions on matrix manifolds*, "
        "SIAM J. Optim. 22(1), 2012; the default retraction of Manopt's ``grassmannfactory``",
    },
    ("retraction", "cayley"): {
        "formula": r":math:`\bigl(x(I-\tfrac14 u^Tu) + u\bigr)(I+\tfrac14 u^Tu)^{-1}`",
        "cost": r":math:`6nk^2`",
        "notes": r"A :math:`k \times k` Cholesky factorization; the usual Cayley transform "
        r"needs an :math:`n \times n` solve, this low-rank form does not.",
        "reference": "Z. Wen, W. Yin, *A feasible method for optimization with orthogonality "
        "constraints*, Math. Program. 142, 2013 (low-rank form for horizontal :math:`u`)",
    },
    ("retraction", "exp"): {
        "formula": r":math:`xV\cos\Sigma V^T + U\sin\Sigma V^T`, :math:`u = U\Sigma V^T`",
        "cost": r":math:`9nk^2`",
        "notes": r":math:`2nk^2` for the Gram matrix, :math:`4nk^2` for the combination and "
        r":math:`3nk^2` for the Cholesky-QR clean-up, plus a :math:`k \times k` ``eigh``.",
        "reference": EDELMAN,
    },
    # --- transports: signature (x, u, y, v) -> w ------------------------
    ("transport", "projection"): {
        "formula": r":math:`w = (I - yy^T)v`",
        "cost": r":math:`4nk^2`",
        "reference": ABSIL + ", Chapter 8",
    },
    ("transport", "aligned_projection"): {
        "formula": r":math:`w = (I - yy^T)v\,O`, :math:`O` the polar factor of :math:`x^Ty`",
        "cost": r":math:`8nk^2`",
        "notes": r"Plus a :math:`k \times k` SVD. The result does not depend on the basis "
        r"chosen to represent ``y``.",
        "reference": HANDBOOK + "; the representative-dependence of plain projection is "
        "discussed in Manopt's ``grassmannfactory.m``",
    },
    ("transport", "parallel"): {
        "formula": r":math:`v - xV\operatorname{sinc}(\Sigma)V^Tu^Tv "
        r"- \tfrac12 uV\operatorname{sinc}^2(\Sigma/2)V^Tu^Tv`",
        "cost": r":math:`\approx 20nk^2`",
        "notes": r"Plus a :math:`k \times k` ``eigh`` and SVD, and a logarithm when ``u`` "
        r"is not given.",
        "reference": EDELMAN + ", eq. (2.68); " + HANDBOOK,
    },
    # --- distances: signature (x, y) -> d ---------------------------------
    ("distance", "geodesic"): {
        "formula": r":math:`\|\theta\|_2`",
        "cost": r":math:`\approx 6nk^2`",
        "notes": r"Every distance costs the same: the principal angles, that is "
        r":math:`x^Ty` and :math:`(I - xx^T)y` (:math:`4nk^2`) and their singular values "
        r"(about :math:`2nk^2` more for the :math:`n \times k` one), then :math:`O(k)`.",
        "reference": EDELMAN + " (distances between subspaces)",
    },
    ("distance", "chordal"): {
        "formula": r":math:`\|\sin\theta\|_2 = \|xx^T - yy^T\|_F/\sqrt2`",
        "cost": r":math:`\approx 6nk^2`",
        "reference": "J. H. Conway, R. H. Hardin, N. J. A. Sloane, *Packing lines, planes, "
        "etc.: packings in Grassmannian spaces*, Exp. Math. 5(2), 1996",
    },
    ("distance", "projection_2"): {
        "formula": r":math:`\max_i\sin\theta_i = \|xx^T - yy^T\|_2`",
        "cost": r":math:`\approx 6nk^2`",
        "reference": EDELMAN + " (distances between subspaces)",
    },
    ("distance", "fubini_study"): {
        "formula": r":math:`\arccos\prod_i\cos\theta_i` (evaluated with ``atan2``)",
        "cost": r":math:`\approx 6nk^2`",
        "reference": YE_LIM,
    },
    ("distance", "binet_cauchy"): {
        "formula": r":math:`\sqrt{1 - \prod_i\cos^2\theta_i}`",
        "cost": r":math:`\approx 6nk^2`",
        "reference": "J. Hamm, D. D. Lee, *Grassmann discriminant analysis: a unifying view "
        "on subspace-based learning*, ICML 2008; " + YE_LIM,
    },
    ("distance", "procrustes"): {
        "formula": r":math:`2\|\sin(\theta/2)\|_2 = \min_{Q \in O(k)}\|xQ - y\|_F`",
        "cost": r":math:`\approx 6nk^2`",
        "reference": "Y. Chikuse, *Statistics on Special Manifolds*, Springer, 2003; " + EDELMAN,
    },
    ("distance", "asimov"): {
        "formula": r":math:`\max_i\theta_i`",
        "cost": r":math:`\approx 6nk^2`",
        "reference": "D. Asimov, *The grand tour: a tool for viewing multidimensional data*, "
        "SIAM J. Sci. Stat. Comput. 6(1), 1985; " + YE_LIM,
    },
}
