"""Tests of the train-split variant of pair similarity (repsim.analysis.train_split_similarity and
what the robustness chapter draws from it) on a small fake run with stimulus tables."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pandas as pd
import pytest
from helpers_run import write_fake_run, write_manifest_for

from repsim import analysis as A
from repsim import chapter as CH
from repsim import sentences as T
from repsim.errors import InputError
from repsim.runfolder import RunFolder
from repsim.stimuli.stimset import StimulusSet
from repsim.stimuli.subset import similarity_subset
from repsim.store import FeatureStore

N_STIM = 80  # stimuli per dataset in the fake run's feature store (ids s000..s079)
N_CLASSES = 4


def _table(extra_train: int = 0) -> pd.DataFrame:
    """Stimulus table of the fake store's ids: every 4th a test row (the similarity subset), the
    rest train; ``extra_train`` train rows more whose features the store lacks."""
    ids = [f"s{i:03d}" for i in range(N_STIM)] + [f"t{i:03d}" for i in range(extra_train)]
    n = len(ids)
    split = ["test" if i % 4 == 0 and i < N_STIM else "train" for i in range(n)]
    return pd.DataFrame(
        {
            "id": ids,
            "label": [(i // 4) % N_CLASSES for i in range(n)],
            "split": split,
            "in_similarity": [s == "test" for s in split],
        }
    )


def _stimuli_run(path, stimuli: dict | None, extra_train: int = 0, entries: list | None = None):
    """A fake run with features, stimulus tables and a config with ``stimuli`` (None: no config)."""
    write_fake_run(path, n_per_objective=2, probes=False)
    folder = RunFolder(path)
    run = CH.load_run(path)
    for ds in map(str, run.similarity.dataset.values):
        folder.stimuli(ds).parent.mkdir(parents=True, exist_ok=True)
        _table(extra_train).to_csv(folder.stimuli(ds), index=False)
    info = json.loads(folder.info.read_text())
    info["config"] = (
        None if stimuli is None else {"name": "fake", "stimuli": stimuli, "datasets": entries or []}
    )
    folder.info.write_text(json.dumps(info))
    write_manifest_for(path)  # the edited run.json is what the test's run wrote
    return CH.load_run(path)


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> CH.Run:
    return _stimuli_run(
        tmp_path_factory.mktemp("split"), {"max_images": 40, "seed": 3, "split": "test"}
    )


def _ucka(x: np.ndarray, y: np.ndarray) -> float:
    """Unbiased linear CKA from the U-statistic HSIC of Song et al. (2012), float64."""

    def hsic(k: np.ndarray, m: np.ndarray) -> float:
        n = len(k)
        k, m = k.copy(), m.copy()
        np.fill_diagonal(k, 0.0)
        np.fill_diagonal(m, 0.0)
        t = np.sum(k * m) + k.sum() * m.sum() / ((n - 1) * (n - 2))
        t -= 2.0 / (n - 2) * k.sum(0) @ m.sum(0)
        return t / (n * (n - 3))

    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    k, m = x @ x.T, y @ y.T
    return float(hsic(k, m) / np.sqrt(hsic(k, k) * hsic(m, m)))


def _stimset(table: pd.DataFrame) -> StimulusSet:
    return StimulusSet(
        dataset_id="d",
        ids=table["id"].to_numpy(str),
        labels=table["label"].to_numpy(),
        split=table["split"].to_numpy(str),
        class_names=[str(c) for c in range(N_CLASSES)],
        domain="Structured",
        images=np.zeros((len(table), 1, 1, 3), np.uint8),
    )


# ----------------------------------------------------------------------------------- which rows
def test_split_ids_are_the_pipelines_subset_of_the_train_rows(run):
    ids = A.split_ids(run, "shapes", "train")
    table = _table()
    train = set(table.loc[table.split == "train", "id"])
    assert set(ids) <= train and len(ids) == 40  # max_images 40 of the 60 train rows
    assert (table.set_index("id").loc[ids, "label"].value_counts() == 10).all()  # ceil(40 / 4)
    expected = similarity_subset(_stimset(table), max_images=40, seed=3, split="train")
    assert list(ids) == list(expected)
    other_seed = similarity_subset(_stimset(table), max_images=40, seed=4, split="train")
    assert list(ids) != list(other_seed)  # the run's seed is the one used
    # on the run's own split the rule gives the rows the run marked in_similarity
    assert list(A.split_ids(run, "shapes", "test")) == sorted(table.id[table.in_similarity])


def test_split_ids_take_a_dataset_entrys_own_rule(tmp_path):
    entry = {
        "id": "digits",
        "loader": "embedded",
        "path": "digits.npz",
        "domain": "Structured",
        "per_class": 3,
    }
    r = _stimuli_run(tmp_path / "r", {"split": "test"}, entries=[entry])
    assert len(A.split_ids(r, "digits", "train")) == 3 * N_CLASSES
    assert len(A.split_ids(r, "shapes", "train")) == 60  # no cap: every train row
    assert A.split_ids(r, "no-such-dataset") is None


# --------------------------------------------------------------------------------- the numbers
def test_train_split_similarity_matches_a_per_pair_reference(run):
    v = A.train_split_similarity(run, "cka_linear", device="cpu")
    store = FeatureStore(run.features_path)
    models = [str(m) for m in run.similarity.model_a.values]
    assert list(v.dataset.values) == list(run.similarity.dataset.values)
    # as many train images of each class as the held-out subset has (20 of the 40 train rows)
    n_held = [len(A.split_ids(run, str(ds), "test")) for ds in v.dataset.values]
    assert v.attrs["n_train"] == n_held == [20] * v.sizes["dataset"]
    every = A.train_split_similarity(run, "cka_linear", device="cpu", same_n=False)
    assert every.attrs["n_train"] == [40] * v.sizes["dataset"]
    assert not np.allclose(every["train"].values, v["train"].values, equal_nan=True)
    for ds in map(str, v.dataset.values):
        held_ids = A.split_ids(run, ds, "test")
        ids = A._train_ids_like(run, ds, held_ids)
        assert len(ids) == 20 and not set(ids) & set(held_ids)
        table = pd.read_csv(run.path / "stimuli" / f"{ds}.csv", dtype={"id": str}).set_index("id")
        assert (table.loc[ids, "split"] == "train").all()
        assert (
            table.loc[ids, "label"]
            .value_counts()
            .equals(table.loc[held_ids, "label"].value_counts())
        )
        feats = {m: store.read(ds, m, ids)[1] for m in models}
        got = v["train"].sel(dataset=ds)
        for a, b in itertools.combinations(models, 2):
            assert got.sel(model_a=a, model_b=b).item() == pytest.approx(
                _ucka(feats[a], feats[b]), abs=1e-9
            )
        held = run.similarity["cka_linear"].sel(dataset=ds)
        np.testing.assert_array_equal(v["held_out"].sel(dataset=ds).values, held.values)
    assert v["held_out"].attrs["split"] == "test" and v["train"].attrs["split"] == "train"


def test_agreement_and_consistency_against_direct_computations(run):
    from scipy.stats import pearsonr

    v = A.train_split_similarity(run, "cka_linear", device="cpu")
    pairs = A.split_pair_table(v)
    models = [str(m) for m in v.model_a.values]
    n_pairs = len(models) * (len(models) - 1) // 2
    assert list(pairs.columns[-2:]) == ["held_out", "train"] and len(pairs) == 6 * n_pairs
    agree = A.split_agreement(pairs)
    iu = np.triu_indices(len(models), k=1)
    vec = {k: v[k].transpose("dataset", "model_a", "model_b").values[:, iu[0], iu[1]] for k in v}
    for i, row in agree.iterrows():
        r, _ = pearsonr(vec["held_out"][i], vec["train"][i])
        assert row.r == pytest.approx(r, abs=1e-12) and "p" not in agree  # no p over pairs
        diff = (vec["train"][i] - vec["held_out"][i]).mean()
        assert row.mean_difference == pytest.approx(diff, abs=1e-12)
        assert row.n_pairs == n_pairs
    cons = A.split_consistency(v)
    everything = cons[cons.label == "all"]
    assert len(everything) == 15  # 6 datasets: 15 dataset pairs
    for _, row in everything.iterrows():
        a, b = (list(v.dataset.values).index(d) for d in (row.dataset_a, row.dataset_b))
        for k in ("held_out", "train"):
            assert row[k] == pytest.approx(np.corrcoef(vec[k][a], vec[k][b])[0, 1], abs=1e-12)
    summary = A.split_consistency_summary(cons)
    assert summary.index[0] == "all"
    assert summary.loc["all", "held_out"] == pytest.approx(everything.held_out.median())
    assert (summary["n"] == 15).all()
    # two datasets are enough: one dataset pair
    two = A.split_consistency(v.isel(dataset=[0, 1]))
    row = two[two.label == "all"].iloc[0]
    assert len(two[two.label == "all"]) == 1
    assert row.held_out == pytest.approx(
        np.corrcoef(vec["held_out"][0], vec["held_out"][1])[0, 1], abs=1e-12
    )
    with pytest.raises(InputError, match="two or more datasets"):
        A.split_consistency(v.isel(dataset=[0]))


def test_top_pair_gaps_of_the_two_variants_read_the_split_consistency(run):
    # the chapter tests the highest median under each variant with top_pair_gaps over
    # split_consistency_dataset: its pairs and gaps are those of split_consistency's table
    v = A.train_split_similarity(run, "cka_linear", device="cpu")
    cons = A.split_consistency_dataset(v)
    assert sorted(map(str, cons.measure.values)) == ["held_out", "train"]
    table = A.split_consistency(v)
    gaps = A.top_pair_gaps(cons, A.SPLIT_VARIANTS)
    assert set(gaps) == {"held_out", "train"}
    for variant, g in gaps.items():
        medians = table[table.label != "all"].groupby("label")[variant].median()
        first, second = medians.sort_values(ascending=False).index[:2]
        assert (g["top"], g["runner_up"]) == (first, second)
        assert g["estimate"] == pytest.approx(medians[first] - medians[second], abs=1e-12)
        assert g["n_comparisons"] == 2 and g["n_datasets"] == 6
        assert np.isnan(g["ci_low"])  # 6 datasets: too few for an interval
    with pytest.raises(InputError, match="two or more datasets"):
        A.split_consistency_dataset(v.isel(dataset=[0]))


def test_a_model_without_train_features_is_nan_on_that_dataset(tmp_path):
    r = _stimuli_run(tmp_path / "r", {"split": "test"})
    gone = str(r.similarity.model_a.values[0])
    FeatureStore(r.features_path).delete("shapes", gone)
    table = _table()  # counts: 3 train rows, fewer than the 4 unbiased CKA needs
    table = table[(table.split == "test") | table.id.isin(["s001", "s002", "s003"])]
    table.to_csv(RunFolder(r.path).stimuli("counts"), index=False)
    v = A.train_split_similarity(r, device="cpu")
    assert "counts" not in list(v.dataset.values) and v.sizes["dataset"] == 5
    shapes = v["train"].sel(dataset="shapes")
    assert np.isnan(shapes.sel(model_a=gone)).all()
    assert np.isfinite(shapes.drop_sel(model_a=gone, model_b=gone)).all()
    assert np.isfinite(v["train"].sel(dataset="digits")).all()


# ------------------------------------------------------------------------------------- skipping
def test_skip_when_the_store_lacks_train_rows_or_the_run_cannot_compare(tmp_path, run):
    assert A.train_split_skip(run) is None
    # train rows listed in the tables but not extracted (and no other train rows)
    r = _stimuli_run(tmp_path / "a", {"split": "test", "max_images": 8}, extra_train=8)
    table = _table(extra_train=8)
    table = table[(table.split == "test") | table.id.str.startswith("t")]
    for ds in map(str, r.similarity.dataset.values):
        table.to_csv(RunFolder(r.path).stimuli(ds), index=False)
    assert "holds no train-split rows" in A.train_split_skip(r)
    with pytest.raises(InputError, match="holds no train-split rows"):
        A.train_split_similarity(r)
    r = _stimuli_run(tmp_path / "b", {"split": "train"})
    assert "train split already" in A.train_split_skip(r)
    r = _stimuli_run(tmp_path / "c", None)
    assert "records no config" in A.train_split_skip(r)
    r = CH.load_run(write_fake_run(tmp_path / "d", n_per_objective=1, features=False))
    info = json.loads(RunFolder(r.path).info.read_text())
    info["config"]["stimuli"] = {"split": "test"}
    RunFolder(r.path).info.write_text(json.dumps(info))
    write_manifest_for(r.path)
    assert "kept no features" in A.train_split_skip(CH.load_run(r.path))
    with pytest.raises(InputError, match="not in the run"):
        A.train_split_similarity(run, "no_such_measure")


# ------------------------------------------------------------------------------------- sentences
def _agreement(r: list[float], diff: list[float]) -> pd.DataFrame:
    n = len(r)
    return pd.DataFrame(
        {
            "dataset": [f"d{i}" for i in range(n)],
            "domain": "Structured",
            "n_pairs": 28,
            "r": r,
            "mean_held_out": 0.5,
            "mean_train": [0.5 + d for d in diff],
            "mean_difference": diff,
        }
    )


def _summary(held: list[float], train: list[float]) -> pd.DataFrame:
    labels = ["all"] + [f"C{i} | C{i}" for i in range(len(held) - 1)]
    t = pd.DataFrame({"held_out": held, "train": train}, index=pd.Index(labels, name="label"))
    return t.assign(difference=t.train - t.held_out, n=15)


def test_split_agreement_of_a_dataset_with_one_model_pair():
    pairs = pd.DataFrame(
        {
            "dataset": ["d0", "d1", "d1"],
            "domain": ["Natural", "Structured", "Structured"],
            "held_out": [0.5, 0.2, 0.4],
            "train": [0.6, 0.3, 0.3],
        }
    )
    agree = A.split_agreement(pairs)
    assert list(agree.domain) == ["Natural", "Structured"] and list(agree.n_pairs) == [1, 2]
    assert np.isnan(agree.r.iloc[0]) and agree.mean_difference.iloc[0] == pytest.approx(0.1)


def test_sentence_agree_case():
    agree = _agreement([0.95, 0.99, 0.97, 0.98], [0.01, -0.02, 0.01, -0.01])
    text = T.train_split_text(
        agree,
        _summary([0.4, 0.8, 0.6, 0.3, 0.1], [0.42, 0.78, 0.65, 0.3, 0.12]),
        "cka",
        "objective",
    )
    assert text.startswith(
        "The train-split variant agrees closely with the held-out one (every r at least 0.9, "
        "the threshold for close agreement; described, not tested)"
    )
    assert "from **0.95** (d0) to **0.99** (d1) over the 4 datasets" in text
    assert "No p-value goes with it" in text and "p < 0.001" not in text
    assert "higher on train images on **2 of 4** datasets" in text
    assert "a shift cannot be tested, since with fewer than 6 untied datasets" in text
    assert "(exact sign test over datasets with these models held fixed, p = 1.00)" in text
    assert "**0.40** on held-out and **0.42** on train" in text
    assert (
        "order of the 4 objective pairs by median consistency is kept (Spearman rho = 1.00; "
        "kept means rho at least 0.9; described, with no p-value" in text
    )
    assert "the same on train images" in text and "carries no test" in text


def test_sentence_disagree_case():
    agree = _agreement([0.95, -0.2, 0.6, 0.97, 0.9, 0.92, 0.95, 0.99], [0.05] * 8)
    summary = _summary([0.4, 0.8, 0.6, 0.3, 0.1], [0.2, 0.1, 0.3, 0.6, 0.5])
    text = T.train_split_text(agree, summary, "cka", "objective")
    assert text.startswith("The train-split variant disagrees with the held-out one on d1")
    assert "agrees closely" not in text
    # all 8 datasets higher on train images: two-sided exact sign test p = 2 / 2**8
    assert (
        "systematically higher (exact sign test over datasets with these models held fixed, p = 0.008)"
        in text
    )
    assert "is not closely kept" in text
    assert "the highest median is C0 | C0 on held-out and C2 | C2 on train images" in text
    assert "the largest change is C0 | C0 (-0.700)" in text
    weak = T.train_split_text(_agreement([0.95, 0.6], [0.0, 0.0]), None, "cka", "objective")
    assert (
        "correlates positively with the held-out one on every dataset, but with r below 0.9 (the "
        "threshold for close agreement) on d1" in weak
    )  # it said "keeps the order of model pairs", which a positive r does not show
    assert "sign test" not in weak  # no dataset moved: nothing to test
    assert "needs two or more datasets" in weak


def _summary_with_order_rho(swaps: list[tuple[int, int]], n: int) -> pd.DataFrame:
    """Category-pair medians whose train order is the held-out order with ``swaps`` made: Spearman
    rho 1 - 6 sum(d^2) / (n (n^2 - 1)), exactly."""
    held = [float(i) for i in range(n)]
    train = list(held)
    for i, j in swaps:
        train[i], train[j] = train[j], train[i]
    return _summary([0.5, *held], [0.5, *train])


@pytest.mark.parametrize(
    ("swaps", "n", "shown", "verdict"),
    [
        # sum d^2 = 16 over 10 pairs: rho 0.90303, kept, shown as 0.903 beside the rule
        ([(0, 2), (5, 7)], 10, "0.903", "kept (Spearman rho = 0.903; kept means rho at least 0.9"),
        # sum d^2 = 30 over 12 pairs: rho 0.89510, which two decimals show as 0.90
        (
            [(0, 3), (4, 6), (7, 8), (9, 10)],
            12,
            "0.895",
            "not closely kept (Spearman rho = 0.895; kept means rho at least 0.9",
        ),
    ],
)
def test_the_order_verdict_and_the_rho_it_shows_agree_with_the_rule(swaps, n, shown, verdict):
    """A rho near the threshold is shown with the decimals that put it on the side the verdict
    says: "not kept (rho = 0.90, at least 0.9 counting as kept)" contradicted itself."""
    agree = _agreement([0.95] * 4, [0.0] * 4)
    text = T.train_split_text(agree, _summary_with_order_rho(swaps, n), "cka", "objective")
    assert verdict in text
    assert f"rho = {shown};" in text and "rho = 0.90;" not in text


def test_an_r_near_the_threshold_is_shown_on_the_side_of_its_verdict():
    below = T.train_split_text(_agreement([0.8996, 0.95], [0.0, 0.0]), None, "cka", "objective")
    assert "r below 0.9 (the threshold for close agreement) on d0" in below
    assert "from **0.8996** (d0) to **0.95** (d1)" in below
    above = T.train_split_text(_agreement([0.9004, 0.95], [0.0, 0.0]), None, "cka", "objective")
    assert "agrees closely" in above and "from **0.9004** (d0)" in above


def test_fmt_against_adds_decimals_only_near_the_threshold():
    assert T.fmt_against(0.96, 0.9) == "0.96"
    assert T.fmt_against(0.8951, 0.9) == "0.895"
    assert T.fmt_against(0.9, 0.9) == "0.90"  # on the rule: at or above it
    # as many decimals as it takes: five more than two were not always enough
    assert T.fmt_against(0.8999999, 0.9) == "0.8999999"
    assert T.fmt_against(0.9000000001, 0.9) == "0.9000000001"  # not shown on the rule itself
    assert T.fmt_against(float("nan"), 0.9) == "undefined"


def _gap(top: str, runner_up: str, estimate: float, lo: float, hi: float) -> dict:
    """One entry of top_pair_gaps: one of the two variants' Bonferroni intervals, 10 datasets."""
    return {
        "top": top,
        "runner_up": runner_up,
        "estimate": estimate,
        "ci_low": lo,
        "ci_high": hi,
        "n_datasets": 10,
        "confidence_level": 0.975,
        "n_comparisons": 2,
    }


