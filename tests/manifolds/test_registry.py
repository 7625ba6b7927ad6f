"""Registries: names, resolution of names and callables, registration, errors."""

from __future__ import annotations

import pytest
import torch

from manifolds import DISTANCES, RETRACTIONS, TRANSPORTS, Grassmann, Registry, cdist
from manifolds.errors import OptionError
from tests.conftest import generator
from tests.manifolds.strategies import point, tangent

REGISTRIES = {"retraction": RETRACTIONS, "transport": TRANSPORTS, "distance": DISTANCES}
BUILT_IN = {
    "retraction": ("qr", "polar", "cayley", "exp"),
    "transport": ("projection", "parallel", "aligned_projection"),
    "distance": ("geodesic", "chordal", "projection_2", "fubini_study", "binet_cauchy", "procrustes", "asimov"),
}


@pytest.mark.parametrize("kind", REGISTRIES)
def test_registry_holds_the_built_in_entries_under_their_function_names(kind):
    registry = REGISTRIES[kind]
    assert set(BUILT_IN[kind]) <= set(registry.names())
    assert all(registry.resolve(name).__name__ == name for name in registry.names())


@pytest.mark.parametrize("kind", REGISTRIES)
def test_unknown_name_raises_option_error_listing_the_names(kind):
    registry = REGISTRIES[kind]
    with pytest.raises(OptionError) as error:
        registry.resolve("no_such_entry")
    message = str(error.value)
    assert "'no_such_entry'" in message and kind in message
    assert all(name in message for name in registry.names())
    assert isinstance(error.value, ValueError)


UNKNOWN_NAME_CALLS = {
    "Grassmann retraction": (RETRACTIONS, lambda: Grassmann(retraction="householder")),
    "Grassmann transport": (TRANSPORTS, lambda: Grassmann(transport="schild")),
    "cdist distance": (DISTANCES, lambda: cdist(torch.zeros(1, 3, 1), torch.zeros(1, 3, 1), "euclid")),
}


@pytest.mark.parametrize("call", UNKNOWN_NAME_CALLS)
def test_public_entry_points_reject_unknown_names_listing_the_registry(call):
    registry, make_call = UNKNOWN_NAME_CALLS[call]
    with pytest.raises(OptionError) as error:
        make_call()
    assert all(name in str(error.value) for name in registry.names())


def _shout(word: str) -> str:
    return word.upper()


def test_register_and_resolve_a_user_function():
    registry = Registry("greeting")
    assert registry.register(_shout) is _shout
    registry.register(name="loud")(_shout)
    assert registry.names() == ("_shout", "loud")
    assert registry.resolve("loud")("hi") == "HI"
    assert "loud" in registry and len(registry) == 2 and list(registry) == ["_shout", "loud"]
    assert registry.name_of(_shout) == "_shout"


def test_resolve_passes_a_callable_through_and_names_it_by_qualname():
    registry = Registry("greeting")
    assert registry.resolve(_shout) is _shout
    assert registry.name_of(_shout) == "_shout"


@pytest.mark.parametrize(
    "register, message",
    [
        (lambda registry: registry.register(_shout), "already registered"),
        (lambda registry: registry.register("not callable"), "must be callable"),
    ],
    ids=["duplicate name", "not callable"],
)
def test_bad_registration_raises_option_error(register, message):
    registry = Registry("greeting")
    registry.register(_shout)
    with pytest.raises(OptionError, match=message):
        register(registry)


def normalised_sum(x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """A user retraction: polar factor of ``x + u`` through a full SVD."""
    left, _, right = torch.linalg.svd(x + u, full_matrices=False)
    return left @ right


def test_grassmann_accepts_a_user_retraction_callable():
    gen = generator(0)
    manifold = Grassmann(retraction=normalised_sum)
    x = point((2,), 6, 2, torch.float64, gen)
    u = tangent(x, gen)
    torch.testing.assert_close(manifold.retr(x, u), RETRACTIONS.resolve("polar")(x, u))
    assert manifold.retraction_name == "normalised_sum"
    assert "retraction=normalised_sum" in repr(manifold)


def test_grassmann_accepts_a_user_transport_callable():
    def double_projection(x, u, y, v):
        return 2 * TRANSPORTS.resolve("projection")(x, u, y, v)

    gen = generator(0)
    manifold = Grassmann(transport=double_projection)
    x = point((), 6, 2, torch.float64, gen)
    u, v = tangent(x, gen), tangent(x, gen)
    y, w = manifold.retr_transp(x, u, v)
    torch.testing.assert_close(w, 2 * (v - y @ (y.mT @ v)))
    assert "double_projection" in manifold.transport_name


def test_map_of_names_the_map_an_entry_computes():
    reg = Registry("greeting")
    reg.register(lambda s: "hi " + s, name="hello")
    reg.register(lambda s: "hi " + s.strip(), name="hello_stripped", same_map_as="hello")
    assert (reg.map_of("hello"), reg.map_of("hello_stripped")) == ("hello", "hello")
    with pytest.raises(OptionError, match="same_map_as must name a registered greeting; got 'nope'"):
        reg.register(lambda s: s, name="other", same_map_as="nope")
    assert "other" not in reg.names()
