"""Variant-aware catalogs: a parent (group) column, collapsed candidate sets, variants as near-duplicates."""

from __future__ import annotations

import dataclasses
import re

import gymnasium as gym
import numpy as np
import pytest

import envs  # noqa: F401  (registers the env ids)
from encoders.csv_catalog import LUMA_VARIANTS_COLUMNS, ColumnMapping, CsvCatalogConfig, load_csv_catalog
from encoders.errors import CatalogError
from encoders.retriever import FaissRetriever
from encoders.variants import CollapsingRetriever, group_codes, variant_similarity
from envs.world import ShopWorld, WorldConfig
from simulators.shopper import ShopperConfig


def test_column_mapping_from_spec():
    mapping = ColumnMapping.from_spec(LUMA_VARIANTS_COLUMNS)
    assert (mapping.id, mapping.colors, mapping.attributes, mapping.group) == ("variant_id", "color", None,
                                                                              "parent_sku")
    assert mapping.title == "name" and mapping.image == "image"  # untouched defaults
    assert ColumnMapping.from_spec("") == ColumnMapping()
    assert "parent_sku" in mapping.required()


@pytest.mark.parametrize("spec, message", [
    ("parent=parent_sku", "catalog column mapping 'parent=parent_sku': 'parent=parent_sku' must be FIELD=COLUMN "
                          "with FIELD one of ['id', 'title', 'description', 'category', 'price', 'image', "
                          "'attributes', 'colors', 'group']"),
    ("group", "catalog column mapping 'group': 'group' must be FIELD=COLUMN with FIELD one of ['id', 'title', "
              "'description', 'category', 'price', 'image', 'attributes', 'colors', 'group']"),
    ("id=", "catalog column mapping 'id=': required field 'id' needs a column"),
])
def test_column_mapping_spec_errors(spec, message):
    with pytest.raises(CatalogError) as info:
        ColumnMapping.from_spec(spec)
    assert str(info.value) == message


def test_world_config_checks_catalog_columns():
    with pytest.raises(CatalogError, match=re.escape(
            "WorldConfig.catalog_columns applies to CSV catalogs only; the built-in 'synthetic' catalog has no "
            "columns to map.")):
        WorldConfig(catalog_columns="group=parent_sku")
    with pytest.raises(CatalogError, match=re.escape("required field 'title' needs a column")):
        WorldConfig(catalog="some/folder", catalog_columns="title=")


def test_group_codes():
    np.testing.assert_array_equal(group_codes(["A", "B", "A", "", "", "C"]), [0, 1, 0, 2, 3, 4])


def test_luma_variants_load_with_groups(shared_data):
    catalog = load_csv_catalog(CsvCatalogConfig(shared_data / "luma" / "color_variants.csv",
                                                mapping=ColumnMapping.from_spec(LUMA_VARIANTS_COLUMNS)))
    assert len(catalog) == 461
    assert len(np.unique(catalog.groups)) == 191
    hoodies = [i for i, pid in enumerate(catalog.ids) if str(pid).startswith("MH01-")]
    assert len(hoodies) == 3 and len(set(catalog.groups[hoodies])) == 1
    assert catalog.attributes[hoodies[0]]["colour"] == "Black"
    # the plain products.csv has no group column: no groups
    assert load_csv_catalog(CsvCatalogConfig(shared_data / "luma")).groups is None


def test_collapsing_retriever_keeps_the_first_variant_of_each_group():
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(300, 16)).astype(np.float32)
    groups = rng.integers(0, 40, size=300)  # ~7.5 variants per group: needs several widenings of the request
    inner = FaissRetriever(vectors)
    collapsing = CollapsingRetriever(inner, groups)
    queries = rng.normal(size=(5, 16)).astype(np.float32)
    ids, scores = collapsing.search(queries, 12)
    full_ids, full_scores = inner.search(queries, 300)
    for b in range(len(queries)):
        _, first = np.unique(groups[full_ids[b]], return_index=True)
        expected = full_ids[b][np.sort(first)[:12]]
        np.testing.assert_array_equal(ids[b], expected)
        np.testing.assert_allclose(scores[b], full_scores[b][np.sort(first)[:12]])
        assert len(set(groups[ids[b]])) == 12
    # asking for more groups than exist pads with -1 / -inf at the end
    ids, scores = collapsing.search(queries[:1], 50)
    n_groups = len(np.unique(groups))
    assert (ids[0, :n_groups] >= 0).all() and (ids[0, n_groups:] == -1).all()
    assert np.isneginf(scores[0, n_groups:]).all()


def test_variant_similarity_makes_variants_duplicates():
    rng = np.random.default_rng(1)
    vectors = rng.normal(size=(6, 8)).astype(np.float32)
    groups = np.array([0, 0, 1, 2, 2, 2])
    sim = variant_similarity(vectors, groups)
    cos = sim @ sim.T
    assert cos[0, 1] == pytest.approx(1.0) and cos[3, 5] == pytest.approx(1.0)
    single = vectors[2] / np.linalg.norm(vectors[2])
    np.testing.assert_allclose(sim[2], single, rtol=1e-6)  # a group of one keeps its own direction
    np.testing.assert_array_equal(variant_similarity(vectors, None), vectors)


@pytest.fixture(scope="module")
def variants_config(shared_data, tmp_path_factory) -> WorldConfig:
    return WorldConfig(catalog=str(shared_data / "luma" / "color_variants.csv"), catalog_columns=LUMA_VARIANTS_COLUMNS,
                       text_encoder="hashing", cache_dir=str(tmp_path_factory.mktemp("cache")))


def test_env_candidates_collapse_variants(variants_config):
    queries = ["black hoodie for men", "women's running shorts", "yoga pants", "blue tee"]
    collapsed = ShopWorld(variants_config)
    every = ShopWorld(dataclasses.replace(variants_config, collapse_variants=False))
    groups = collapsed.catalog.groups
    repeats = 0
    for text in queries:
        ids, _, _ = collapsed.search(text, 20)
        assert len(set(groups[ids])) == 20, text
        all_ids, _, _ = every.search(text, 20)
        repeats += 20 - len(set(groups[all_ids]))
        assert ids[0] == all_ids[0]  # the best variant of the best group leads both
    assert repeats > 0  # without collapsing, variants of one parent share the candidate set
    # the shopper's near-duplicate test sees two variants of one parent as duplicates
    threshold = ShopperConfig().duplicate_threshold
    a, b = np.flatnonzero(groups == groups[0])[:2]
    assert float(collapsed.items.similarity[a] @ collapsed.items.similarity[b]) > threshold

    env = gym.make("ShopRankStatic-v0", config=dataclasses.replace(
        gym.registry["ShopRankStatic-v0"].kwargs["config"], world=variants_config))
    for seed in range(5):
        env.reset(seed=seed)
        candidates = np.asarray(env.unwrapped.core.candidates)
        candidates = candidates[candidates >= 0]
        assert len(set(groups[candidates])) == len(candidates)