def test_sentence_tests_the_highest_median_of_each_variant():
    agree = _agreement([0.95] * 8, [0.0] * 8)
    summary = _summary([0.4, 0.8, 0.6, 0.3, 0.1], [0.2, 0.1, 0.3, 0.6, 0.5])
    gaps = {
        "held_out": _gap("C0 | C0", "C1 | C1", 0.2, 0.05, 0.31),
        "train": _gap("C2 | C2", "C3 | C3", 0.1, -0.04, 0.2),
    }
    text = T.train_split_text(agree, summary, "cka", "objective", gaps=gaps)
    assert (
        "The highest median on held-out images is **C0 | C0**, ahead of the next, C1 | C1, by "
        "0.20 (95% simultaneous CI 0.05 to 0.31); on train images it is **C2 | C2**, not told "
        "apart from the next, C3 | C3 (gap 0.10, 95% simultaneous CI -0.04 to 0.20)." in text
    )
    assert (
        "Each interval resamples the 10 datasets with the models and both pairs fixed; with 2 "
        "image sets each interval is at 97.5% (Bonferroni), so both cover together at 95%." in text
    )
    assert "the largest change is C0 | C0 (-0.700), described." in text
    assert "the highest median is" not in text  # no ranking left without its test
    # an interval below 0 on held-out (the next pair ahead in the resamples)
    gaps["held_out"] = _gap("C0 | C0", "C1 | C1", 0.01, -0.3, -0.02)
    below = T.train_split_text(agree, summary, "cka", "objective", gaps=gaps)
    assert "**C0 | C0** by the median, but the next, C1 | C1, is ahead in the resamples" in below
    # without the test of one variant (fewer than two pairs there): described, as before
    one = T.train_split_text(agree, summary, "cka", "objective", gaps={"held_out": gaps["train"]})
    assert "the highest median is C0 | C0 on held-out and C2 | C2 on train images" in one
    assert "both described" in one and "simultaneous CI" not in one


