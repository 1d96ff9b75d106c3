"""Agreement re-ranking: search puts the nearest products that share the query's likely labels first."""

import numpy as np
import pytest

from lookalike import FilterError, Index
from lookalike.rerank import Agreement, LabelCodes


def test_a_candidate_of_the_querys_own_value_outranks_a_closer_other():
    agreement = Agreement(columns=("colour",), voters=3)
    scores = np.array([0.95, 0.94, 0.90, 0.80])
    colours = np.array([1, -1, 0, 0])  # red (unknown colour), blue, blue: codes of ["blue", "red"]
    order = agreement.order(scores, {"colour": colours}, {"colour": 2}, own={"colour": 0})
    assert order.tolist() == [2, 3, 0, 1]  # blue ones first, each group in cosine order, no value last
    # with no own value, the neighbours' votes and the model's prediction decide
    assert agreement.order(scores, {"colour": colours}, {"colour": 2}).tolist()[0] == 0
    predicted = {"colour": np.array([0.99, 0.01])}
    trusting = Agreement(columns=("colour",), voters=3, prediction_share=0.9)
    assert trusting.order(scores, {"colour": colours}, {"colour": 2}, predicted=predicted).tolist()[:2] == [2, 3]


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
