"""k-means clusters: members closest to the centre first, named from candidates once each."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score

from autodistill_metaclip import EmbeddingIndex, MetaCLIP, synthetic
from autodistill_metaclip.index.clusters import cluster


@pytest.fixture(scope="module")
def index(demo_model: MetaCLIP, tmp_path_factory: pytest.TempPathFactory) -> EmbeddingIndex:
    root = tmp_path_factory.mktemp("clusters")
    synthetic.write_folder(root, 120, seed=3)
    return EmbeddingIndex.build(demo_model, root, progress=False)


def test_members_come_closest_first_and_names_go_to_the_nearest_centres() -> None:
    axes = np.eye(8, dtype=np.float32)
    offsets = [0, 0.1, -0.1, 0.3, -0.3]  # symmetric: each blob's centre is its axis itself
    vectors = np.stack([axes[b] + o * axes[b + 3] for b in range(3) for o in offsets])
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    names = ["second axis", "first axis", "third axis"]
    found = cluster(vectors, lambda row: f"row {row}", 3, names=names, name_vectors=axes[[1, 0, 2]])
    assert sorted(c.name for c in found.clusters) == sorted(names)
    for c in found.clusters:
        blob = ["first axis", "second axis", "third axis"].index(c.name)
        rows = [int(m.split()[1]) - 5 * blob for m in c.members]
        assert rows[0] == 0 and set(rows[1:3]) == {1, 2} and set(rows[3:]) == {3, 4}
        assert set(found.labels[5 * blob : 5 * blob + 5].tolist()) == {c.id}


def test_clusters_recover_classes_and_shapes(demo_model: MetaCLIP, index: EmbeddingIndex) -> None:
    labels = [key.split("_", 1)[1].rsplit(".", 1)[0] for key in index.keys]
    by_class = index.clusters(
        12, names=[n.replace("_", " ") for n in sorted(set(labels))], model=demo_model
    )
    by_shape = index.clusters(3)
    ari_class = adjusted_rand_score(labels, by_class.labels)
    ari_shape = adjusted_rand_score([label.split("_")[1] for label in labels], by_shape.labels)
    print(f"adjusted Rand index: 12 classes {ari_class:.3f}, 3 shapes {ari_shape:.3f}")
    assert ari_class > 0.9 and ari_shape > 0.9
    for found in by_class.clusters:  # named after what most of its members are
        members = [p.stem.split("_", 1)[1].replace("_", " ") for p in found.members]
        assert found.name == max(set(members), key=members.count)
        assert found.representatives == found.members[:6]


def test_cluster_names_are_given_once_then_numbered(demo_model: MetaCLIP, tmp_path: Path) -> None:
    synthetic.write_folder(tmp_path / "photos", 48, seed=9)
    index = EmbeddingIndex.build(demo_model, tmp_path / "photos", progress=False)
    found = index.clusters(6, names=["a red thing", "a blue thing"], model=demo_model)
    names = [c.name for c in found.clusters]
    assert len(set(names)) == len(names) == 6  # no two clusters share a name
    assert sorted(n for n in names if "(" not in n) == ["a blue thing", "a red thing"]
