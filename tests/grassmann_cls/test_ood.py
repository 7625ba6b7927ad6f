"""Post-hoc OOD scores and metrics against independent float64 re-derivations."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg
import scipy.special
import sklearn.covariance
import sklearn.metrics
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch import nn

from grassmann_cls import GrassmannHead
from grassmann_cls.errors import ConfigError, ManifoldTypeError, NonFiniteError, OptionError, ShapeError
from grassmann_cls.ood import (
    METRICS,
    OOD_SCORES,
    Energy,
    MaxProjection,
    OODScore,
    SubspaceResidual,
    class_span,
    make_score,
    ood_metrics,
    vim_default_dim,
)

from ..conftest import generator

N_FEATURES, N_CLASSES, K = 12, 3, 2


def gcr_head(n=N_FEATURES, classes=N_CLASSES, k=K, seed=0) -> GrassmannHead:
    return GrassmannHead(n, classes, k, dtype=torch.float64, generator=generator(seed))


def linear_head(n=N_FEATURES, classes=N_CLASSES, bias=True, seed=0) -> nn.Linear:
    torch.manual_seed(seed)  # nn.Linear's init draws from the global RNG only
    return nn.Linear(n, classes, bias=bias, dtype=torch.float64)


def training_data(n=N_FEATURES, classes=N_CLASSES, samples=200, seed=0):
    """Features with distinct per-dimension spreads (well-separated PCA), and labels."""
    g = generator(seed)
    spread = torch.linspace(0.2, 3.0, n, dtype=torch.float64)
    features = torch.randn(samples, n, dtype=torch.float64, generator=g) * spread + 0.5
    labels = torch.arange(samples) % classes
    return features, labels


def fitted(name, head, features, labels, **options) -> OODScore:
    return make_score(name, **options).fit(head, features, labels)


# --- registry -------------------------------------------------------------------------------


def test_registry_lists_every_score():
    expected = {"msp", "max_logit", "energy", "mahalanobis", "vim", "max_projection", "subspace_residual"}
    assert expected <= set(OOD_SCORES.names())


@pytest.mark.parametrize("name", OOD_SCORES.names())
def test_registry_resolves_names_to_score_classes_of_that_name(name):
    cls = OOD_SCORES.resolve(name)
    assert issubclass(cls, OODScore) and cls.name == name
    assert OOD_SCORES.name_of(cls) == name


def test_registry_refuses_unknown_name_listing_names():
    with pytest.raises(OptionError, match="mahalanobis") as info:
        OOD_SCORES.resolve("odin")
    assert all(name in str(info.value) for name in OOD_SCORES.names())


def test_registry_refuses_registering_a_name_twice():
    with pytest.raises(OptionError, match="already registered"):
        OOD_SCORES.register(Energy, name="energy")


def test_make_score_accepts_name_class_and_instance():
    assert make_score("energy", temperature=2.0).temperature == 2.0
    assert isinstance(make_score(Energy), Energy)
    ready = Energy()
    assert make_score(ready) is ready
    with pytest.raises(ConfigError):
        make_score(ready, temperature=2.0)
    with pytest.raises(TypeError):
        make_score("energy", temprature=2.0)


# --- contract over the registry -------------------------------------------------------------


@pytest.mark.parametrize("name", OOD_SCORES.names())
def test_every_score_is_float64_per_item_and_batch_independent(name):
    head = gcr_head()
    features, labels = training_data()
    score = fitted(name, head, features, labels)
    batch = features[:7]
    logits = head(batch)
    scores = score(batch, logits)
    assert scores.shape == (7,) and scores.dtype == torch.float64 and bool(torch.isfinite(scores).all())
    per_item = torch.cat([score(batch[i : i + 1], logits[i : i + 1]) for i in range(7)])
    torch.testing.assert_close(scores, per_item, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", OOD_SCORES.names())
def test_every_score_declares_heads_and_refuses_others(name):
    score = make_score(name)
    features, labels = training_data()
    stranger = nn.Identity()
    ok, reason = score.check_head(stranger)
    if ok:
        assert issubclass(nn.Identity, score.applies_to)
    else:
        assert name in reason and "Identity" in reason
        with pytest.raises(ConfigError, match="Identity"):
            score.fit(stranger, features, labels)


@pytest.mark.parametrize("name", [n for n in OOD_SCORES.names() if OOD_SCORES.resolve(n).needs_fit])
def test_scores_that_need_fitting_refuse_to_score_before_fit(name):
    with pytest.raises(ConfigError, match="fit"):
        make_score(name)(torch.zeros(2, N_FEATURES), torch.zeros(2, N_CLASSES))


@pytest.mark.parametrize("name", ["mahalanobis", "vim"])
def test_fit_refuses_missing_training_data(name):
    with pytest.raises(ConfigError, match="features"):
        make_score(name).fit(linear_head())


@pytest.mark.parametrize(
    ("features", "logits", "error"),
    [
        (torch.zeros(3, N_FEATURES + 1), torch.zeros(3, N_CLASSES), ShapeError),
        (torch.zeros(3, N_FEATURES), torch.zeros(3, N_CLASSES + 1), ShapeError),
        (torch.zeros(3, N_FEATURES), torch.zeros(2, N_CLASSES), ShapeError),
        (torch.zeros(0, N_FEATURES), torch.zeros(0, N_CLASSES), ShapeError),
        (torch.zeros(N_FEATURES), torch.zeros(N_CLASSES), ShapeError),
        (torch.zeros(3, N_FEATURES, dtype=torch.long), torch.zeros(3, N_CLASSES), ManifoldTypeError),
        (np.zeros((3, N_FEATURES)), torch.zeros(3, N_CLASSES), ManifoldTypeError),
    ],
)
def test_scoring_refuses_bad_inputs(features, logits, error):
    score = make_score("max_projection").fit(gcr_head())
    with pytest.raises(error):
        score(features, logits)


def test_fit_refuses_bad_labels():
    features, labels = training_data()
    with pytest.raises(ShapeError, match="labels"):
        make_score("mahalanobis").fit(linear_head(), features, labels[:-1])
    with pytest.raises(ManifoldTypeError, match="labels"):
        make_score("mahalanobis").fit(linear_head(), features, labels.double())


# --- logit baselines ------------------------------------------------------------------------


def logits_case(seed=0):
    return torch.randn(9, 5, dtype=torch.float64, generator=generator(seed)) * 4


def test_msp_is_the_largest_softmax_probability():
    logits = logits_case()
    expected = scipy.special.softmax(logits.numpy(), axis=-1).max(axis=-1)
    np.testing.assert_allclose(make_score("msp")(torch.zeros(9, 2), logits).numpy(), expected, rtol=1e-13)


def test_max_logit_is_the_largest_logit():
    logits = logits_case()
    np.testing.assert_array_equal(
        make_score("max_logit")(torch.zeros(9, 2), logits).numpy(), logits.numpy().max(axis=-1)
    )


@pytest.mark.parametrize("temperature", [0.5, 1.0, 10.0])
def test_energy_is_temperature_times_logsumexp(temperature):
    logits = logits_case()
    expected = temperature * scipy.special.logsumexp(logits.numpy() / temperature, axis=-1)
    got = make_score("energy", temperature=temperature)(torch.zeros(9, 2), logits)
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-13)


@pytest.mark.parametrize("temperature", [0.0, -1.0, float("nan")])
def test_energy_refuses_non_positive_temperature(temperature):
    with pytest.raises(OptionError, match="temperature"):
        Energy(temperature=temperature)


# --- Mahalanobis ----------------------------------------------------------------------------


def numpy_mahalanobis(train, labels, test, covariance):
    classes = np.unique(labels)
    means = np.stack([train[labels == c].mean(axis=0) for c in classes])
    centred = train - means[np.searchsorted(classes, labels)]
    if covariance == "empirical":
        sigma = centred.T @ centred / len(train)
    else:
        sigma, _ = sklearn.covariance.ledoit_wolf(centred, assume_centered=True)
    inverse = np.linalg.inv(sigma)
    diff = test[:, None, :] - means[None]
    return -np.einsum("bci,ij,bcj->bc", diff, inverse, diff).min(axis=1)


@pytest.mark.parametrize("covariance", ["empirical", "ledoit_wolf"])
def test_mahalanobis_matches_the_inverse_covariance_formula(covariance):
    features, labels = training_data()
    test = training_data(seed=1)[0][:20] * 1.5
    score = fitted("mahalanobis", linear_head(), features, labels, covariance=covariance)
    expected = numpy_mahalanobis(features.numpy(), labels.numpy(), test.numpy(), covariance)
    np.testing.assert_allclose(score(test, torch.zeros(20, N_CLASSES)).numpy(), expected, rtol=1e-9)


def test_mahalanobis_uses_only_the_classes_present_and_is_zero_at_a_class_mean():
    features, labels = training_data()
    labels = torch.where(labels == 1, 2, labels)  # class 1 absent
    score = fitted("mahalanobis", linear_head(), features, labels)
    assert score.classes.tolist() == [0, 2]
    mean = features[labels == 2].mean(dim=0, keepdim=True)
    torch.testing.assert_close(
        score(mean, torch.zeros(1, N_CLASSES)), torch.zeros(1, dtype=torch.float64), atol=1e-10, rtol=0
    )


def test_mahalanobis_is_finite_with_a_singular_covariance():
    features, labels = training_data(samples=6)  # N < n
    score = fitted("mahalanobis", nn.Identity(), features, labels)
    assert bool(torch.isfinite(score(training_data(seed=2)[0][:4], torch.zeros(4, 2))).all())


def test_mahalanobis_refuses_an_unknown_covariance_estimator():
    with pytest.raises(OptionError, match="ledoit_wolf"):
        make_score("mahalanobis", covariance="graphical_lasso")


# --- ViM ------------------------------------------------------------------------------------


def numpy_vim(train, test, train_logits, test_logits, origin, dim):
    centred = train - origin
    _, _, vt = np.linalg.svd(centred, full_matrices=True)  # rows: principal directions, descending
    complement = vt[dim:].T
    alpha = train_logits.max(axis=1).sum() / np.linalg.norm(centred @ complement, axis=1).sum()
    virtual = alpha * np.linalg.norm((test - origin) @ complement, axis=1)
    return scipy.special.logsumexp(test_logits, axis=1) - virtual, virtual


@pytest.mark.parametrize("bias", [True, False])
def test_vim_on_a_linear_head_matches_a_numpy_rederivation(bias):
    head = linear_head(bias=bias)
    features, labels = training_data()
    test = training_data(seed=3)[0][:15] * 1.3
    score = fitted("vim", head, features, labels, dim=4)
    w = head.weight.detach().numpy()
    b = head.bias.detach().numpy() if bias else np.zeros(N_CLASSES)
    origin = -np.linalg.pinv(w) @ b
    test_logits = test.numpy() @ w.T + b
    expected, _ = numpy_vim(features.numpy(), test.numpy(), features.numpy() @ w.T + b, test_logits, origin, 4)
    np.testing.assert_allclose(score(test, torch.from_numpy(test_logits)).numpy(), expected, rtol=1e-9, atol=1e-9)


def test_vim_on_a_gcr_head_uses_normalised_features_about_the_origin():
    head = gcr_head()
    features, labels = training_data()
    test = training_data(seed=3)[0][:15]
    score = fitted("vim", head, features, labels, dim=5)
    unit = lambda x: x / np.linalg.norm(x, axis=1, keepdims=True)  # noqa: E731
    test_logits = head(test).detach().numpy()
    expected, _ = numpy_vim(
        unit(features.numpy()),
        unit(test.numpy()),
        head(features).detach().numpy(),
        test_logits,
        np.zeros(N_FEATURES),
        5,
    )
    np.testing.assert_allclose(score(test, torch.from_numpy(test_logits)).numpy(), expected, rtol=1e-9, atol=1e-9)


def test_vim_score_is_the_log_odds_of_the_papers_virtual_class_probability():
    head = linear_head()
    features, labels = training_data()
    test = training_data(seed=4)[0][:10]
    logits = head(test).detach()
    score = fitted("vim", head, features, labels, dim=3)
    virtual = score.alpha * score._residual_norm(test)
    augmented = torch.cat([logits, virtual[:, None]], dim=1)
    p0 = torch.softmax(augmented, dim=1)[:, -1]
    torch.testing.assert_close(score(test, logits), torch.log((1 - p0) / p0), rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize(("n", "dim"), [(4096, 1000), (2048, 1000), (2047, 512), (768, 512), (767, 383), (64, 32)])
def test_vim_default_dimension_follows_the_paper(n, dim):
    assert vim_default_dim(n) == dim


@pytest.mark.parametrize("dim", [N_FEATURES, N_FEATURES + 3])
def test_vim_refuses_a_principal_subspace_as_large_as_the_features(dim):
    features, labels = training_data()
    with pytest.raises(ShapeError, match="1 <= D < n"):
        fitted("vim", linear_head(), features, labels, dim=dim)


# --- GCR subspace scores --------------------------------------------------------------------


@pytest.mark.parametrize("subspace_dim", [1, 3, (1, 2, 4)], ids=["k1", "k3", "padded"])
def test_max_projection_is_the_cosine_of_the_smallest_principal_angle(subspace_dim):
    head = GrassmannHead(N_FEATURES, N_CLASSES, subspace_dim, dtype=torch.float64, generator=generator(5))
    features = training_data(seed=6)[0][:8]
    got = MaxProjection().fit(head)(features, head(features)).numpy()
    dims = head.subspace_dims
    bases = head.bases.detach().numpy()
    expected = [
        max(np.cos(scipy.linalg.subspace_angles(bases[c][:, : dims[c]], x[:, None])[0]) for c in range(N_CLASSES))
        for x in features.numpy()
    ]
    np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-12)


def test_max_projection_is_the_largest_projection_logit_over_the_scale():
    head = gcr_head()
    features = training_data(seed=7)[0][:8]
    logits = head(features)
    torch.testing.assert_close(MaxProjection().fit(head)(features, logits), logits.amax(dim=-1) / head.scale)


def coordinate_head(n=6) -> GrassmannHead:
    """Two classes with bases e_0 and e_1 in R^n."""
    head = GrassmannHead(n, 2, 1, dtype=torch.float64)
    with torch.no_grad():
        head.bases.copy_(torch.eye(n, dtype=torch.float64)[:, :2].T.unsqueeze(-1))
    return head


@pytest.mark.parametrize(
    ("feature", "expected"),
    [([3.0, 4.0, 0, 0, 0, 0], 0.0), ([0, 0, 0, 2.0, 0, 0], -1.0), ([1.0, 0, 1.0, 0, 0, 0], -np.sqrt(0.5))],
    ids=["inside", "orthogonal", "diagonal"],
)
def test_subspace_residual_known_values(feature, expected):
    head = coordinate_head()
    x = torch.tensor([feature], dtype=torch.float64)
    got = SubspaceResidual().fit(head)(x, head(x))
    torch.testing.assert_close(got, torch.tensor([expected], dtype=torch.float64), atol=1e-15, rtol=0)


def test_subspace_residual_matches_the_projector_onto_the_span():
    head = gcr_head(n=20, classes=3, k=2)
    features = training_data(n=20, seed=8)[0][:10]
    stacked = head.bases.detach().numpy().transpose(1, 0, 2).reshape(20, -1)
    projector = stacked @ np.linalg.pinv(stacked)
    unit = features.numpy() / np.linalg.norm(features.numpy(), axis=1, keepdims=True)
    expected = -np.linalg.norm(unit - unit @ projector, axis=1)
    np.testing.assert_allclose(SubspaceResidual().fit(head)(features, head(features)).numpy(), expected, atol=1e-12)


def test_class_span_has_the_rank_of_the_stacked_bases_without_padding():
    head = GrassmannHead(10, 3, (1, 2, 3), dtype=torch.float64, generator=generator(9))
    span = class_span(head)
    assert span.shape == (10, 6)
    torch.testing.assert_close(span.T @ span, torch.eye(6, dtype=torch.float64))


def test_subspace_residual_refuses_a_head_whose_classes_span_everything():
    head = gcr_head(n=6, classes=3, k=2)
    ok, reason = SubspaceResidual().check_head(head)
    assert not ok and "span all of R^n" in reason
    with pytest.raises(ConfigError, match="span all of R"):
        SubspaceResidual().fit(head)


@pytest.mark.parametrize("name", ["max_projection", "subspace_residual"])
def test_subspace_scores_refuse_linear_heads(name):
    with pytest.raises(ConfigError, match="GrassmannHead"):
        make_score(name).fit(linear_head())


# --- metrics --------------------------------------------------------------------------------


def sklearn_metrics(id_scores, ood_scores):
    scores = np.concatenate([id_scores, ood_scores])
    is_id = np.r_[np.ones(len(id_scores)), np.zeros(len(ood_scores))]
    return (
        sklearn.metrics.roc_auc_score(is_id, scores),
        sklearn.metrics.average_precision_score(is_id, scores),
        sklearn.metrics.average_precision_score(1 - is_id, -scores),
    )


def numpy_fpr95(id_scores, ood_scores):
    keep = -(-95 * len(id_scores) // 100)  # ceil(0.95 N_ID) in integers
    threshold = np.sort(id_scores)[::-1][keep - 1]
    return float(np.mean(ood_scores >= threshold))


@given(
    seed=st.integers(0, 2**31 - 1),
    n_id=st.integers(1, 60),
    n_ood=st.integers(1, 60),
    shift=st.floats(-3, 3),
    levels=st.sampled_from([None, 4]),
)
def test_metrics_match_scikit_learn_and_the_threshold_definition(seed, n_id, n_ood, shift, levels):
    rng = np.random.default_rng(seed)
    id_scores, ood_scores = rng.normal(shift, 1, n_id), rng.normal(0, 1, n_ood)
    if levels:  # many ties
        id_scores, ood_scores = np.round(id_scores * levels), np.round(ood_scores * levels)
    got = ood_metrics(id_scores, ood_scores)
    assert tuple(got) == METRICS
    np.testing.assert_allclose([got["auroc"], got["aupr_in"], got["aupr_out"]], sklearn_metrics(id_scores, ood_scores))
    assert got["fpr95"] == numpy_fpr95(id_scores, ood_scores)


def test_metrics_of_perfectly_separated_scores():
    assert ood_metrics(torch.tensor([5.0, 6.0, 7.0]), torch.tensor([1.0, 2.0])) == {
        "auroc": 1.0,
        "aupr_in": 1.0,
        "aupr_out": 1.0,
        "fpr95": 0.0,
    }


def test_metrics_of_reversed_scores():
    got = ood_metrics([1.0, 2.0], [5.0, 6.0, 7.0])
    assert got["auroc"] == 0.0 and got["fpr95"] == 1.0


def test_metrics_of_identical_scores():
    got = ood_metrics(np.zeros(3), np.zeros(5))
    assert got == {"auroc": 0.5, "aupr_in": 3 / 8, "aupr_out": 5 / 8, "fpr95": 1.0}


def test_fpr95_by_hand():
    # 20 ID scores 1..20: 95 % of them (19) are >= 2, so t = 2; OOD 0, 1.5, 2, 3 -> 2 of 4 at or above t.
    got = ood_metrics(np.arange(1.0, 21.0), [0.0, 1.5, 2.0, 3.0])
    assert got["fpr95"] == 0.5


@pytest.mark.parametrize(
    ("id_scores", "error", "match"),
    [
        ([], ShapeError, "non-empty 1-d"),
        ([[1.0, 2.0]], ShapeError, "non-empty 1-d"),
        (1.0, ShapeError, "non-empty 1-d"),
        ([1.0, float("nan")], NonFiniteError, "1 NaN or Inf"),
        ([1.0, float("inf")], NonFiniteError, "finite"),
        ([True, False], ManifoldTypeError, "real numbers"),
        (["a", "b"], ManifoldTypeError, "real numbers"),
    ],
)
def test_metrics_refuse_bad_scores(id_scores, error, match):
    with pytest.raises(error, match=match):
        ood_metrics(id_scores, [0.0, 1.0])
    with pytest.raises(error, match=match):
        ood_metrics([0.0, 1.0], id_scores)
