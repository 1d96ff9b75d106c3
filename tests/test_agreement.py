"""Agreement re-ranking: search puts the nearest products that share the query's likely labels first."""

from pathlib import Path

import numpy as np
import pytest

from lookalike import FilterError, Index
from lookalike.rerank import Agreement, LabelCodes


def test_a_candidate_of_the_querys_own_value_outranks_a_closer_other():
    agreement = Agreement(columns=("colour",), voters=3)
    scores = np.array([0.95, 0.94, 0.90, 0.80])
    colours = np.array([1, -1, 0, 0])  # red (unknown colour), blue, blue: codes of ["blue", "red"]
    order = agreement.order(scores, {"colour": colours}, {"colour": 2}, own={"colour": 0})
    # blue ones first in cosine order; the unknown colour next (2 of the 3 known are blue), the red one last
    assert order.tolist() == [2, 3, 1, 0]
    # with no own value, the neighbours' votes and the model's prediction decide
    assert agreement.order(scores, {"colour": colours}, {"colour": 2}).tolist()[0] == 0
    predicted = {"colour": np.array([0.99, 0.01])}
    trusting = Agreement(columns=("colour",), voters=3, prediction_share=0.9)
    assert trusting.order(scores, {"colour": colours}, {"colour": 2}, predicted=predicted).tolist()[:2] == [2, 3]


def test_a_preference_never_beats_a_much_closer_match():
    agreement = Agreement(columns=("colour",), voters=3)
    scores = np.array([0.9999, 0.29, 0.27, 0.24])     # an exact copy with no labels, then three blue products
    colours = np.array([-1, 0, 0, 0])
    order = agreement.order(scores, {"colour": colours}, {"colour": 1}, predicted={"colour": np.array([1.0])})
    assert order.tolist() == [0, 1, 2, 3]
    # within max_gap the preference still applies
    close = np.array([0.80, 0.75, 0.70])
    assert agreement.order(close, {"colour": np.array([1, 0, 0])}, {"colour": 2}, own={"colour": 0}).tolist() == [1, 2, 0]


def test_an_unlabelled_product_finds_its_own_photo_first(tmp_path):
    import shutil

    photos = sorted((Path(__file__).parents[1] / "examples" / "catalog").glob("*/*.jpg"))[::10]
    folder = tmp_path / "photos"
    folder.mkdir()
    for p in photos:
        shutil.copy(p, folder / p.name)
    rows = ["id,class"] + [f"{p.stem},{p.parent.name}" for p in photos[1:]]   # the first has no metadata row
    (tmp_path / "meta.csv").write_text("\n".join(rows) + "\n")
    index = Index.build(folder, tmp_path / "meta.csv", out=tmp_path / "x.idx")
    for agree in (True, ["class"]):
        results = index.search(folder / photos[0].name, k=4, agree=agree)
        assert results[0].id == photos[0].stem and results[0].score >= 0.99, [(r.id, r.score) for r in results]


def test_head_probabilities_map_onto_the_catalogs_values():
    codes = LabelCodes(["Red", None, "Blue", "Red", ""])
    assert codes.values == ["Blue", "Red"] and codes.rows.tolist() == [1, -1, 0, 1, -1]
    p = codes.from_head(["Green", "Red", "Blue"], np.array([0.5, 0.3, 0.2]))
    assert p.tolist() == pytest.approx([0.4, 0.6])      # Green is not in this catalog: renormalised away
    assert codes.from_head(["Green"], np.array([1.0])) is None


def _share(index, pid, results, column):
    own = index.get(pid).metadata[column]
    return np.mean([r.metadata[column] == own for r in results])


def test_search_by_id_brings_the_products_class_first(demo_index):
    plain = agreeing = 0.0
    for pid in demo_index.ids[::5]:
        before = demo_index.search(pid, k=10, agree=False)
        after = demo_index.search(pid, k=10, agree=["class"])
        pool = {r.id: r.score for r in demo_index.search(pid, k=Agreement().pool, agree=False)}
        assert all(pool[r.id] == pytest.approx(r.score) for r in after)   # from the nearest, scores are cosines
        plain += _share(demo_index, pid, before, "class")
        agreeing += _share(demo_index, pid, after, "class")
    assert agreeing > 2 * plain   # the classic embedder on real photos: 0.13 of the ten share the class, then 0.54


def test_without_the_default_columns_nothing_changes(demo_index):
    pid = demo_index.ids[3]
    assert [r.id for r in demo_index.search(pid, k=10)] == [r.id for r in demo_index.search(pid, k=10, agree=False)]
    with pytest.raises(FilterError, match="cannot re-rank by 'colour'.*columns: class"):
        demo_index.search(pid, agree=["colour"])


@pytest.fixture(scope="module")
def fpi_index(fpi_sample, tmp_path_factory):
    return Index.build(fpi_sample / "images", fpi_sample / "styles.csv", out=tmp_path_factory.mktemp("fpi") / "f.idx")


def test_photo_queries_agree_more_on_type_colour_and_gender(fpi_index):
    from lookalike.train.data import is_validation

    queries = [pid for pid in fpi_index.ids if is_validation(pid, 0.1)]     # products the model never trained on
    assert len(queries) >= 100
    shares = {agree: {c: [] for c in ("articleType", "baseColour", "gender")} for agree in (False, True)}
    for pid in queries:
        photo = fpi_index.get(pid).path
        for agree in (False, True):
            results = fpi_index.search(photo, k=10, exclude=[pid], agree=agree)
            for column, values in shares[agree].items():
                values.append(_share(fpi_index, pid, results, column))
    gains = {c: np.mean(shares[True][c]) - np.mean(shares[False][c]) for c in shares[True]}
    assert all(g > -0.01 for g in gains.values()), gains     # no column loses more than one result in a hundred
    assert sum(gains.values()) > 0.05, gains
