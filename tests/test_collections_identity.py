"""Modules written before format 2 keep their bytes and their identity.

A module's identity is what nodes, stores and upgrades refer to it by; format 2 must not change
the identity of any module that uses nothing of it. The constants below are the identities that
the release before format 2 (the tree at the commit that introduced it, run unchanged) computes
for the examples; today's code must compute the same, in format version 1.
(docs/bytecode.md pins the hand-built counter's bytes as well: tests/test_spec_vectors.py.)
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from hotswap.cam.loaded import load_module
from hotswap.cam.module import Module, decode_module, encode_module, module_identity
from hotswap.examples import bank, breaker, counter, handbuilt, quota

#: Identities computed by the release before format 2 (tree of commit 8d68c99).
DSL_IDENTITIES = {
    "counter.counter_sm": "a52ce04f176856f8a718fdf7f90357488c11e59396c8ee2b1de80e3b301768b9",
    "counter.counter_sm2": "aff3846d8807421d9c9500457dd39272ea0496eef5e0b1def08de0c442ff23d8",
    "counter.upgrade_state": "092d136e10170e0482be3d3fb8a5d86feba05f94defbeae2e91d292e03c3dcf1",
    "counter.downgrade_state": "3eaff56553d93a79bd797f13c91ba5e8d5b2b454f4e768b041a63868cd1d6fe8",
    "bank.bank_sm": "bb91f0c7a9a8ba501709411bf454739765cdb6707f9d65059a9b83fb8e67c708",
    "quota.quota_sm": "e7882708b0101fa32a0f6bdc8f5fa9e966850606df4caa32f687c429dcb98329",
    "quota.quota_sm2": "767bce926decac550494dc767f93a6461b10dd54fc6b78f2c65105ae317a7551",
    "quota.upgrade_quota": "70f3d27c376e337ffa9df19aa18aef66f768a45e8fec1e98645b7c0c7f275b37",
    "breaker.breaker_sm": "948d2d36da1b375952d9a48c6b983be275e1bd25ea42ef2e30b73142fc320373",
    "breaker.breaker_sm2": "586fb20dd5d0bae62bd9af14f5636b698617c8450d06588ab9a0fb9b40a47295",
    "breaker.upgrade_breaker": "2004d18460195aa931235e8314dd5e2c460e77085b6c2f511b28bd440733d2d8",
}

HANDBUILT_IDENTITIES: dict[str, tuple[Callable[[], Module], str]] = {
    "counter_module": (
        handbuilt.counter_module,
        "3600e658e51661ef9060c90f2daa1af1d1e4594ab3dc389dabb007faecb9384a",
    ),
    "counter2_module": (
        handbuilt.counter2_module,
        "f0137f9fdaf375538498404d872f40c0be43d85a27d56909ff8f676135956d34",
    ),
    "upgrade_state_module": (
        handbuilt.upgrade_state_module,
        "092d136e10170e0482be3d3fb8a5d86feba05f94defbeae2e91d292e03c3dcf1",
    ),
    "bank_module": (
        handbuilt.bank_module,
        "2422e33c78dcc60b6e1f28983dc32e5359b3e867a6ce8d28134fca8ae0d45397",
    ),
    "counter_commuted_module": (
        handbuilt.counter_commuted_module,
        "c3beb3a67f3d388d36d5d4eb65d09f3f49d6eeee8adce6834e49246990d76bff",
    ),
}

_EXAMPLES = {"counter": counter, "bank": bank, "quota": quota, "breaker": breaker}


@pytest.mark.parametrize("name", sorted(DSL_IDENTITIES))
def test_dsl_examples_keep_their_identity_in_format_1(name: str) -> None:
    """Compiled today, each example is the module it was: version 1, the same identity, and
    its bytes decode and re-encode to themselves."""
    module_name, attribute = name.split(".")
    compiled = getattr(_EXAMPLES[module_name], attribute)
    data = compiled.module
    assert data[4] == 1, f"{name} is written in format {data[4]}"
    assert compiled.identity == DSL_IDENTITIES[name]
    assert encode_module(decode_module(data)) == data
    assert load_module(data).identity == DSL_IDENTITIES[name]


@pytest.mark.parametrize("name", sorted(HANDBUILT_IDENTITIES))
def test_handbuilt_modules_keep_their_identity_in_format_1(name: str) -> None:
    build, identity = HANDBUILT_IDENTITIES[name]
    data = encode_module(build())
    assert data[4] == 1
    assert module_identity(data) == identity
    assert encode_module(decode_module(data)) == data


def test_the_migration_of_the_counter_is_the_same_module_either_way() -> None:
    """The DSL's upgrade_state and the hand-built one were one module (the DSL's adds names,
    outside the identity); they still are."""
    hand = HANDBUILT_IDENTITIES["upgrade_state_module"][1]
    assert DSL_IDENTITIES["counter.upgrade_state"] == hand
    assert counter.upgrade_state.identity == module_identity(
        encode_module(handbuilt.upgrade_state_module())
    )