def test_sentence_says_what_one_dataset_or_no_r_cannot_support():
    one = T.train_split_text(_agreement([0.99], [0.01]), None, "cka", "objective")
    assert "so this rests on one dataset" in one
    assert "over model pairs, is **0.99** on its one dataset" in one  # the r the verdict reads
    none = T.train_split_text(_agreement([np.nan], [0.01]), None, "cka", "objective")
    assert "not compared" in none
    few = T.train_split_text(
        _agreement([0.99, 0.98], [0.0, 0.0]),
        _summary([0.4, 0.8, 0.6], [0.4, 0.8, 0.6]),
        "cka",
        "objective",
    )
    assert "Fewer than three objective pairs" in few


def test_sentence_boundaries_of_its_verdicts():
    # a Spearman rho of exactly 0.9 (one swap of neighbours among 5 pairs) counts as kept
    held, train = [0.4, 0.9, 0.8, 0.7, 0.6, 0.5], [0.4, 0.9, 0.8, 0.6, 0.7, 0.5]
    agree = _agreement([0.95, 0.99], [0.0, 0.0])
    kept = T.train_split_text(agree, _summary(held, train), "cka", "objective")
    assert "by median consistency is kept (Spearman rho = 0.90; kept means rho at least 0.9" in kept
    # every dataset lower on train images: systematically lower, p = 2 / 2**8
    down = T.train_split_text(_agreement([0.95] * 8, [-0.05] * 8), None, "cka", "objective")
    assert "higher on train images on **0 of 8** datasets" in down
    assert "systematically lower (exact sign test" in down and "p = 0.008" in down
    # four up and four down: testable, and no shift
    even = T.train_split_text(_agreement([0.95] * 8, [0.05, -0.05] * 4), None, "cka", "objective")
    assert "no evidence of a systematic shift (exact sign test" in even and "p = 1.00" in even
    # p equal to alpha is not below it: 5 of 5 up gives p = 2 / 2**5 = 0.0625
    at = T.train_split_text(
        _agreement([0.95] * 5, [0.05] * 5), None, "cka", "objective", alpha=0.0625
    )
    assert "systematically" not in at and "a shift cannot be tested" in at
    # the default alpha is 0.05: 7 of 7 up (p = 2 / 2**7 = 0.016) is a shift, 9 up and 2 down
    # (p = 2 * 67 / 2**11 = 0.065) is not
    seven = T.train_split_text(_agreement([0.95] * 7, [0.05] * 7), None, "cka", "objective")
    assert "systematically higher (exact sign test" in seven and "p = 0.02)" in seven
    eleven = T.train_split_text(
        _agreement([0.95] * 11, [0.05] * 9 + [-0.05] * 2), None, "cka", "objective"
    )
    assert "no evidence of a systematic shift" in eleven and "p = 0.07)" in eleven
    # six untied datasets can reach p < 0.05, so 3 up and 3 down is testable, and no shift
    six = T.train_split_text(_agreement([0.95] * 6, [0.05, -0.05] * 3), None, "cka", "objective")
    assert "no evidence of a systematic shift" in six
    # an r of exactly 0.9 counts as close
    at_close = T.train_split_text(_agreement([0.9, 0.9], [0.0, 0.0]), None, "cka", "objective")
    assert at_close.startswith("The train-split variant agrees closely with the held-out one")
    below = T.train_split_text(_agreement([0.9, 0.6], [0.0, 0.0]), None, "cka", "objective")
    assert "but with r below 0.9 (the threshold for close agreement) on d1 (described" in below
    # three category pairs are enough to compare their order
    three = T.train_split_text(
        _agreement([0.95, 0.99], [0.0, 0.0]),
        _summary([0.4, 0.8, 0.6, 0.3], [0.4, 0.8, 0.6, 0.3]),
        "cka",
        "objective",
    )
    assert "The order of the 3 objective pairs by median consistency is kept" in three
    # r = 0 is no positive correlation
    zero = T.train_split_text(_agreement([0.95, 0.0], [0.0, 0.0]), None, "cka", "objective")
    assert zero.startswith("The train-split variant disagrees with the held-out one on d1 (r at")


