"""The book's computed sentences: every sentence of a chapter that states a result is written by
a function here, from the tables the analyses return, so it is tested and its numbers are the
tables' numbers. Each function takes computed tables (never a run folder to recompute from) and
returns Markdown.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from repsim.errors import InputError, check_positive
from repsim.names import MIN_PAIRS, PAIR_SEP, is_known, is_same_pair
from repsim.stats import (
    FACTOR_FIELDS,
    FACTORS,
    correlate,
    design_table,
    format_estimate,
    format_interval,
    format_on_side,
    no_interval_reason,
)

if TYPE_CHECKING:
    from repsim.chapter import Chapter, Run


#: Words by which a sentence ranks or compares categories, datasets or measures.
COMPARING = re.compile(
    r"\b(best|worst|steadiest|least steady|most consistent|least consistent|more consistent|"
    r"less consistent|more similar|less similar|differs? most|highest|lowest|strongest|weakest|"
    r"ranks? (?:first|last|higher|lower|above|below)|ranked|ranking|outperforms?|"
    r"agrees? with the study|agrees? closely|more than|less than|systematically|"
    r"(?:above|below) \d+(?:\.\d+)?% of|"
    r"(?:higher|lower|better|worse|larger|smaller|greater|stronger|weaker)\b[^.;:]{0,40}\bthan)\b",
    re.IGNORECASE,
)
#: What backs such a sentence: a test result beside it, or words that say it is only described.
BACKED = re.compile(
    r"(\bp\s*[=<]|\bp undefined\b|\bCI\b|sign test|permut|bootstrap|not tested|not ranked|"
    r"not compared|described|no p-value|carries no test|cannot be (?:ranked|compared)|no test|"
    r"simulat)",
    re.IGNORECASE,
)


def untested_claims(markdown: str) -> list[str]:
    """The sentences of ``markdown`` that rank or compare (:data:`COMPARING`) without a test
    result or a "described, not tested" beside them in the same sentence (:data:`BACKED`).

    The book's rule, checked on every executed chapter by the test suite: a sentence that ranks
    states its test, or says that it only describes.
    """
    sentences = [
        s for line in markdown.splitlines() for s in _SENTENCE_END.split(line.strip()) if s
    ]
    return [s for s in sentences if COMPARING.search(s) and not BACKED.search(s)]


#: Words by which hand-written prose reports the study's findings (or another paper's), which
#: the book quotes with their source rather than tests.
ATTRIBUTED = re.compile(r"\bthe study\b|\bstudy's\b|\bCiernik\b|\bHuh\b|\barXiv", re.IGNORECASE)


def untested_prose_claims(markdown: str) -> list[str]:
    """:func:`untested_claims` for hand-written Markdown (chapters' text, the course, the intro).

    Prose wraps its sentences over lines and puts findings in lists, so it is read by block
    (paragraph or list): a block that attributes what it says to the study or another paper
    (:data:`ATTRIBUTED`), or follows a block that does (a list after "... found that"), quotes
    rather than claims; a question (an exercise) claims nothing; code blocks are skipped.
    """
    text = re.sub(r"```.*?```", "", markdown, flags=re.DOTALL)
    blocks = [" ".join(line.strip() for line in b.splitlines()) for b in re.split(r"\n\s*\n", text)]
    found: list[str] = []
    for before, block in zip(["", *blocks], blocks):
        if ATTRIBUTED.search(block) or ATTRIBUTED.search(before):
            continue
        found += [s for s in untested_claims(block) if not s.rstrip().endswith("?")]
    return found


#: A sentence ends at . ! or ? and a space (so not inside 0.46), except after an abbreviation;
#: the next one may start with a lower-case measure name (``cka_rbf_0.2 against ...``).
_SENTENCE_END = re.compile(
    r"(?<!\be\.g\.)(?<!\bi\.e\.)(?<!\bvs\.)(?<!\bFig\.)(?<!\bcf\.)(?<!\bal\.)(?<=[.!?])\s+"
)


def fmt(x: float, digits: int = 2) -> str:
    """A number for a sentence; 'undefined' for NaN."""
    return "undefined" if x is None or not np.isfinite(x) else f"{x:.{digits}f}"


def fmt_against(x: float, threshold: float, digits: int = 2, notation: str = "f") -> str:
    """A number a verdict reads against ``threshold``: to ``digits`` decimals, or more while the
    rounded value would sit on the threshold or across it, so what is shown never contradicts the
    verdict (rho 0.897 "not kept" by a 0.9 rule is shown as 0.897, not 0.90); the value on the
    threshold itself is shown on it, and so is one that float rounding put a few ulps above it
    (0.55 - 0.5 against 0.05), since the verdicts that read a threshold count it as reached ("at
    least", "or more"). ``notation`` ``"e"``: scientific (a p of 0.000207 against 0.000208 as
    ``2.07e-04``, not ``2.1e-04``). :func:`repsim.stats.format_on_side`."""
    if x is None or not np.isfinite(x):
        return fmt(x)
    strictly = lambda v: np.sign(v - threshold)  # noqa: E731
    reached = lambda v: v >= threshold  # noqa: E731
    return format_on_side(x, (strictly, reached), digits, notation)


def join_names(items: Sequence[str], last: str = "and") -> str:
    """'a', 'a and b', 'a, b and c'."""
    items = [str(x) for x in items]
    if len(items) <= 1:
        return "".join(items)
    return f"{', '.join(items[:-1])} {last} {items[-1]}"


#: Why a probe option may differ from the study's protocol (the embedded config's reasons).
PROBE_DEVIATIONS = {
    "batch_size": "the embedded sets have 1-2k train images, and batches of 1024 would give about "
    "two optimiser steps per epoch, which underfits",
    "lrs": "with so few steps the study's learning rates (0.1 down to 0.0001) underfit, so larger "
    "ones are searched",
    "shared_search": "one hyperparameter search shared by the seeds keeps the default run "
    "within minutes on a CPU",
    "epochs": "fewer epochs keep a small run fast",
    "seeds": "fewer seeds keep a small run fast",
    "wds": "a shorter weight-decay grid keeps a small run fast",
}


def probe_protocol_text(run: Run) -> str:
    """The run's probe protocol and each way it departs from the study's, with the reason."""
    import json

    from repsim.probe import probe_defaults

    if run.probes is None:
        return "This run has no probes."
    try:
        opts = json.loads(run.probes.attrs.get("probe", "{}"))
    except ValueError:
        opts = {}
    defaults = probe_defaults()
    study = {"batch_size": 1024, "shared_search": False, "epochs": 20, "seeds": (0, 1, 2)}
    study["lrs"], study["wds"] = tuple(defaults["lrs"]), tuple(defaults["wds"])
    changed = []
    for key, value in study.items():
        got = opts.get(key)
        if got is None:
            continue
        same = tuple(got) == tuple(value) if isinstance(value, tuple) else got == value
        if not same:
            shown = got if not isinstance(got, list) or len(got) <= 6 else f"{len(got)} values"
            reason = PROBE_DEVIATIONS.get(key, "set in the run's config")
            changed.append(f"`{key}` {shown} (the study: {_short(value)}), because {reason}")
    text = (
        "Probe protocol: the study's (a linear layer on L2-normalised features, AdamW, cosine "
        "schedule, learning-rate and weight-decay search on a validation split, accuracy on the "
        "held-out test split)"
    )
    if not changed:
        return text + ", unchanged."
    return text + ", with these changes: " + "; ".join(changed) + "."


def _short(value: Any) -> str:
    if isinstance(value, tuple) and len(value) > 6:
        return f"{len(value)} values from {value[0]:g} to {value[-1]:g}"
    if isinstance(value, tuple):
        return ", ".join(f"{v:g}" if isinstance(v, float) else str(v) for v in value)
    return str(value)


def controlled_answer(
    tests: pd.DataFrame | None, reason: str = "", measure: str | None = None
) -> str:
    """The answer of the controlled tests in words (separate objectives, then pooled), or why
    there is none; every sentence comes from :func:`repsim.stats.answer`."""
    from repsim import stats

    if tests is None:
        return (
            "Whether objective explains the consistency of pairwise similarity more than "
            f"architecture is not tested here: {reason}."
        )
    from repsim.analysis import tested_measure

    shown = tested_measure(tests, measure)
    note = ""
    computed = tests.attrs.get("computed", [])
    if shown in computed:
        tested = join_names([str(m) for m in dict.fromkeys(tests["measure"]) if m not in computed])
        note = (
            f"The run's controlled_tests.csv tests {tested}; the tests of {shown} below are "
            "computed here as the run computes its own (the same resampling and seeds). "
        )
    elif measure is not None and shown != measure:
        tested = ", ".join(str(m) for m in dict.fromkeys(tests["measure"]))
        note = (
            f"The controlled tests were computed for {tested}, not for {measure}; this section "
            f"shows them for {shown}. "
        )
    pooled = stats.answer(tests, shown, "pooled")
    return (
        f"{note}{stats.answer(tests, shown, 'separate')} "
        f"Secondary view: {pooled[0].lower()}{pooled[1:]}"
    )


def study_overlap_text(run: Run) -> str:
    """Whether the run's models are the study's (Ciernik et al. 2025): its numbers are comparable
    with the study's only where they rest on the study's own models."""
    from repsim.reference import study_models

    study = study_models()
    models = [str(m) for m in run.similarity.model_a.values]
    shared = [m for m in models if m in study]
    selection = getattr(run, "selection", "")
    whose = shown(selection, "this run")
    # a part that keeps some models says how many in its own words ("3 of 45 models")
    many = "" if "models" in selection else f"{len(models)} "
    if not shared:
        return (
            f"None of the {many}models of {whose} is one of the study's {len(study)}, so its "
            "numbers are not comparable with the study's: they answer the same questions on "
            "other models and other images."
        )
    if len(shared) == len(models):
        return f"All {many}models of {whose} are among the study's {len(study)}."
    verb = "is" if len(shared) == 1 else "are"
    return (
        f"{len(shared)} of the {many}models of {whose} {verb} among the study's {len(study)}; "
        "numbers over all of these models are not comparable with the study's."
    )


def study_measures_text(comparison: pd.DataFrame, measure: str) -> str:
    """Which measure each kind of the study's numbers is computed with here
    (:func:`repsim.reference.compare`: a row's own, the one the study published it for), and that
    the chapter's ``measure`` parameter changes none of them: the behaviour rows were linear
    CKA's whatever the parameter said, and the chapter did not say so."""
    from repsim.reference import COUNTS

    rows = comparison[~comparison["quantity"].isin(COUNTS)]
    what = {
        "consistency": "the consistency of dataset pairs",
        "behavior_r": "the similarity-behaviour correlations",
    }
    parts = [
        f"{what.get(q, q)} with {join_names(list(dict.fromkeys(g['measure'].astype(str))))}"
        for q, g in rows.groupby("quantity", sort=False)
    ]
    if not parts:
        return ""
    return (
        f"Each of the study's numbers is computed here with the measure it was published for "
        f"(the tables' measure column): {'; '.join(parts)}. The chapter's measure parameter "
        f"({measure}) changes none of them: a value from another measure would not be the "
        "quantity the study reported."
    )


def study_grouping_text(category: str) -> str:
    """That the study's rows keep the study's published model groups
    (:data:`repsim.reference.STUDY_GROUPING`) whatever the chapter's ``category``: its numbers
    per model group exist for those groups only. "" when ``category`` is that grouping. The
    chapter took the parameter and said nothing of it."""
    from repsim.reference import STUDY_GROUPING

    if category == STUDY_GROUPING:
        return ""
    return (
        f"The model groups of these rows (their models column) are the study's published "
        f"grouping, by {STUDY_GROUPING}; the chapter's category ({category}) does not change "
        f"them, since the study published no numbers per {category}."
    )


def stimuli_split_text(run: Run) -> str:
    """Which split the run's similarity stimuli come from (config ``stimuli.split``)."""
    cfg = run.info.get("config") if isinstance(run.info.get("config"), dict) else {}
    split = (cfg.get("stimuli") or {}).get("split") or "train"
    if not run.info:
        return "The run records no config, so the split of its similarity stimuli is unknown."
    if split == "test":
        return (
            "Similarity is measured on the held-out **test** split of each dataset: images no "
            "model of a zoo trained on these sets has seen."
        )
    return (
        "Similarity is measured on the **train** split of each dataset, as in the study; for "
        "models trained on these sets (the mini-zoo) those are images they were trained on."
    )


def overview_text(
    summary: pd.DataFrame,
    measure: str,
    category: str,
    tests: pd.DataFrame | None = None,
    reason: str = "",
    gap: Mapping | None = None,
) -> str:
    """The chapter-0 answer in words: consistency medians, whether the first of the
    within-category ones is told apart from the next (``gap``: the measure's entry of
    :func:`repsim.analysis.top_pair_gaps` with ``same_only``; without it the medians are only
    described), and the answer of the controlled tests (:func:`controlled_answer`) when the run
    has them.

    ``summary`` is :func:`repsim.consistency.consistency_summary`. The spread of the medians per
    grouping is not worded: it favours the grouping with more category pairs and ranks nothing.
    """
    base = summary.loc[summary.group_by == "all", "median"]
    if not len(base):
        return f"With {measure}, no consistency over dataset pairs could be computed here."
    parts = [f"With {measure}, the all-pairs median consistency is **{fmt(float(base.iloc[0]))}**."]
    same = summary[(summary.group_by == category) & summary.label.map(is_same_pair)]
    if len(same) >= 2:
        from repsim.stats import CONTROLS

        listed = ", ".join(
            f"{name}{' (untrained control)' if name in CONTROLS else ''} {fmt(r['median'])}"
            for name, r in zip(
                same.label.str.split(PAIR_SEP, regex=False).str[0], same.to_dict("records")
            )
        )
        if gap is None:
            parts.append(
                f"Median consistency of model pairs that share the {category}: {listed} "
                "(medians over dataset pairs, described here, not tested against each other)."
            )
        else:
            parts.append(
                f"Median consistency of model pairs that share the {category}: {listed} "
                f"(medians over dataset pairs). The first is {top_gap_clause(gap)}."
                + _gap_intervals_note({measure: gap})
            )
    elif len(same) == 1:
        row = same.iloc[0]
        parts.append(
            f"Only **{row.label.split(PAIR_SEP)[0]}** has at least {MIN_PAIRS} model pairs "
            f"within one {category} (median {fmt(row['median'])}), so categories cannot be "
            "ranked against each other."
        )
    else:
        parts.append(
            f"No {category} has enough models for {MIN_PAIRS} model pairs within it, so "
            "the within-category comparison of the study cannot be made here."
        )
    if tests is not None or reason:
        parts.append(controlled_answer(tests, reason, measure))
    return " ".join(parts)


def tested_factor(category: str) -> str | None:
    """The factor of the controlled-experiment chapter's tests (:data:`repsim.stats.FACTORS`)
    that a chapter's ``category`` field is, or None: a sentence that points to the test of its
    grouping must name the factor of that grouping, not objective's whatever it is."""
    return next((f for f, field in FACTOR_FIELDS.items() if field == category), None)


def pearson_spearman_text(pairs: pd.DataFrame, category: str) -> str:
    """How closely Spearman consistency follows Pearson consistency (category pairs of
    ``category``), worded descriptively: the values share datasets and models, so no p-value is
    attached and no ranking is claimed; where the grouping's factor is tested is said of
    ``category`` (:func:`tested_factor`)."""
    ok = pairs[["x", "y"]].dropna()
    if len(ok) < 3:
        return "Too few consistency values to compare Pearson with Spearman here."
    factor = tested_factor(category)
    where = (
        f" (whether the {factor} factor explains consistency is tested in the "
        "controlled-experiment chapter, where the run has one)."
        if factor
        else f"; the controlled-experiment chapter tests the {join_names(FACTORS)} factors, "
        f"not {category}."
    )
    return (
        f"Across the {len(ok)} consistency values (dataset pairs x category pairs), Spearman "
        f"follows Pearson with r = **{fmt(correlate(ok.x, ok.y))}**. The values share datasets "
        "and models, so this r describes agreement and carries no p-value; the medians above "
        "are descriptive, and which category pair ranks first is not tested here" + where
    )


def within_between_text(
    table: pd.DataFrame, category: str, test: Mapping | None = None, alpha: float = 0.05
) -> str:
    """How often same-category pairs are more similar than different-category pairs, and whether
    that beats random groupings of the same models (``test``:
    :func:`repsim.analysis.within_between_test`; without it the counts are only described).

    The datasets are not the unit here: the same models meet on every dataset, so a count of
    datasets (a sign test) finds almost any fixed grouping of them, labels that mean nothing
    included (``tests/test_analysis.py`` has one); the test relabels the models instead.
    """
    from repsim.stats import format_p, permutation_verdict

    ok = table.dropna()
    if not len(ok):
        # said of the models shown: on a chapter's part of the run the run itself may have both
        if table["same category"].isna().all() and table["different category"].notna().any():
            return (
                f"No two of the models shown have the same {category}, so there are no model "
                f"pairs of the same {category} to set against those of different {category}; "
                "this comparison is skipped."
            )
        if table["different category"].isna().all() and table["same category"].notna().any():
            return (
                f"Every model shown has the same {category}, so there are no model pairs of "
                f"different {category} to set against those of the same {category}; this "
                "comparison is skipped."
            )
        return (
            f"The models shown have no model pairs of the same {category} and of different "
            f"{category} to compare, so this comparison is skipped."
        )
    diff = ok["same category"] - ok["different category"]
    if len(ok) > 1:
        more = int((diff > 0).sum())
        head = (
            f"On **{more} of {len(ok)}** datasets, models of the same {category} are more "
            f"similar to each other (median) than models of different {category} (median "
            f"difference {format_estimate(float(diff.median()))})"
        )
        # the test's statistic, said after the head (on one dataset it is the head's difference)
        mean = (
            f"; averaged over the datasets the difference is {format_estimate(test['statistic'])}"
            if test is not None
            else ""
        )
        that, fixed = f"{mean}, ", "the datasets fixed"
    else:
        # one dataset: no count of datasets and no average over them ("On 1 of 1 dataset ...
        # averaged over the datasets")
        d = float(diff.iloc[0])
        which = (
            "the one dataset"
            if len(table) == 1
            else "the one dataset with defined pairs of both kinds"
        )
        head = (
            f"On {ok.index[0]}, {which}, models of the same {category} are "
            f"{'more' if d > 0 else 'less' if d < 0 else 'no more'} similar to each other "
            f"(median) than models of different {category} (difference of the medians "
            f"{format_estimate(d)})"
        )
        mean, that, fixed = "", "; that difference is ", "the dataset fixed"
    if test is None:
        return f"{head}: described for these models, not tested."
    verdict = permutation_verdict(test, alpha)
    how = f"{category} labels permuted {test['permuted']}{_draws(test, 'relabellings')}, {fixed}"
    if verdict == "undefined":
        return (
            f"{head}; whether that beats random groupings of the same models cannot be tested: "
            f"no relabelling leaves pairs of one {category} and of two ({how})."
        )
    p_text = format_p(float(test["p_value"]), alpha)
    if verdict == "untestable":
        return (
            f"{head}{mean}, and whether that beats random groupings of the same models cannot "
            f"be tested at alpha = {alpha:g}: their relabellings give p >= "
            f"{float(test['p_min']):.2g} at best ({how})."
        )
    if verdict == "not settled":
        return (
            f"{head}{mean}, and whether that beats random groupings of the same models is not "
            f"settled: {p_text} is within Monte Carlo error of alpha = {alpha:g} ({how})."
        )
    if verdict == "below":
        side = "more" if float(test["statistic"]) > 0 else "less"
        return (
            f"{head}{that}{side} than random groupings of the same models give ({how}, "
            f"two-sided {p_text})."
        )
    return (
        f"{head}{mean}: no evidence that this differs from random groupings of the same "
        f"models ({how}, two-sided {p_text})."
    )


def scatter_text(table: pd.DataFrame, category: str) -> str:
    """Which same-category group keeps its pair ordering best over the chosen dataset pairs."""
    r_all = table["all"].mean()
    text = f"Over these dataset pairs, the mean consistency of all model pairs is **{fmt(r_all)}**."
    groups = table.drop(columns="all").mean().dropna()
    if len(groups) >= 2:
        listed = ", ".join(f"{g} {fmt(v)}" for g, v in groups.sort_index().items())
        factor = tested_factor(category)
        return (
            f"{text} Mean consistency within one {category}: {listed}. These are described, "
            f"not ranked: {len(table)} chosen dataset pair{'s' if len(table) != 1 else ''} "
            f"cannot order the categories of {category}"
            + (
                f" (the {factor} factor is tested in the controlled-experiment chapter, where "
                "the run has one)."
                if factor
                else "."
            )
        )
    if len(groups) == 1:
        return (
            f"{text} Only **{groups.index[0]}** has {MIN_PAIRS} or more model pairs within one "
            f"{category} (r {fmt(groups.iloc[0])})."
        )
    return f"{text} No {category} has {MIN_PAIRS} model pairs within it, so no group r is shown."


def _draws(test: Mapping[str, Any], what: str) -> str:
    """How many permutations a p-value rests on ("in all 720 orderings", "in 9,999 random
    relabellings"): a reader of "p < 0.001" cannot tell a floor from a finding without it."""
    n = int(test.get("n_permutations") or 0)
    if not n:  # no labelling gave a statistic: nothing to count
        return ""
    return f" in all {n:,} {what}" if test.get("exact") else f" in {n:,} random {what}"


#: The short name of a chapter's part of a run (its models/datasets parameters,
#: :attr:`repsim.chapter.Run.selection`) where :func:`shown`'s long one, which says what the part
#: is, does not fit: a table's column and status, a row's basis, a summary's subject. What a part
#: lacks, the run may well have, so a part is never called the run.
PART = "this part"


def shown(selection: str, whole: str = "the run") -> str:
    """How a sentence names what its chapter shows: ``whole`` for the whole run, and for a part
    (the chapter's models/datasets parameters, :attr:`repsim.chapter.Run.selection`) "this
    chapter's part of the run (...)": what a part lacks, the run may well have."""
    return f"this chapter's part of the run ({selection})" if selection else whole


def model_map_text(embedding: pd.DataFrame, datasets: Sequence[str]) -> str:
    """What the distance between two models of a model map is
    (:func:`repsim.analysis.model_embedding` of the chapter's ``datasets``): 1 - their mean
    similarity across the datasets with a defined one, or 1 - their similarity on the one
    dataset. The chapter's text above the map described a mean across datasets also on one."""
    measure, used = embedding.attrs["measure"], list(embedding.attrs["datasets"])
    left = [str(d) for d in datasets if str(d) not in set(used)]
    head = "The distance between two models in this map is 1 - their"
    if len(used) == 1:
        where = (
            f"the only one of the {len(datasets)} datasets with a defined {measure}"
            if left
            else "the chapter's one dataset"
        )
        return f"{head} {measure} on {used[0]}, {where}: there is no mean across datasets."
    if not left:
        return f"{head} mean {measure} across the {len(used)} datasets."
    verb = "has" if len(left) == 1 else "have"
    return (
        f"{head} mean {measure} across {len(used)} of the {len(datasets)} datasets "
        f"({join_names(left)} {verb} no defined {measure})."
    )


def panels_text(
    shown: Sequence[str],
    of: Sequence[str],
    what: str = "datasets",
    undefined: Sequence[str] = (),
    why: str = "no defined similarity",
) -> str:
    """Which datasets a figure's panels show when they are not all of them (a figure of three
    panels from a run of six said so only in its caption's list); "" when they are all.
    ``undefined``: those of ``of`` that cannot be drawn, for ``why`` (the words after "has"):
    chapters 10 and 11 drew a dataset every model failed on as an empty panel titled "Spearman
    nan", unsaid."""
    undefined = [d for d in of if d in set(undefined)]
    if len(shown) >= len(of):
        return ""
    if not shown:
        return f"No panel is drawn: {_has(undefined, why)}."
    text = f"The panels show {len(shown)} of the {len(of)} {what} ({join_names(list(shown))})"
    if len(shown) + len(undefined) < len(of):  # some drawable ones left out by the panel count
        text += ", taken in turn from each domain"
    if undefined:
        text += f"; {_has(undefined, why)} and {'is' if len(undefined) == 1 else 'are'} not drawn"
    return text + "."


def _has(items: Sequence[str], what: str) -> str:
    """'a has WHAT', 'a and b have WHAT'."""
    return f"{join_names(list(items))} {'has' if len(items) == 1 else 'have'} {what}"


def domain_contrast_text(table: pd.DataFrame, selection: str = "") -> str:
    """Whether dataset pairs of one domain are more consistent than pairs across domains.

    ``selection``: the chapter's part of the run (:attr:`repsim.chapter.Run.selection`), so that
    what a part lacks is not said of the run."""
    medians = ["same domain", "different domains"]
    if "all" not in table.index or table.loc["all", medians].isna().any():
        whose = shown(selection)
        same, diff = table.loc["all", medians].isna() if "all" in table.index else (True, True)
        if same and not diff:
            lack = f"No two datasets of {whose} share a domain"
        elif diff and not same:
            lack = f"Every dataset of {whose} is of one domain"
        else:
            lack = f"{whose[0].upper()}{whose[1:]} lacks dataset pairs of the same domain or of different domains"
        return f"{lack}, so within- and across-domain consistency cannot be compared."
    from repsim.stats import format_p, permutation_verdict

    row = table.loc["all"]
    same, diff, p = row["same domain"], row["different domains"], row["p"]
    n_same = int(row["same-domain pairs"])
    main, n_main = str(row.get("main domain", "")), int(row.get("main domain pairs", 0) or 0)
    # the domain most within-domain pairs come from, named only where it holds most of them (a
    # tie named one domain of two as if it were the main one)
    within = (
        ""
        if not main or n_main * 2 <= n_same
        else f" ({n_main} of them within {main})"
        if n_main < n_same
        else f" (all within {main})"
    )
    medians = (
        f"median {fmt(same)} over {n_same} dataset pairs within a domain{within}, "
        f"{fmt(diff)} across domains"
    )
    others = [str(g) for g in table.index if g != "all"]
    rest = (
        " The test over all model pairs is the chapter's one test; "
        + (
            "the other row of the table is shown, not worded, and its p-value is not corrected "
            "for being a second test."
            if len(others) == 1
            else f"the {len(others)} other rows of the table are shown, not worded, and their "
            "p-values are not corrected for being several."
        )
        if others
        else ""
    )
    if main and n_main > n_same / 2 and n_same > 1:
        main_note = (
            f" Most within-domain pairs are {main} pairs: this speaks mainly for that domain."
        )
        rest = main_note + rest
    if not np.isfinite(p):
        return (
            f"Over all model pairs, within-domain and across-domain consistency are not compared "
            f"({medians}): no relabelling of the datasets' domains changes which pairs share one, "
            "so there is nothing to test."
        )
    test = (
        f"domain labels permuted over the {int(row['datasets'])} datasets with these models held "
        f"fixed, {format_p(p)}"
    )
    verdict = permutation_verdict(
        {
            "p_value": p,
            "p_min": float(row.get("smallest p", np.nan)),
            "n_permutations": float(row.get("permutations", np.nan)),
            "exact": bool(row.get("exact", False)),
        }
    )
    if verdict == "not settled":
        return (
            f"Over all model pairs, whether datasets of the same domain are more or less "
            f"consistent with each other than datasets of different domains is not settled by "
            f"{int(row['permutations'])} random relabellings ({medians}; {test}, within Monte "
            "Carlo error of 0.05)." + rest
        )
    if verdict == "untestable":
        floor = float(row["smallest p"])
        return (
            f"Over all model pairs, whether datasets of the same domain are more or less "
            f"consistent with each other than datasets of different domains cannot be tested on "
            f"this run ({medians}; {test}): no relabelling of these {int(row['datasets'])} "
            f"datasets' domains gives p below {floor:.2g}, so the test cannot reach p < 0.05."
            + rest
        )
    if verdict == "below":
        word = "more" if same > diff else "less"
        return (
            f"Over all model pairs, datasets of the same domain are {word} consistent with each "
            f"other than datasets of different domains ({medians}; {test})." + rest
        )
    return (
        f"Over all model pairs, no evidence that datasets of the same domain are more or less "
        f"consistent with each other than datasets of different domains ({medians}; {test})." + rest
    )


def behaviour_text(corr: pd.DataFrame, test: Mapping | None = None, alpha: float = 0.05) -> str:
    """The similarity-behaviour link in words, per dataset and per domain (domains are listed,
    never ranked: no test compares them, and a domain with one dataset is one dataset).

    ``test`` (:func:`repsim.behavior.behavior_link_test`) words whether the mean r beats random
    pairings of the same models; without it the link is only described. The count of datasets
    is not tested: the same models meet on every dataset, so the datasets' signs are not
    independent draws.
    """
    from repsim.stats import format_p, permutation_verdict

    ok = corr.dropna(subset=["pearson_r"])
    if not len(ok):
        return (
            "No dataset has a defined correlation between similarity and accuracy gap (too "
            "few models, or equal accuracies), so there is nothing to summarise."
        )
    neg = int((ok.pearson_r < 0).sum())
    head = (
        f"Similarity and accuracy gap are negatively correlated (similar representations, "
        f"similar accuracy) on **{neg} of {len(ok)}** dataset{'s' if len(ok) != 1 else ''} "
        f"(mean r = {format_estimate(ok.pearson_r.mean())}"
    )
    verdict = "untested" if test is None else permutation_verdict(test, alpha)
    if verdict in ("untested", "undefined"):
        text = f"{head}; described for these models, not tested)."
    else:
        how = (
            f"the {int(test['n_models'])} models' accuracies permuted jointly over the datasets"
            f"{_draws(test, 'orderings')}"
        )
        p_text = format_p(float(test["p_value"]), alpha)
        if verdict == "untestable":
            text = (
                f"{head}; whether that beats random pairings of the same models cannot be tested "
                f"at alpha = {alpha:g}: their orderings give p >= {float(test['p_min']):.2g} at "
                f"best, {how})."
            )
        elif verdict == "not settled":
            text = (
                f"{head}; whether that beats random pairings of the same models is not settled: "
                f"{p_text} is within Monte Carlo error of alpha = {alpha:g}, {how})."
            )
        elif verdict == "below":
            side = "more negative" if float(test["statistic"]) < 0 else "more positive"
            text = (
                f"{head}), {side} than random pairings of the same models give ({how}, "
                f"two-sided {p_text})."
            )
        else:
            text = (
                f"{head}): no evidence that the link differs from random pairings of the same "
                f"models ({how}, two-sided {p_text})."
            )
    by = ok.groupby("domain").pearson_r.agg(["mean", "size"])
    if len(by) >= 2:
        listed = "; ".join(
            f"{dom} {fmt(row['mean'])} ({int(row['size'])} dataset{'s' if row['size'] > 1 else ''})"
            for dom, row in by.iterrows()
        )
        single = [str(d) for d, row in by.iterrows() if row["size"] < 2]
        why = "no test compares domains here"
        if single:
            why += (
                f", and {join_names(single)} rest{'s' if len(single) == 1 else ''} on one dataset"
            )
        text += f" Mean r per domain: {listed}. Domains are not ranked: {why}."
    return text


def rank_sum_text(tests: pd.DataFrame, alpha: float) -> str:
    """The anchor rank-sum tests in words (untestable comparisons said as such)."""
    from repsim.consistency import reachable_rank_sums

    testable = tests.dropna(subset=["p"])
    if not len(testable):
        return (
            "No two categories have at least 2 anchor models each, so no rank-sum test can be "
            "run here."
        )
    from repsim.stats import format_p

    thr = float(testable["p_threshold"].iloc[0])
    reachable = reachable_rank_sums(tests)
    if not len(reachable):
        return (
            f"No category comparison can be tested at the Bonferroni threshold p < {thr:.3g} "
            f"(alpha = {alpha} over {len(testable)} tests): with these few anchors per category "
            f"the smallest p an exact rank-sum test can give is {testable['p_min'].min():.3g}."
        )
    unreachable = testable.drop(reachable.index)
    testable = reachable
    sig = testable[testable.significant]
    text = (
        f"{len(sig)} of {len(testable)} testable category comparisons are significant after "
        f"Bonferroni correction (alpha = {alpha}; each anchor is one observation, its median "
        "over these datasets' pairs, and the datasets are not resampled, so the comparisons hold "
        "for these datasets)"
    )
    if len(sig):
        text += ": " + "; ".join(
            f"{r.group_a} vs {r.group_b} (Bonferroni {format_p(r.p_bonferroni, alpha)}, medians "
            f"{fmt(r.median_a)} and {fmt(r.median_b)})"
            for r in sig.itertuples()
        )
    if len(unreachable):  # counted as "not significant" they read as tested and negative
        text += (
            f" ({len(unreachable)} more cannot be tested: with so few anchors the smallest p an "
            f"exact rank-sum test can give, {unreachable['p_min'].min():.3g}, is not below "
            f"{thr:.3g}: {join_names([f'{r.group_a} vs {r.group_b}' for r in unreachable.itertuples()])})"
        )
    few = len(tests) - len(testable) - len(unreachable)
    if few:
        text += f" ({few} comparisons have a category with fewer than 2 anchors)"
    return text + "."


def _pair_test_simulation(n_pairs: int) -> tuple[float, str]:
    """How often the study's rank-sum test over dataset pairs gives p < 0.01 with no difference,
    simulated (:func:`repsim.simulations.pair_test_false_positive_rate`) for the number of
    datasets that ``n_pairs`` dataset pairs come from: the rate, and the clause that says it."""
    from repsim.simulations import pair_test_false_positive_rate

    n_datasets = 2
    while n_datasets * (n_datasets - 1) // 2 < n_pairs:
        n_datasets += 1
    rate = pair_test_false_positive_rate(n_datasets, alpha=0.01)
    return rate, (
        f"in a simulation with {n_datasets} datasets, no difference between the partner "
        f"categories and each dataset shifting its pairs as much as they vary otherwise, "
        f"{rate:.0%} of such tests gave p < 0.01, where a valid test gives 1%; repsim.simulations"
    )


def partner_tests_text(tests: pd.DataFrame, alpha: float) -> str:
    """The study's anchor rank-sum tests in words: how many survive Bonferroni, and which."""
    testable = tests.dropna(subset=["p"])
    if not len(tests):  # each anchor's partners that are kept fall in one category
        return (
            "No anchor has partners in two categories with enough partner models each (a part "
            "of a run with few models per category leaves one), so no rank-sum test compares "
            "partner categories here."
        )
    if not len(testable):
        return (
            "No anchor has two partner categories with enough dataset pairs to compare, so no "
            "rank-sum test can be run here."
        )
    thr = float(testable["p_threshold"].iloc[0])
    sig = testable[testable.significant.astype(bool)]
    rate, simulated = _pair_test_simulation(int(testable["n"].max()))
    # with very few datasets (a part of 3) the simulated rate is at or below 1%: the test is then
    # not too liberal, it can hardly reject at all, and "far too small" would contradict its clause
    flaw = (
        f"its p-values are far too small ({simulated})"
        if rate > 0.01
        else f"here, with so few dataset pairs, it can hardly give a small p at all ({simulated}), "
        "and with more datasets its p-values are far too small"
    )
    text = (
        f"In the study's test, {len(sig)} of {len(testable)} comparisons of partner categories "
        f"have p below the Bonferroni threshold (alpha = {alpha}, so p < {thr:.3g} for each "
        "test). That test takes the dataset pairs as independent observations, but they share "
        f"datasets, and a dataset shifts all of its pairs together: {flaw}, so these counts "
        "repeat the study's computation and are not evidence of a difference"
    )
    if len(sig):
        # one short clause per anchor (48 tests listed one by one with medians and p ran to a
        # page of prose); the direction is the rank-sum statistic's sign, the numbers are in the
        # table the sentence sits under
        per_anchor = {}
        for r in sig.itertuples():
            hi, lo = (r.partner_a, r.partner_b) if r.statistic >= 0 else (r.partner_b, r.partner_a)
            per_anchor.setdefault(r.anchor, []).append(f"{hi} > {lo}")
        text += (
            " (in each, the partner category with the higher consistency first, as the study "
            "reads them, not as findings of this run; medians and p in the table): "
            + "; ".join(f"anchor {a}: {', '.join(c)}" for a, c in per_anchor.items())
        )
    return text + "."


# ------------------------------------------------------------------------- sentences of chapters
def run_text(ch: Chapter) -> str:
    """What the chapters are drawn from: the run, its size, its measures and the chosen ones."""
    run = ch.run
    part = f" (this chapter's part of the run: {run.selection})" if run.selection else ""
    n_m, n_d = len(ch.models), len(ch.datasets)
    return (
        f"Run **{run.name}** (run folder `{run.path.name}`): {n_m} model{'s' * (n_m != 1)}, "
        f"{n_d} dataset{'s' * (n_d != 1)}{part}, measures {', '.join(run.measures)}; main measure "
        f"**{ch.measure}**, models grouped by **{ch.category}**."
    )


def framework_text(
    n_pairs: int, dataset_a: str, dataset_b: str, r: float, values: pd.Series, selection: str = ""
) -> str:
    """The consistency of two datasets over ``n_pairs`` model pairs, placed among the run's
    consistency ``values`` over all dataset pairs (``selection``: the chapter's part of the run,
    whose dataset pairs these are, not the run's)."""
    vals = values.dropna()
    text = (
        f"Over {n_pairs} model pairs, the consistency of **{dataset_a}** and **{dataset_b}** "
        f"is r = **{fmt(r)}**"
    )
    # the pair itself is normally among the run's values: it is placed among the others
    same = np.flatnonzero(np.abs(vals.to_numpy() - r) <= 1e-12) if np.isfinite(r) else []
    others = vals.drop(vals.index[same[0]]) if len(same) else vals
    if len(vals) > 1 and np.isfinite(r):
        whose, where, part, these = (
            ("the", " of this chapter's part of the run", f"{selection}; ", "these")
            if selection
            else ("the run's", "", "", "this run's")
        )
        text += (
            f"; it lies above {(others < r - 1e-12).mean():.0%} of {whose} {len(others)} "
            f"{'other ' if len(same) else ''}dataset pair{'s' if len(others) != 1 else ''}{where} "
            f"({part}median of all {len(vals)}: {fmt(vals.median())}; its place among {these} "
            "values, described, not tested)."
        )
    return text + ("." if not text.endswith(".") else "")


def transfer_text(table: pd.DataFrame, by: pd.DataFrame) -> str:
    """How much a model pair's similarity moves across datasets (:func:`repsim.analysis.
    mean_std_across_datasets`), and which category pair is steadiest
    (:func:`repsim.analysis.std_by_category_pair`)."""
    text = (
        f"Over model pairs, the median standard deviation of a pair's similarity across "
        f"datasets is **{fmt(table['std'].median())}** (the median of their mean similarities: "
        f"{fmt(table['mean'].median())})."
    )
    if len(by) >= 2:
        text += (
            f" Median standard deviation per category pair: from {fmt(by['median'].iloc[0])} "
            f"({by.index[0]}) to {fmt(by['median'].iloc[-1])} ({by.index[-1]}), described, not "
            "ranked: the model pairs of a category pair share models, and no test here asks "
            "whether category pairs differ in spread."
        )
    return text


#: How much a transform may move a dataset pair's consistency and leave it "practically
#: unchanged" (:func:`transform_text`; the figure's largest change is shown against it).
TRANSFORM_TOLERANCE = 0.05


def transform_text(
    table: pd.DataFrame, tolerance: float = TRANSFORM_TOLERANCE, selection: str = ""
) -> str:
    """How much the appendix transforms move consistency (:func:`repsim.consistency.
    transform_comparison`): per transform, the largest and the median absolute change over the
    dataset pairs and how many move by ``tolerance`` or more. The transforms are applied to the same
    numbers, so there is no sampling error to test: the changes are stated, not tested."""
    tolerance = check_positive("tolerance", tolerance)
    parts, moved = [], 0
    defined = table[["none", "arccos", "tan"]].notna().all(axis=1)
    table, n = table[defined], int(defined.sum())
    if not n:
        return "No dataset pair has a consistency under every transform, so none is compared."
    for t in ("arccos", "tan"):
        change = (table[t] - table["none"]).abs()
        over = int((change >= tolerance).sum())
        moved = max(moved, over)
        parts.append(
            f"{t} at most {fmt_against(change.max(), tolerance)} (median "
            f"{fmt_against(change.median(), tolerance)}; "
            f"{over} of {n} by {fmt(tolerance)} or more)"
        )
    verdict = (
        f"no dataset pair moves by {fmt(tolerance)} or more, so the transforms leave the "
        f"consistency of {shown(selection, 'this run')} practically unchanged."
        if moved == 0
        else f"the transforms change the consistency of some dataset pairs by {fmt(tolerance)} "
        f"or more on {shown(selection, 'this run')}."
    )
    return (
        f"Over {n} dataset pair{'s' if n != 1 else ''}, consistency changes with "
        f"{parts[0]} and with {parts[1]}: {verdict}"
    )


def grouping_skip_text(group_by: str, models: pd.DataFrame, tidy: pd.DataFrame) -> str | None:
    """Why a grouping gets no box figure (its field unrecorded, one category, or no category pair
    with enough model pairs), or None when it gets one."""
    g = group_by
    if g not in models or not models[g].map(is_known).any():
        return f"*{g}*: not recorded for the models shown, so there is no box to draw."
    if models[g].nunique() == 1:
        return (
            f"*{g}*: every model shown has the same {g} ({models[g].iloc[0]}), so its one "
            "category pair is the all-pairs baseline itself: no box to draw."
        )
    if tidy.empty:
        return (
            f"*{g}*: no category pair has {MIN_PAIRS} or more model pairs with known {g}, so "
            "there is no box to draw."
        )
    return None


def grouping_spread_text(spread: pd.DataFrame) -> str:
    """How far the category-pair medians of each grouping spread
    (:func:`repsim.consistency.grouping_spread`), described and not compared: the comparison of
    factors is :func:`repsim.stats.controlled_tests`."""
    if len(spread) >= 2:
        listed = ", ".join(
            f"{r.group_by} {fmt(r.range)} over {int(r.n_pairs)} category pairs" + _trained_range(r)
            for r in spread.itertuples(index=False)
        )
        return (
            f"Range of the category-pair medians: {listed}. The ranges are described, not "
            "compared: a grouping with more category pairs spreads more by chance alone, and "
            "the groupings' category pairs share models and datasets."
        )
    if len(spread) == 1:
        return (
            f"Only **{spread.group_by.iloc[0]}** has two or more category pairs (range of medians "
            f"{fmt(spread['range'].iloc[0])}); the groupings cannot be compared with each other."
        )
    return (
        "No grouping has two category pairs with enough model pairs, so the groupings cannot be "
        "compared."
    )


def _trained_range(row: Any) -> str:
    """The range without the untrained control's category pairs, where they widen it."""
    n_trained = getattr(row, "n_trained", None)
    if n_trained is None or not 2 <= n_trained < row.n_pairs:
        return ""
    return f" ({fmt(row.range_trained)} over the {int(n_trained)} without the untrained control)"


def missing_group_pairs_text(missing: Sequence[str], selection: str = "") -> str:
    """The requested group pairs that consistency.nc does not hold (or holds with too few pairs);
    ``selection``: the chapter's part of the run, whose models may leave out pairs the run has."""
    return (
        f"Not in {shown(selection, 'this run')}, or with fewer than {MIN_PAIRS} model pairs there: "
        + ", ".join(f"`{g}`" for g in missing)
        + "."
    )


def measure_agreement_text(agree: pd.DataFrame, measure: str) -> str:
    """Rank agreement over model pairs between the main measure and others
    (:func:`repsim.analysis.measure_agreement` with a ``measure`` column)."""
    ok = agree.dropna(subset=["r"])
    if not len(ok):
        return (
            f"No dataset has a defined rank agreement between {measure} and the other measures "
            "on this run."
        )
    low = ok.loc[ok.r.idxmin()]
    others = join_names([str(m) for m in dict.fromkeys(agree["measure"])])
    return (
        f"Rank agreement of {measure} with {others} over model pairs: median "
        f"Spearman **{fmt(ok.r.median())}** (minimum {fmt(low.r)}, on {low.dataset} with "
        f"{low.measure})."
    )


def top_pair_text(gaps: Mapping[str, Mapping], category: str) -> str:
    """The most consistent category pair under each measure, and whether it is first by more than
    the datasets' chance (:func:`repsim.analysis.top_pair_gaps`: its gap to the next pair, with an
    interval over datasets resampled)."""
    if not gaps:
        return (
            f"Fewer than two {category} pairs have a median consistency under any measure (a pair "
            f"needs {MIN_PAIRS} or more model pairs), so the category ranking under local and "
            "global measures cannot be compared."
        )
    same = len({g["top"] for g in gaps.values()}) == 1
    return (
        "Category pair with the highest median consistency under each measure"
        + (" (the same under every measure)" if same else " (not the same under every measure)")
        + ", and its gap to the next pair: "
        + "; ".join(f"{m}: {top_gap_clause(g)}" for m, g in gaps.items())
        + "."
        + _gap_intervals_note(gaps)
    )


def top_gap_clause(gap: Mapping) -> str:
    """``**A | A**, ahead of the next, B | B, by 0.05 (95% CI 0.01 to 0.09)``, worded by the
    interval of one entry of :func:`repsim.analysis.top_pair_gaps`."""
    top, nxt, d = gap["top"], gap["runner_up"], gap["estimate"]
    lo, hi = gap["ci_low"], gap["ci_high"]
    if not (np.isfinite(lo) and np.isfinite(hi)):
        return (
            f"**{top}**, {format_estimate(d)} above the next, {nxt} (not tested: no interval, "
            f"{no_interval_reason(gap['n_datasets'])})"
        )
    ci = f"{_ci_label(gap)} {format_interval(lo, hi)}"
    if lo > 0:
        return f"**{top}**, ahead of the next, {nxt}, by {format_estimate(d)} ({ci})"
    if hi < 0:
        return (
            f"**{top}** by the median, but the next, {nxt}, is ahead in the resamples (gap "
            f"{format_estimate(d)}, {ci})"
        )
    return f"**{top}**, not told apart from the next, {nxt} (gap {format_estimate(d)}, {ci})"


def _ci_label(result: Mapping) -> str:
    """``95% CI``, or ``95% simultaneous CI`` for one of ``n_comparisons`` Bonferroni intervals
    (each at ``confidence_level``) that cover together at 95%."""
    k = int(result.get("n_comparisons", 1))
    family = 1 - (1 - float(result.get("confidence_level", 0.95))) * k
    return f"{family:.0%} CI" if k == 1 else f"{family:.0%} simultaneous CI"


def _gap_intervals_note(gaps: Mapping[str, Mapping], compared: str = "measures") -> str:
    """What the intervals of :func:`top_gap_clause` resample, and their Bonferroni level over the
    ``compared`` (measures, or the image sets of one measure)."""
    shown = [g for g in gaps.values() if np.isfinite(g["ci_low"]) and np.isfinite(g["ci_high"])]
    if not shown:
        return ""
    g = shown[0]
    k, level = int(g.get("n_comparisons", 1)), float(g.get("confidence_level", 0.95))
    several = (
        f"; with {k} {compared} each interval is at {level:.1%} (Bonferroni), so "
        f"{'both' if k == 2 else f'all {k}'} cover together at {1 - (1 - level) * k:.0%}"
        if k > 1
        else ""
    )
    return (
        f" {'Each' if len(gaps) > 1 else 'The'} interval resamples the {int(g['n_datasets'])} "
        f"datasets with the models and both pairs fixed{several}."
    )


def local_global_text(
    pairs: pd.DataFrame, local: str, measure: str, difference: dict[str, float]
) -> str:
    """Consistency under another measure (``y``, e.g. a local one) against the main one (``x``) of
    :func:`repsim.consistency.consistency_pairs`: their agreement (described) and which measure
    gives the higher consistency, worded by the interval of
    :func:`repsim.analysis.scale_difference` (datasets resampled; when the chapter sets several
    measures against the main one, Bonferroni-adjusted intervals that cover together at 95%)."""
    head = (
        f"{local} against {measure}: over {len(pairs.dropna())} values, Pearson r = "
        f"**{fmt(correlate(pairs.x, pairs.y))}** (described: the values share datasets and "
        "models)"
    )
    d, lo, hi = difference["estimate"], difference["ci_low"], difference["ci_high"]
    if not (np.isfinite(lo) and np.isfinite(hi)):
        return (
            f"{head}; the median difference {local} minus {measure} is {fmt(d)}, not tested: no "
            f"interval ({no_interval_reason(difference['n_datasets'])})."
        )
    k = int(difference.get("n_comparisons", 1))
    level = float(difference.get("confidence_level", 0.95))
    family = 1 - (1 - level) * k
    label = _ci_label(difference)
    several = (
        f"; one of {k} measures set against {measure} here, so each interval is at {level:.1%} "
        f"(Bonferroni) and all {k} cover together at {family:.0%}"
        if k > 1
        else ""
    )
    ci = (
        f"median over dataset pairs of the difference {local} minus {measure} in the consistency "
        f"of all model pairs {format_estimate(d)}, {label} {format_interval(lo, hi)} with the "
        f"{int(difference['n_datasets'])} datasets resampled and the models fixed{several}"
    )
    if lo > 0 or hi < 0:
        side = "higher" if lo > 0 else "lower"
        return f"{head}; {local} gives the {side} consistency ({ci})."
    return f"{head}; no evidence that either measure gives the higher consistency ({ci})."


def platonic_text(
    medians: pd.DataFrame,
    measure: str,
    knn_measure: str,
    category: str,
    gaps: Mapping[str, Mapping],
) -> str:
    """The most consistent category pair under CKA and under mutual kNN, each with its gap to the
    next pair (:func:`repsim.analysis.top_pair_gaps`), and how alike the two measures rank the
    category pairs (:func:`repsim.consistency.category_pair_medians` of both, described)."""
    medians = medians.reindex(columns=[measure, knn_measure])
    both = medians.dropna()
    if len(both) < 2 or measure not in gaps or knn_measure not in gaps:
        return (
            f"Fewer than two {category} pairs have {MIN_PAIRS} or more model pairs, so the "
            "consistency of category pairs cannot be compared between the two measures."
        )
    text = (
        f"The {category} pair with the highest median consistency under {measure} is "
        f"{top_gap_clause(gaps[measure])}; under {knn_measure} it is "
        f"{top_gap_clause(gaps[knn_measure])}."
        + _gap_intervals_note({m: gaps[m] for m in (measure, knn_measure)})
    )
    if len(both) >= 3:
        rho = correlate(both[measure], both[knn_measure], "spearman")
        text += (
            f" Over the {len(both)} pairs the two measures' medians have Spearman "
            f"**{fmt(rho)}** (described, not tested: the medians share datasets and models, so "
            "no p-value or interval is attached)."
        )
    return text


def stimulus_sample_text(
    features: Mapping[str, Any], dataset: str, per_category: int, categories: pd.Series
) -> str:
    """Which models and how many stimuli chapter 13's stimulus-count figures rest on
    (:func:`repsim.analysis.stimulus_features`; ``categories``: each model's category, named by
    the grouping, :meth:`repsim.chapter.Chapter.categories`). Its introduction's "a few models
    of each category" is whatever ``per_category`` makes it: every model when that is at least
    each category's count."""
    category = str(categories.name)
    models = list(features)
    n = len(next(iter(features.values())))
    known = categories[categories.map(is_known)]
    largest = int(known.value_counts().max()) if len(known) else 0
    who = (
        f"every model with a known {category}"
        if per_category >= largest
        else f"the first model of each {category} by id"
        if per_category == 1
        else f"the first {per_category} models of each {category} by id"
    )
    named = f" ({', '.join(models)})" if len(models) <= 12 else ""
    return (
        f"The figures below use {who}, {len(models)} in all{named}, on {n} similarity stimuli "
        f"of {dataset}."
    )


def _pair_names(pairs: Sequence[str], every: Sequence[str], most: int = 12) -> str:
    """``pairs`` (``a~b``, :data:`repsim.analysis.MODEL_PAIR_SEP`) by name for a sentence: a
    model all of whose two or more pairs of ``every`` are among them as "every pair of m" (a
    model whose features do not vary gives that with each partner), the other pairs by name, at
    most ``most`` of them and how many more."""
    from repsim.analysis import MODEL_PAIR_SEP

    bad = set(pairs)
    ends = {p: p.split(MODEL_PAIR_SEP) for p in every}
    models = list(dict.fromkeys(m for p in every for m in ends[p]))
    whole = [
        m
        for m in models
        if sum(m in ends[p] for p in every) >= 2 and all(p in bad for p in every if m in ends[p])
    ]
    rest = [p for p in pairs if not set(ends.get(p, [])) & set(whole)]
    named = [f"every pair of {m}" for m in whole] + list(rest[:most])
    if len(rest) > most:
        named.append(f"{len(rest) - most} more")
    return join_names(named)


def _undefined_pairs_text(
    gone: Mapping[str, list[str]], on_all: str, on_some: str, out: str
) -> str:
    """The sentence that counts and names the pairs a stimulus-subset table leaves undefined
    (:func:`repsim.analysis.undefined_pairs`), and what leaves them out (``out``); "" when it
    leaves none: their NaN printed "nan" in chapter 13's sentences, or left its figures unsaid."""
    bad = [*gone["all"], *gone["some"]]
    if not bad:
        return ""
    total = len(gone["pairs"])
    count = (
        "the one model pair"
        if total == 1
        else f"all {total} model pairs"
        if len(bad) == total
        else f"{len(bad)} of the {total} model pairs"
    )
    where = []
    if gone["all"]:
        where.append(f"{len(gone['all'])} on {on_all} ({_pair_names(gone['all'], gone['pairs'])})")
    if gone["some"]:
        names = _pair_names(gone["some"], gone["pairs"])
        where.append(f"{len(gone['some'])} on {on_some} ({names})")
    return (
        f"The similarity is **undefined for {count}** (for CKA: a model without usable variance "
        f"over those stimuli): {'; '.join(where)}; {out}."
    )


def stability_text(table: pd.DataFrame, n_all: int, dataset: str, tolerance: float) -> str:
    """From how many stimuli the median error of pair similarity
    (:func:`repsim.analysis.stability_vs_n`) stays under ``tolerance``, over the values that are
    defined, and which pairs are undefined where (:func:`_undefined_pairs_text`)."""
    from repsim.analysis import undefined_pairs

    tolerance = check_positive("tolerance", tolerance)
    gone = undefined_pairs(table, "full", "similarity")
    sizes = sorted(
        set(table.loc[table["pair"].isin(gone["some"]) & table["similarity"].isna(), "n"])
    )
    note = _undefined_pairs_text(
        gone,
        f"all {n_all} stimuli",
        f"some subsets only, at n = {join_names([str(n) for n in sizes])}",
        "their undefined values are left out of the median errors and of the figure",
    )
    tried = table["n"] < n_all  # n_all itself is the reference: its error is 0 by construction
    err = table[tried].dropna(subset=["abs_error"]).groupby("n").abs_error.median().sort_index()
    if not len(err):
        said = (
            f"On the subsets tried under the {n_all} stimuli of {dataset} no pair has a defined "
            "similarity, so nothing is said about how many stimuli suffice."
            if tried.any()
            else f"No subset size under the {n_all} stimuli of {dataset} was tried, so there is "
            "no figure of the error and nothing is said about how many stimuli suffice."
        )
        return _join(said, note)
    # the smallest n from which every larger n tried is below the tolerance too
    above = err.index[(err >= tolerance).to_numpy()]
    stays = err.index[err.index > above.max()] if len(above) else err.index
    if not len(stays):
        return _join(
            f"With {n_all} stimuli of {dataset} as the reference, the median absolute error is "
            f"not below {tolerance} at the largest subset size tried below it (n = "
            f"{err.index.max()}).",
            note,
        )
    return _join(
        f"With {n_all} stimuli of {dataset} as the reference, the median absolute error falls "
        f"below {tolerance} from **n = {stays.min()}** on.",
        note,
    )


def _join(*sentences: str) -> str:
    """Sentences joined by a space, the empty ones left out."""
    return " ".join(s for s in sentences if s)


def subsample_text(spread: pd.DataFrame, n_draws: int, n_all: int) -> str:
    """The standard error of pair similarity over random halves
    (:func:`repsim.analysis.subsample_pairs`) over the pairs where it is defined; when the
    halves are too small to separate the pairs (:func:`repsim.analysis.subsample_separation`),
    that they are: at 8 stimuli the chapter gave SEs near 0.6 without a word on what so little
    can tell; and which pairs are undefined where (:func:`_undefined_pairs_text`)."""
    from repsim.analysis import subsample_separation, undefined_pairs

    gone = undefined_pairs(spread, "estimate", "se")
    note = _undefined_pairs_text(
        gone,
        f"all {n_all} stimuli",
        f"one or more of the {n_draws} halves only",
        "they are left out of the standard errors here and of the figure",
    )
    ok = spread[np.isfinite(spread["se"]) & np.isfinite(spread["estimate"])]
    if not len(ok):
        return _join(
            f"No pair has a standard error over {n_draws} random halves of {n_all} stimuli.", note
        )
    worst = ok.loc[ok["se"].idxmax(), "pair"]
    text = (
        f"Standard error of pair similarity over {len(ok)} pair{'s' if len(ok) != 1 else ''} "
        f"(spread over {n_draws} "
        f"random halves of {n_all} stimuli): median **{ok['se'].median():.3f}**, largest "
        f"{ok['se'].max():.3f} ({worst})."
    )
    sep = subsample_separation(spread)
    if sep is not None and not sep["separates"]:
        text += (
            f" Halves of {sep['m']} stimuli are **too small to separate the pairs**: their "
            f"standard errors (root mean square {sep['rms_se']:.3f}) are "
            f"{fmt_against(sep['ratio'], 1.0, 1)} times the standard deviation of the "
            f"all-stimuli estimates across the {sep['pairs']} pairs ({sep['sd']:.3f}), so the "
            "differences between pairs are within the noise of one estimate; larger halves need "
            "more stimuli (max_stimuli, where the dataset has them)."
        )
    return _join(text, note)


def fixed_design_text(models: pd.DataFrame, selection: str = "") -> str:
    """Which design fields (data, size, training data) one value holds for every model of the
    run (or of the chapter's part, ``selection``): what the controlled experiment keeps fixed,
    as the run's metadata records it."""
    fixed = [
        c
        for c in ("data_class", "size_class", "training_data")
        if c in models and models[c].map(is_known).all() and models[c].nunique() == 1
    ]
    held = (
        ", ".join(f"**{c}** = {models[c].iloc[0]}{_size_spread(models, c)}" for c in fixed)
        if fixed
        else "nothing recorded (the run's metadata does not show a controlled design, so read "
        "the comparison below with care)"
    )
    return f"Held fixed across the models of {shown(selection, 'this run')}: {held}."


def zoo_design_text(sim: Any, selection: str = "") -> str:
    """The run's models as the design the controlled tests read from them
    (:func:`repsim.stats.design_table`: objective, architecture class, seed), counted: a chapter
    intro said "three seeds each" whatever seeds the run selected."""
    who = shown(selection, "this run")
    who = who[0].upper() + who[1:]
    try:
        design = design_table(sim)
    except InputError:  # why, with the fix, is the test section's reason (controlled_answer)
        n = sim.sizes["model_a"]
        return (
            f"{who} has {n} model{'s' if n != 1 else ''}, not a design of objective x architecture "
            "x seed that this chapter can count; the test section below says what it lacks."
        )
    trained, controls = design[~design["control"]], design[design["control"]]
    seeds = sorted(set((trained if len(trained) else design)["seed"]))
    seed_list = f"seed{'s' if len(seeds) != 1 else ''} {join_names([str(s) for s in seeds])}"
    parts = [f"{who} has {len(design)} model{'s' if len(design) != 1 else ''}"]
    if len(trained):
        objectives, archs = (
            list(pd.unique(trained["objective"])),
            list(pd.unique(trained["architecture"])),
        )
        cells = trained.groupby(["objective", "architecture"]).size()
        lo, hi = int(cells.min()), int(cells.max())
        per_cell = (
            f"{lo} seed{'s' if lo != 1 else ''} in each cell"
            if lo == hi
            else f"{lo} to {hi} seeds per cell"
        )
        crossed = (
            ""
            if len(cells) == len(objectives) * len(archs)
            else f", {len(cells)} of the {len(objectives) * len(archs)} cells present"
        )
        parts.append(
            f": {len(trained)} trained, crossing {len(objectives)} objective"
            f"{'s' if len(objectives) != 1 else ''} ({join_names(objectives)}) with {len(archs)} "
            f"architecture class{'es' if len(archs) != 1 else ''} ({join_names(archs)}), "
            f"{per_cell}{crossed} ({seed_list})"
        )
        if len(controls):
            kinds = join_names(list(pd.unique(controls["objective"])))
            plural = "s" if len(controls) != 1 else ""
            parts.append(f", and {len(controls)} untrained control{plural} ({kinds})")
    else:
        parts.append(f", all untrained controls ({seed_list})")
    return "".join(parts) + "."


def _size_spread(models: pd.DataFrame, column: str) -> str:
    """For a size class held fixed, the range of parameter counts under it, when they differ:
    one class label is not one size (the mini-zoo's are 0.14M to 0.43M parameters)."""
    if column != "size_class" or "params_m" not in models:
        return ""
    params = pd.to_numeric(models["params_m"], errors="coerce").dropna()
    if params.nunique() < 2:
        return ""
    return f" (a label: the models have {params.min():.2f}M to {params.max():.2f}M parameters)"


#: Up to this many near-chance (model, set) cells are named one by one; more are counted.
ZOO_CELLS_LISTED = 8


def zoo_accuracy_text(
    models: pd.DataFrame | None,
    cells: pd.DataFrame | None,
    note: str,
    run_chance: pd.DataFrame | None = None,
) -> str:
    """How well the run's mini-zoo models learned, from the zoo's own manifest and heldout.csv:
    the budget, and which trained models sit near chance on a set (the behaviour chapter's rule).

    ``run_chance`` (:func:`repsim.behavior.probe_chance` of the run's probes) adds how many cells
    the run's own probes put near chance: the zoo's ridge probe on a set's full training split
    found none on the embedded run where the run's probes found 11, and a reader of both chapters
    saw only the contradiction."""
    if models is None:
        return f"No held-out accuracy of the models is shown: {note}."
    trained = models[models["objective"] != "Random"]
    epochs = sorted(set(trained["epochs"]))
    budget = (
        f"trained for {epochs[0]} epochs each"
        if len(epochs) == 1
        else f"trained for {' or '.join(map(str, epochs))} epochs (by model)"
    )
    from repsim.analysis import one_model_per_zoo_cell

    one_each = one_model_per_zoo_cell(models)
    seeds = "one model per cell" if one_each else "mean over seeds, range in brackets"
    text = (
        "The table gives the 95-way held-out accuracy of a ridge probe on each model's embedding "
        f"(all embedded sets' test splits; {seeds}), from the zoo's manifest.csv. "
    )
    if trained.empty:  # a part of untrained controls only
        n = len(models)
        text += (
            f"{'The one model' if n == 1 else f'All {n} models'} shown "
            f"{'is an untrained control' if n == 1 else 'are untrained controls'} (objective "
            "Random), so no training budget applies and no trained model is checked for "
            "near-chance accuracy."
        )
    else:
        text += (
            f"The {len(trained)} trained model{'s were' if len(trained) != 1 else ' was'} {budget}."
        )
    if cells is not None and not trained.empty:
        pool = cells[cells["trained"]]
        near = pool[pool["near_chance"]]
        rule = "accuracy at most 1 / classes + 0.05, the behaviour chapter's rule"
        if near.empty:
            text += (
                " Within each of the run's embedded sets (heldout.csv: a probe on the set's own "
                f"classes), none of the {len(pool)} (trained model, set) cells is near chance "
                f"({rule})."
            )
        else:
            if len(near) <= ZOO_CELLS_LISTED:
                # each accuracy at most its threshold (behavior.probe_chance's column), as the
                # rule beside it says (a 0.2166 by 1/6 + 0.05 = 0.21667 showed as 0.217)
                listed = ", ".join(
                    f"{m} on {d} ({fmt_against(a, t, 3) if np.isfinite(t) else fmt(a, 3)})"
                    for m, d, a, t in near[
                        ["model", "dataset", "accuracy", "threshold"]
                    ].itertuples(index=False)
                )
            else:  # too many to read: where they are, by set and by architecture
                arch = near["model"].map(models.set_index("model")["architecture"])
                per_set = near["dataset"].value_counts()
                per_arch = arch.value_counts()
                listed = (
                    ", ".join(f"{d} {n}" for d, n in per_set.items())
                    + " (by architecture: "
                    + ", ".join(f"{a} {n}" for a, n in per_arch.items())
                    + "; `repsim minizoo evaluate` lists them)"
                )
            text += (
                " Within each of the run's embedded sets (heldout.csv: a probe on the set's own "
                f"classes), {len(near)} of the {len(pool)} (trained model, set) cells "
                f"{'is' if len(near) == 1 else 'are'} near chance ({rule}): {listed}. Those "
                "models barely learned that set, so a comparison of them there rests on little."
            )
    if run_chance is not None and not trained.empty:
        pool = run_chance[run_chance["model"].isin(set(trained["model"]))]
        near = pool[pool["near_chance"]]
        where = ", ".join(f"{d} {n}" for d, n in near["dataset"].value_counts().items())
        text += (
            f" The run's own probes (the behaviour chapter: the study's logistic probe on the "
            f"run's smaller train sample, judged by its interval over probe seeds) put "
            f"{len(near)} of the {len(pool)} trained (model, dataset) cells near chance"
            + (f" ({where})" if len(near) else "")
            + ". The two probes differ in method and training images, so the counts need not "
            "agree; the behaviour link leaves out the run's near-chance probes."
        )
    if note:
        text += f" Left out: {note}."
    return text


def architecture_mix_text(mix: pd.DataFrame, factor: str = "objective") -> str:
    """Within-category consistency split by architecture
    (:func:`repsim.consistency.architecture_mix`), described: where the consistency of all of a
    category's pairs lies above that of both kinds of pair, it can rise with the gap in similarity
    between them (Simpson's paradox), and the sentence says so."""
    parts = ["all", "same architecture", "across architectures"]
    ok = mix.dropna(subset=parts)
    if ok.empty:
        return (
            f"No {factor} has {MIN_PAIRS} or more model pairs both of one architecture and across "
            "architectures, so its consistency cannot be split by architecture."
        )
    listed = "; ".join(
        f"{cat} {fmt(r['all'])} (same architecture {fmt(r['same architecture'])}, across "
        f"{fmt(r['across architectures'])}; mean similarity {fmt(r['similarity same'])} and "
        f"{fmt(r['similarity across'])})"
        for cat, r in ok.iterrows()
    )
    text = (
        f"Consistency within each {factor} over all of its model pairs, and over its pairs of one "
        f"architecture and of different architectures: {listed} (described, not tested)."
    )
    above = ok[
        (ok["all"] > ok[parts[1:]].max(axis=1)) & (ok["similarity same"] > ok["similarity across"])
    ]
    if len(above):
        text += (
            f" For {join_names(list(map(str, above.index)))}, the consistency of all pairs lies "
            "above both of its parts: pairs of one architecture are more alike on average, and a "
            "correlation over both kinds together can rise with that gap alone (Simpson's paradox). "
            f"There the {factor}'s consistency says as much about the zoo's architecture blocks "
            f"as about the {factor}. The controlled tests permute {factor} labels within "
            "architecture, so their null keeps these blocks too."
        )
    return text


def no_controlled_table_text(reason: str) -> str:
    """Why the controlled chapter shows no table of category pairs."""
    return f"No table: {reason}."


def same_category_share_text(shares: Mapping[str, Mapping[str, float]]) -> str:
    """What each factor's permutation test rests on (:func:`repsim.analysis.same_category_share`
    per factor): the share of its category-pair means' spread between same- and
    different-category pairs. Described: the test is of the whole spread."""
    parts = [
        f"{factor} {s['share']:.0%} (pairs of one {factor} {fmt(s['same_mean'])} on average over "
        f"{s['n_same']} category pairs, of two {fmt(s['cross_mean'])} over {s['n_cross']})"
        for factor, s in shares.items()
        if s and np.isfinite(s["share"])
    ]
    if not parts:
        return ""
    return (
        "Share of each factor's spread of category-pair means that lies between pairs of one "
        f"category and pairs of two: {'; '.join(parts)} (described, not tested). A factor's "
        "permutation test says its grouping beats a random one; where this share is high, what "
        "it detects is mostly whether two models share the category, not which category's "
        "pairs keep their similarity pattern best (the overview's interval for the first "
        "category pair asks that)."
    )


def seed_spread_text(spread: pd.DataFrame) -> str:
    """Why the controlled chapter's seed table is empty ('' when it is not): no objective pair
    keeps its mix of model pairs with a seed's models left out (two seeds: one seed's models have
    no pair of one architecture, nor of two seeds)."""
    if len(spread):
        return ""
    return (
        "No objective pair keeps its mix of model pairs (same or other architecture and seed) "
        "when one seed's models are left out, as with two seeds, so no leave-one-seed-out value "
        "is given: how much the means depend on the seeds cannot be said on this run."
    )


#: Train-split agreement is "close", and the order of category pairs "kept", at or above this
#: correlation (Pearson r of each dataset; Spearman rho of the order): a described threshold,
#: with no p-value, since the pairs share models.
CLOSE_AGREEMENT = 0.9


def train_split_text(
    agreement: pd.DataFrame,
    summary: pd.DataFrame | None,
    measure: str,
    category: str,
    alpha: float = 0.05,
    gaps: Mapping[str, Mapping] | None = None,
) -> str:
    """How far similarity on the train-split images agrees with the held-out value, and whether
    consistency changes (:func:`repsim.analysis.split_agreement` and
    :func:`repsim.analysis.split_consistency_summary`; ``summary`` None when the run has fewer
    than two datasets or three models). ``gaps``: :func:`repsim.analysis.top_pair_gaps` of
    :func:`repsim.analysis.split_consistency_dataset`, which tests the category pair with the
    highest median under each variant against the next; without it that pair is only described.

    Agreement is "close" when every dataset's Pearson r over model pairs is at least
    :data:`CLOSE_AGREEMENT` (a description: a p over pairs that share models would overstate the
    evidence); a shift in level is tested with an exact sign test over datasets (the unit that is
    independent); the order of the category-pair medians of consistency is described by
    Spearman's rho against the same threshold, without a p-value (the pairs share models). The
    values the verdicts read are shown by :func:`fmt_against`, the rule beside them.
    """
    close = CLOSE_AGREEMENT
    from repsim.stats import correlation_test, format_p, sign_test

    ok = agreement.dropna(subset=["r"])
    if not len(ok):
        return (
            f"No dataset has a defined correlation between {measure} on train and on held-out "
            "images on this run, so the two are not compared."
        )
    lo, hi = ok.loc[ok.r.idxmin()], ok.loc[ok.r.idxmax()]
    n = len(ok)
    where = (
        f"is **{fmt_against(lo.r, close)}** on its one dataset ({lo.dataset}), so this rests on "
        "one dataset"
        if n == 1
        else f"from **{fmt_against(lo.r, close)}** ({lo.dataset}) to "
        f"**{fmt_against(hi.r, close)}** ({hi.dataset}) over the "
        f"{n} datasets (median {fmt(ok.r.median())})"
    )
    if (ok.r >= close).all():
        verdict = (
            f"The train-split variant agrees closely with the held-out one (every r at least "
            f"{close}, the threshold for close agreement; described, not tested)"
        )
    elif (ok.r > 0).all():
        low = ok[ok.r < close]
        verdict = (
            f"The train-split variant correlates positively with the held-out one on every "
            f"dataset, but with r below {close} (the threshold for close agreement) on "
            f"{join_names(list(low.dataset))} (described, not tested)"
        )
    else:
        neg = ok[ok.r <= 0]
        verdict = (
            f"The train-split variant disagrees with the held-out one on "
            f"{join_names(list(neg.dataset))} (r at or below 0; described, not tested)"
        )
    parts = [
        f"{verdict}: Pearson r of pair similarity ({measure}) between train and held-out images, "
        f"over model pairs, {'' if n == 1 else 'runs '}{where}. No p-value goes with it: the "
        "pairs of a dataset share models, so a p over pairs would overstate the evidence."
    ]
    diff = ok["mean_difference"]
    up, down = int((diff > 0).sum()), int((diff < 0).sum())
    if up + down:
        p = sign_test(up, down)
        level = (
            f"Mean pair similarity is higher on train images on **{up} of {n}** datasets "
            f"(difference train minus held-out from {format_estimate(diff.min(), 3)} to "
            f"{format_estimate(diff.max(), 3)})"
        )
        if p < alpha:
            side = "higher" if up > down else "lower"
            parts.append(
                f"{level}: systematically {side} (exact sign test over datasets with these models held fixed, "
                f"{format_p(p, alpha)})."
            )
        elif up + down < 6:
            parts.append(
                f"{level}: a shift cannot be tested, since with fewer than 6 untied datasets no "
                f"sign test can reach p < 0.05 (exact sign test over datasets with these models held fixed, {format_p(p, alpha)})."
            )
        else:
            parts.append(
                f"{level}: no evidence of a systematic shift (exact sign test over datasets with these models held fixed, "
                f"{format_p(p, alpha)})."
            )
    if summary is None or not len(summary):
        parts.append(
            "Consistency needs two or more datasets and three or more models, so whether it "
            "changes cannot be said here."
        )
        return " ".join(parts)
    if "all" in summary.index:
        a = summary.loc["all"]
        parts.append(
            f"Consistency of all model pairs (median over {int(a.n)} dataset "
            f"pair{'s' if int(a.n) != 1 else ''}): "
            f"**{fmt(a.held_out)}** on held-out and **{fmt(a.train)}** on train images."
        )
    cats = summary.drop(index="all", errors="ignore").dropna(subset=["held_out", "train"])
    if len(cats) < 3:
        parts.append(
            f"Fewer than three {category} pairs have a median on both, so their order is not "
            "compared."
        )
    else:
        # the category pairs share models and datasets: rho describes, and carries no p-value
        rho = correlation_test(cats.held_out, cats.train, "spearman")[0]
        kept = np.isfinite(rho) and rho >= close
        top_h, top_t = cats.held_out.idxmax(), cats.train.idxmax()
        big = cats.difference.abs().idxmax()
        order = (
            f"The order of the {len(cats)} {category} pairs by median consistency is "
            f"{'kept' if kept else 'not closely kept'} (Spearman rho = {fmt_against(rho, close)}; "
            f"kept means rho at least {close}; described, with no p-value, since the pairs share "
            "models and datasets)"
        )
        change = f"the largest change is {big} ({format_estimate(cats.loc[big, 'difference'], 3)})"
        tested = {v: gaps[v] for v in ("held_out", "train") if gaps and v in gaps}
        if len(tested) == 2:
            parts.append(
                f"{order}, and {change}, described. The highest median on held-out images is "
                f"{top_gap_clause(tested['held_out'])}; on train images it is "
                f"{top_gap_clause(tested['train'])}." + _gap_intervals_note(tested, "image sets")
            )
        else:
            parts.append(
                f"{order}; the highest median is {top_h} on held-out and "
                + ("the same on train images" if top_h == top_t else f"{top_t} on train images")
                + f", and {change}, both described."
            )
    parts.append(
        "The medians are over dataset pairs that share datasets, so the change of each category "
        "pair carries no test: this run cannot say whether changes of this size exceed what "
        "another draw of datasets or models would give."
    )
    return " ".join(parts)