def _first_halves(ax) -> list:
    """The collections of an axes' points, without the second halves of category pairs' markers
    (the same points again)."""
    from repsim.plots import SECOND_HALF

    return [c for c in ax.collections if c.get_gid() != SECOND_HALF]


def test_split_figures_draw_one_panel_per_dataset_with_every_pair(run):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from repsim import plots as P

    v = A.train_split_similarity(run, device="cpu")
    pairs = A.split_pair_table(v)
    agree = A.split_agreement(pairs)
    fig = P.split_scatter(pairs, agree, caption="caption", columns=4)
    shown = [ax for ax in fig.axes if ax.get_visible() and ax.collections]
    assert len(shown) == 6 and len(fig.axes) == 8  # 2 rows of 4, the last two hidden
    for ax, (_, row) in zip(shown, agree.iterrows()):
        assert ax.get_title() == f"{row.dataset}: r = {T.fmt_against(row.r, T.CLOSE_AGREEMENT)}"
        assert sum(len(c.get_offsets()) for c in _first_halves(ax)) == row.n_pairs
    plt.close(fig)
    cons = A.split_consistency(v)
    fig = P.split_consistency_scatter(cons, caption="caption")
    assert sum(len(c.get_offsets()) for c in _first_halves(fig.axes[0])) == len(cons)
    plt.close(fig)


def test_train_subset_has_the_held_out_class_counts_not_the_rounded_cap(monkeypatch):
    """The held-out subset of the embedded digits has 359 images (one class 35); the run's rule
    capped at 359 takes ceil(359 / 10) = 36 per class, 360 train images, where the chapter says
    "as many images as the held-out subset". The train draw now takes each class's held-out
    count (fewer where the train split has fewer), with the run's seed."""
    labels = np.repeat(np.arange(10), 50)
    split = np.tile(["train"] * 40 + ["test"] * 10, 10)
    table = pd.DataFrame({"id": [f"i{k:03d}" for k in range(500)], "label": labels, "split": split})
    table = table.drop(index=[45, 60, 61, 62])  # class 0: 9 test images; class 1: 37 train
    monkeypatch.setattr(A, "_stimulus_table", lambda run, ds: table)
    monkeypatch.setattr(A, "_subset_rules", lambda run, ds: (10_000, None, 3))
    held = table.loc[table.split == "test", "id"].to_numpy(str)
    assert len(held) == 99
    part = held[:59]  # classes 0-5: 9, 10, 10, 10, 10, 10 images
    want = table.set_index("id").loc[part, "label"].value_counts().sort_index()
    ids = A._train_ids_like(None, "d", part)
    got = table.set_index("id").loc[ids, "label"].value_counts().sort_index()
    assert got.to_dict() == want.to_dict() == {0: 9, 1: 10, 2: 10, 3: 10, 4: 10, 5: 10}
    assert (table.set_index("id").loc[ids, "split"] == "train").all()
    assert list(ids) == sorted(ids) and len(set(ids)) == len(ids)
    again = A._train_ids_like(None, "d", part)
    np.testing.assert_array_equal(ids, again)  # the run's seed, not a fresh draw
    few = table[~((table.label == 2) & (table.split == "train") & (table.index % 50 > 4))]
    monkeypatch.setattr(A, "_stimulus_table", lambda run, ds: few)
    short = A._train_ids_like(None, "d", part)
    assert (few.set_index("id").loc[short, "label"] == 2).sum() == 5  # every train image it has


def test_the_agreement_table_shows_each_r_on_the_side_of_close_agreement():
    """The robustness chapter's table rounded r to 3 decimals: an r of 0.8996, which the sentence
    under it puts below 0.9, showed as 0.900; a mean difference of 0.0004, counted as higher on
    train, showed as 0.000 (and -0.0004 as -0.000)."""
    agree = _agreement([0.8996, 0.9004, 0.95], [0.0004, -0.0004, 0.0])
    table = A.split_agreement_table(agree)
    assert table["r"].tolist() == ["0.8996", "0.9004", "0.950"]
    assert table["mean_difference"].tolist() == ["0.0004", "-0.0004", "0.000"]
    assert table.index.tolist() == ["d0", "d1", "d2"] and table["n_pairs"].tolist() == [28] * 3
    assert table["mean_train"].tolist() == [0.5, 0.5, 0.5]  # no verdict reads it: rounded
    text = T.train_split_text(agree, None, "cka", "objective")
    assert "r below 0.9 (the threshold for close agreement) on d0" in text


def test_the_robustness_chapter_shows_its_tables_through_the_rule():
    """The chapter's cells call the table helpers, not a round(3) of their own."""
    from pathlib import Path

    nb = json.loads((Path(__file__).parents[1] / "notebooks" / "13_robustness.ipynb").read_text())
    code = "".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code")
    assert "display(A.split_agreement_table(split_agree))" in code
    assert "split_agree.set_index" not in code and "split_summary.round" not in code


def test_train_split_differences_near_zero_keep_their_sign():
    """'higher on train images on 1 of 2 datasets (difference ... from -0.000 to 0.000)': the
    ends of the range are now shown with the digits that keep them off 0."""
    text = T.train_split_text(_agreement([0.95, 0.96], [0.0004, -0.0003]), None, "cka", "obj")
    assert "higher on train images on **1 of 2** datasets" in text
    assert "from -0.0003 to 0.0004)" in text and "0.000)" not in text


def test_the_split_scatter_titles_show_r_on_the_side_of_close_agreement():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from repsim import plots as P

    pairs = pd.DataFrame(
        {
            "dataset": ["d0"] * 3,
            "domain": "Structured",
            "model_a": ["a", "a", "b"],
            "model_b": ["b", "c", "c"],
            "category_pair": "X | X",
            "held_out": [0.1, 0.5, 0.9],
            "train": [0.2, 0.5, 0.8],
        }
    )
    agree = _agreement([0.8996], [0.0])
    fig = P.split_scatter(pairs, agree, caption="caption")
    assert fig.axes[0].get_title() == "d0: r = 0.8996"  # the sentence: "r below 0.9 on d0"
    plt.close(fig)
