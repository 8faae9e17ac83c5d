"""What every chapter of the book starts from: the run folder's result files and the chapter's
parameters, in one call.

A chapter notebook's first code cell after its ``parameters`` cell is ::

    from repsim.chapter import A, C, P, T, display, say, setup

    ch, run, sim, da, order, caption, measure, category = setup(
        run_dir, measure, datasets, models, category
    )

importing what the chapter calls under short names: ``A`` :mod:`repsim.analysis` (tables behind
the figures), ``B`` :mod:`repsim.behavior`, ``C`` :mod:`repsim.consistency`, ``N``
:mod:`repsim.names`, ``P`` :mod:`repsim.plots` (figures), ``R`` :mod:`repsim.reference`, ``S``
:mod:`repsim.stats`, ``T`` :mod:`repsim.sentences` (computed sentences), and ``np``/``pd``.
Everything after it is a figure, a table or a sentence computed by the package.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from repsim.consistency import category_labels
from repsim.errors import InputError, StoreError, UndefinedDatasetWarning, check_count
from repsim.names import CATEGORY_FIELDS, DOMAINS, UNKNOWN, is_known

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------------------- run files
@dataclass
class Run:
    """The result files of one run folder (absent optional files are None)."""

    path: Path
    similarity: xr.Dataset
    consistency: xr.Dataset | None = None
    probes: xr.Dataset | None = None
    info: dict = field(default_factory=dict)
    manifest: dict = field(default_factory=dict)
    #: "" for the whole run; else the part of it a chapter's parameters kept, in words
    #: ("3 of 12 models and 4 of 6 datasets"): see :func:`select_run`
    selection: str = ""

    @property
    def name(self) -> str:
        """The run's name: attrs of similarity.nc, then run.json, then the folder name."""
        cfg = self.info.get("config", {}) if isinstance(self.info.get("config"), dict) else {}
        return str(self.similarity.attrs.get("run") or cfg.get("name") or self.path.name)

    @property
    def features_path(self) -> Path | None:
        """The feature store of the run, or None when the run kept no features; StoreError when
        the manifest lists features among the results' inputs and the store is gone: damage to
        say, not a run without features whose chapters skip their figures."""
        from repsim.runfolder import RunFolder

        p = RunFolder(self.path).features
        if p.exists():
            return p
        inputs = self.manifest.get("inputs", {})
        if any(k.startswith("features ") and v is not None for k, v in inputs.items()):
            raise StoreError(
                "the features the result files of this run were computed from are missing or "
                f"incomplete ({p} is gone: deleted or moved since the run); rerun the config "
                "into the run folder"
            )
        return None

    def feature_store(self) -> Any:
        """The run's feature store, reading only the groups the result files were computed from:
        a group sealed since (another extraction into the folder) raises StoreError, and so does
        one of those groups that is gone or incomplete (``has`` does not answer False for it)."""
        from repsim.store import FeatureStore

        expected = {
            key.removeprefix("features "): sha
            for key, sha in self.manifest.get("inputs", {}).items()
            if key.startswith("features ")
        }

        def missing(dataset: str, model: str, path: Path) -> StoreError:
            return StoreError(
                f"features of {model!r} on {dataset!r}, which the result files of this run were "
                f"computed from, are missing or incomplete in {path} (deleted or damaged since "
                "the run); rerun the config into the run folder"
            )

        def resealed(dataset: str, model: str) -> StoreError:
            return StoreError(
                f"features of {model!r} on {dataset!r} are not those the result files of this "
                "run were computed from (extracted again since); rerun the config into the run "
                "folder"
            )

        class _RunStore(FeatureStore):
            def has(self, dataset: str, model: str) -> bool:
                # a group the results were computed from must be there: a deleted or incomplete
                # one is damage to report, not a model the run lacks (it was left out of figures)
                present = super().has(dataset, model)
                if not present and expected.get(f"{dataset}/{model}") is not None:
                    raise missing(dataset, model, self.path)
                return present

            def _complete_group(self, dataset: str, model: str) -> Any:
                want = expected.get(f"{dataset}/{model}")
                group = super()._complete_group(dataset, model)
                if want is not None and group.attrs.get("sha256") != want:
                    raise resealed(dataset, model)
                return group

            def check_inputs(self) -> None:
                """StoreError unless every group the result files were computed from is there
                with the seal they recorded (its content is checked where it is read)."""
                for key, want in expected.items():
                    if want is None:
                        continue
                    dataset, model = key.rsplit("/", 1)  # a dataset id may hold '/', a model not
                    group = self._open(dataset, model)
                    if group is None:
                        raise missing(dataset, model, self.path)
                    if group.attrs.get("sha256") != want:
                        raise resealed(dataset, model)

        return _RunStore(self.features_path)

    def check_features(self) -> None:
        """StoreError unless the feature groups the result files were computed from are there as
        they were sealed: ``repsim book`` asks before any notebook runs, since a store deleted
        since the run failed the first chapter, after the last build's notebooks were removed."""
        if self.features_path is not None:  # raises when the manifest lists features and none are
            self.feature_store().check_inputs()

    @property
    def measures(self) -> list[str]:
        return list(self.similarity.data_vars)

    def caption(
        self,
        measure: str | None = None,
        datasets: Sequence[str] | None = None,
        models: Sequence[str] | None = None,
        extra: str = "",
    ) -> str:
        """A figure caption naming the run, the models, the datasets and the measure."""
        sim = self.similarity
        models = list(sim.model_a.values) if models is None else list(models)
        datasets = list(sim.dataset.values) if datasets is None else list(datasets)
        ds = ", ".join(map(str, datasets)) if len(datasets) <= 6 else f"{len(datasets)} datasets"
        parts = [f"Run '{self.name}'", f"{len(models)} models", f"datasets: {ds}"]
        if measure:
            parts.append(f"measure: {measure}")
        text = "; ".join(parts) + "."
        return f"{text} {extra}".strip()


def load_run(run_dir: str | Path) -> Run:
    """Open the result files of a run folder (similarity.nc required; the rest optional).

    Read through :class:`repsim.runfolder.RunFolder`, which checks each file's schema, that the
    files name the same models and datasets, and (when the run recorded a manifest) that every
    file is the one the last run wrote: a folder that mixes two runs is an error, not a figure.
    """
    from repsim.runfolder import RunFolder

    path = Path(run_dir)
    results = RunFolder(path).open_results()
    log.info("loaded run %s: %s", path, dict(results.similarity.sizes))
    return Run(
        path=path,
        similarity=results.similarity,
        info=results.info,
        consistency=results.consistency,
        probes=results.probes,
        manifest=results.manifest,
    )


def lesson_run(run_dir: str | Path | None) -> Run | None:
    """The run a course lesson's exercises on a real run use, with one line about it printed; None,
    with how to make one printed, when ``run_dir`` names no run folder.

    A lesson takes ``run_dir`` as a papermill parameter (None, or a folder without similarity.nc,
    skips those exercises), so a student can work through the toy parts without a run.
    """
    from repsim.runfolder import SIMILARITY

    if not run_dir or not (Path(run_dir) / SIMILARITY).is_file():
        # where it was looked for: a relative run_dir is read from the kernel's folder, which
        # is not always the one a student thinks of (a copy of the notebook moved elsewhere)
        looked = f" (looked for in {Path(run_dir).resolve()})" if run_dir else ""
        print(
            f"No run folder with a {SIMILARITY} at run_dir={run_dir!r}{looked}, so the exercise on "
            "a real run is skipped. Make one with `repsim run data/configs/embedded.yaml --out "
            "runs/embedded` (minutes on a CPU) and set run_dir to it, relative to the folder this "
            "notebook runs in, or as an absolute path."
        )
        return None
    run = load_run(run_dir)
    sim = run.similarity
    print(
        f"Run '{run.name}': {sim.sizes['model_a']} models, datasets "
        f"{', '.join(map(str, sim.dataset.values))}; measures {', '.join(run.measures)}"
    )
    return run


def model_table(sim: xr.Dataset | xr.DataArray) -> pd.DataFrame:
    """Model metadata (coords with suffix ``_a`` on ``model_a``) as a DataFrame indexed by model."""
    cols = {
        name[:-2]: sim[name].values
        for name in sim.coords
        if name.endswith("_a") and sim[name].dims == ("model_a",)
    }
    return pd.DataFrame(cols, index=pd.Index(sim.model_a.values, name="model"))


def select(
    da: xr.DataArray,
    datasets: Sequence[str] | None = None,
    models: Sequence[str] | None = None,
) -> xr.DataArray:
    """Restrict a (dataset, model_a, model_b) array to some datasets and models (None: all).

    An id the array lacks, or one given twice, is an InputError that names it and the ids there
    are; one id may be given as a plain string."""
    if datasets is not None:
        da = da.sel(dataset=_ids(datasets, [str(d) for d in da.dataset.values], "dataset"))
    if models is not None:
        keep = _ids(models, [str(m) for m in da.model_a.values], "model")
        da = da.sel(model_a=keep, model_b=keep)
    return da


def _ids(wanted: str | Sequence[str], have: list[str], what: str) -> list[str]:
    if isinstance(wanted, str) and wanted.lstrip().startswith("["):
        raise InputError(
            f"the chapter's {what}s parameter is the string {wanted!r}, not a list; papermill's "
            f"-p passes strings: give lists with -y, e.g. -y '{what}s: [a, b]'"
        )
    ids = [wanted] if isinstance(wanted, str) else [str(w) for w in wanted]
    if not ids:
        raise InputError(f"the chapter's {what}s parameter is an empty list; give None for all")
    unknown = [i for i in ids if i not in have]
    if unknown:
        raise InputError(
            f"{what}(s) {', '.join(map(repr, unknown))} not in this run; its {what}s are "
            f"{', '.join(have)}"
        )
    twice = sorted({i for i in ids if ids.count(i) > 1})
    if twice:
        raise InputError(f"{what}(s) {', '.join(map(repr, twice))} given more than once")
    return ids


def select_run(
    run: Run,
    datasets: str | Sequence[str] | None = None,
    models: str | Sequence[str] | None = None,
) -> Run:
    """The run as a chapter with ``datasets`` and ``models`` parameters sees it: similarity,
    consistency and probes of those datasets and models only (None: all).

    Consistency correlates the similarities of the model pairs across datasets, so leaving models
    out changes it: it is recomputed from the selected similarities
    (:func:`repsim.results.run_consistency`, what the run's consistency stage computes); leaving
    datasets out only drops dataset pairs. The run-level tests (``controlled_tests.csv``) are not
    recomputed: :func:`repsim.analysis.controlled_tests` says they cover the whole run. The
    whole run is returned unchanged when the parameters keep all of it.
    """
    from dataclasses import replace

    full = run.similarity
    sim = select(full, datasets, models)
    n_m, n_d = int(full.sizes["model_a"]), int(full.sizes["dataset"])
    k_m, k_d = int(sim.sizes["model_a"]), int(sim.sizes["dataset"])
    if (k_m, k_d) == (n_m, n_d):
        return replace(run, similarity=sim)  # the same ids, perhaps in the order asked for
    parts = []
    if k_m < n_m:
        parts.append(f"{k_m} of {n_m} models")
    if k_d < n_d:
        parts.append(f"{k_d} of {n_d} datasets")
    dsets = [str(d) for d in sim.dataset.values]
    cons = run.consistency
    if cons is not None and k_m < n_m:
        from repsim.results import run_consistency

        attrs = dict(cons.attrs)
        cons, _ = run_consistency(sim)
        if cons is not None:
            cons.attrs.update(attrs, selection=" and ".join(parts))
    elif cons is not None:
        cons = cons.sel(dataset_a=dsets, dataset_b=dsets)
    probes = run.probes
    if probes is not None:
        probes = probes.sel(
            model=[m for m in map(str, sim.model_a.values) if m in set(probes.model.values)],
            dataset=[d for d in dsets if d in set(probes.dataset.values)],
        )
    return replace(
        run, similarity=sim, consistency=cons, probes=probes, selection=" and ".join(parts)
    )


def domain_order(sim: xr.Dataset | xr.DataArray) -> list[str]:
    """Dataset ids sorted by domain category (study order), then by id."""
    doms = sim["domain"].values if "domain" in sim.coords else [""] * sim.sizes["dataset"]
    rank = {d: i for i, d in enumerate(DOMAINS)}
    keyed = sorted(zip(sim.dataset.values, doms), key=lambda t: (rank.get(t[1], 99), str(t[0])))
    return [str(d) for d, _ in keyed]


# ----------------------------------------------------------------------------- chapter context
#: What a chapter may need from a run, and the sentence that says why it is skipped without it.
_NEEDS = {
    "consistency": "This run has no consistency.nc (its consistency stage did not run)",
    "anchors": "This run's consistency.nc has no anchor consistency",
    "probes": "This run has no probes.nc (probing was switched off in its config)",
    "features": "This run kept no features (features.zarr)",
}


#: Why a dataset is left out of a figure of consistency over dataset pairs (after "has"/"have").
_NO_CONSISTENCY = "no dataset pair with a defined consistency: not drawn"


@dataclass
class Chapter:
    """What every chapter notebook starts from: the run, its selection and the main measure."""

    run: Run
    sim: xr.Dataset
    measure: str
    category: str
    #: what the chapter shows instead of what its parameters asked for (:func:`open_chapter`)
    notes: tuple[str, ...] = ()

    @property
    def da(self) -> xr.DataArray:
        return self.sim[self.measure]

    @property
    def order(self) -> list[str]:
        return domain_order(self.sim)

    @property
    def datasets(self) -> list[str]:
        return [str(d) for d in self.sim.dataset.values]

    @property
    def models(self) -> pd.DataFrame:
        return model_table(self.sim)

    @property
    def domains(self) -> dict[str, str]:
        doms = (
            self.sim["domain"].values if "domain" in self.sim.coords else [""] * len(self.datasets)
        )
        return {d: str(x) if is_known(x) else UNKNOWN for d, x in zip(self.datasets, doms)}

    @property
    def caption(self) -> str:
        return self.run.caption(self.measure, self.datasets, list(self.sim.model_a.values))

    def categories(self) -> pd.Series:
        """Each model's category under the chapter's grouping (``unknown`` where missing)."""
        return pd.Series(
            category_labels(self.sim, self.category),
            index=[str(m) for m in self.sim.model_a.values],
            name=self.category,
        )

    def category_boxes(self, groupings: Sequence[str], note: str = "") -> list[str]:
        """One box figure per grouping: the consistency of each category pair over the chapter's
        dataset pairs, against the all-pairs baseline (:func:`repsim.plots.consistency_boxes`);
        for a grouping without one, the sentence saying why
        (:func:`repsim.sentences.grouping_skip_text`). ``note`` ends each caption. Returns the
        groupings drawn. Needs the run's consistency.nc (check with :meth:`need`)."""
        from repsim import plots as P
        from repsim import sentences as T
        from repsim.consistency import consistency_table

        cons, datasets = self.run.consistency, self.datasets
        base = consistency_table(cons, self.measure, "all", datasets=datasets)
        drawn = []
        for g in groupings:
            tidy = consistency_table(cons, self.measure, g, datasets=datasets)
            why = T.grouping_skip_text(g, self.models, tidy)
            if why:
                say(why)
                continue
            drawn.append(g)
            title = f"{self.measure}, grouped by {g}"
            caption = self.drawn_caption(pd.concat([base, tidy]), extra=note)
            P.show(P.consistency_boxes(tidy, base, caption=caption, title=title))
        return drawn

    def drawn_caption(
        self,
        drawn: pd.DataFrame | Sequence[str],
        values: Sequence[str] = ("consistency",),
        why: str = _NO_CONSISTENCY,
        measure: str | None = None,
        extra: str = "",
    ) -> str:
        """The caption of a figure that draws some of the chapter's datasets: it names and counts
        those drawn and says how many of the chapter's are left out, and ``why`` (the words after
        "has"/"have"). ``drawn`` is the datasets, or the table the figure draws (a row per
        ``dataset``, or per ``dataset_a``/``dataset_b`` pair, such as
        :func:`repsim.consistency.consistency_table`), whose rows with every column of ``values``
        defined are drawn. ``measure``: the caption's measure (the chapter's by
        default). Figures of chosen dataset pairs, or of values undefined on some datasets, were
        captioned with the chapter's datasets: the scatter chapter's three pairs of four datasets
        read "10 datasets"."""
        from repsim.analysis import defined_rows
        from repsim.sentences import join_names

        if isinstance(drawn, pd.DataFrame):
            rows = defined_rows(drawn, list(values))
            cols = [c for c in ("dataset", "dataset_a", "dataset_b") if c in rows.columns]
            drawn = {str(d) for c in cols for d in rows[c]}
        keep = set(map(str, drawn))
        # in the chapter's order, as :attr:`caption` lists them (the domain order listed a
        # figure's datasets otherwise than the caption of the figure beside it)
        shown = [d for d in self.datasets if d in keep]
        left = [d for d in self.datasets if d not in keep]
        note = (
            f"{len(left)} of the {len(self.datasets)} datasets ({join_names(left)}) "
            f"{'has' if len(left) == 1 else 'have'} {why}."
            if left
            else ""
        )
        return self.run.caption(
            measure or self.measure, shown, list(self.sim.model_a.values), f"{note} {extra}".strip()
        )

    def domain_boxes(self, table: pd.DataFrame, value: str, ylabel: str, title: str) -> list[str]:
        """The per-dataset ``value`` of ``table`` (a row per dataset, with its ``domain``) grouped
        by domain (:func:`repsim.plots.by_domain`), drawn from the datasets where it is defined,
        with a caption that names and counts those (and says how many are left out); or, with
        fewer than two domains to draw, the sentence saying so. Returns the datasets drawn. The
        behaviour chapter's caption counted the chapter's datasets where the figure drew the few
        with a defined r (9 untrained models: most probes near chance)."""
        from repsim import plots as P
        from repsim.analysis import defined_rows
        from repsim.sentences import join_names

        defined = set(defined_rows(table, [value])["dataset"])
        drawn = [d for d in self.datasets if d in defined]  # in the caption's order
        rows = table[table["dataset"].isin(drawn)]
        domains = list(dict.fromkeys(self.domains[d] for d in drawn))
        if len(domains) < 2:
            where = (
                f" ({join_names(drawn)}, {'all ' if len(drawn) > 1 else ''}{domains[0]})"
                if drawn
                else ""
            )
            say(
                f"{ylabel} is defined on {len(drawn)} of the {len(table)} datasets{where}, so "
                "there are not two domains to set side by side and this figure is skipped."
            )
            return []
        caption = self.drawn_caption(drawn, why=f"no defined {ylabel}: not drawn")
        P.show(P.by_domain(rows, value, ylabel, caption=caption, title=title))
        return drawn

    def defined(self, measures: Sequence[str] | None = None) -> list[str]:
        """The chapter's datasets, in the order of its panels (:attr:`order`), on which each of
        ``measures`` (the chapter's measure by default) has a defined similarity
        (:func:`repsim.analysis.defined_datasets`): those a panel per dataset can draw. With
        fewer than two models there is no pair to be undefined, and every dataset is kept."""
        from repsim.analysis import defined_datasets

        keep = set(self.datasets)
        if self.sim.sizes["model_a"] < 2:  # no model pair, so none undefined: counted elsewhere
            return [d for d in self.order if d in keep]
        for m in measures or [self.measure]:
            keep &= set(defined_datasets(self.sim[m]))
        return [d for d in self.order if d in keep]

    def panels(
        self,
        candidates: Sequence[str],
        max_panels: int,
        measures: Sequence[str] | None = None,
        what: str = "datasets",
    ) -> list[str]:
        """Up to ``max_panels`` of ``candidates`` taken in turn from each domain
        (:func:`repsim.analysis.spread_over_domains`), among those with a defined similarity
        under each of ``measures`` (:meth:`defined`); says which are shown and which cannot be
        drawn (:func:`repsim.sentences.panels_text`). Chapters 8, 10 and 11 picked a dataset
        every model failed on and drew it as an empty panel ("Spearman nan", "0 models")."""
        from repsim.analysis import spread_over_domains
        from repsim.sentences import join_names, panels_text

        measures = list(measures or [self.measure])
        defined = set(self.defined(measures))
        usable = [d for d in candidates if d in defined]
        shown = spread_over_domains(usable, self.domains, max_panels)
        undefined = [d for d in candidates if d not in defined]
        why = f"no defined {measures[0]}"
        if len(measures) > 1:
            anywhere = set(self.defined(measures[:1]))
            for m in measures[1:]:
                anywhere |= set(self.defined([m]))
            none = not anywhere & set(undefined)  # undefined under every measure
            why = "no defined similarity under " + (
                join_names(measures) if none else f"one or more of {join_names(measures)}"
            )
        say(panels_text(shown, candidates, what, undefined, why))
        return shown

    def dataset_skip(
        self, datasets: Sequence[str], parameter: str, what: str = "this figure"
    ) -> str | None:
        """The sentence that skips ``what`` when ``datasets`` (chosen by the chapter's
        ``parameter``) name one the chapter does not show; None when it shows them all. A dataset
        outside the chapter's datasets parameter was a traceback saying the run lacked it."""
        from repsim.sentences import join_names, shown

        have = set(self.datasets)
        missing = list(dict.fromkeys(str(d) for d in datasets if str(d) not in have))
        if not missing:
            return None
        return (
            f"{parameter} names {join_names(missing)}, which {shown(self.run.selection, 'this run')} "
            f"does not have (its datasets: {', '.join(self.order)}), so {what} is skipped."
        )

    def dataset_pair_skip(self, pairs: Sequence[Sequence[str]], parameter: str) -> str | None:
        """The sentence that skips a figure of chosen dataset pairs (``parameter``: the chapter's
        parameter that chose them) when a pair names a dataset the chapter does not show
        (:meth:`dataset_skip`), or one dataset twice; None when all can be drawn."""
        missing = self.dataset_skip([d for pair in pairs for d in pair], parameter)
        if missing:
            return missing
        twice = [tuple(pair) for pair in pairs if len(set(pair)) < len(pair)]
        if twice:
            return (
                f"{parameter} pairs {twice[0][0]} with itself: a dataset pair is two datasets, so "
                "this figure is skipped."
            )
        return None

    def spread_skip(self, what: str) -> str | None:
        """The sentence that skips ``what`` (panels of the mean or spread across datasets) when
        the chapter shows one dataset with a defined similarity (:meth:`defined`), or None: with
        one dataset there is no spread, and the similarity-matrix chapter drew a blank "std
        across datasets" panel and a "mean" that was that dataset again, unsaid (also beside a
        dataset every model failed on)."""
        from repsim.sentences import join_names, shown

        defined = [d for d in self.datasets if d in set(self.defined())]
        if len(defined) > 1:
            return None
        whose = shown(self.run.selection, "this run")
        whose = f"{whose[0].upper()}{whose[1:]}"
        undefined = [d for d in self.datasets if d not in defined]
        if not undefined:
            have = f"has one dataset ({self.datasets[0]})"
        else:
            lack = f"{join_names(undefined)} {'has' if len(undefined) == 1 else 'have'} none"
            have = (
                f"has one dataset with a defined {self.measure} ({defined[0]}; {lack})"
                if defined
                else f"has no dataset with a defined {self.measure}"
            )
        return (
            f"{whose} {have}: there is no mean or spread across datasets, so the figure leaves "
            f"out {what}."
        )

    def other_measures(self, candidates: Sequence[str], what: str) -> tuple[list[str], str | None]:
        """The measures of ``candidates`` the chapter can set against its main measure, and the
        sentence that skips ``what`` when there are none. A candidate that is the main measure
        is said to be so: the chapters said the run had no mutual_knn_10 when it was the main
        measure (``measure=mutual_knn_10``) and compared rsa_spearman with itself."""
        from repsim.sentences import join_names

        others = [m for m in dict.fromkeys(candidates) if m in self.sim and m != self.measure]
        if others:
            return others, None
        why = [] if candidates else ["no other measure was named"]
        if self.measure in candidates:
            why.append(f"{self.measure} is this chapter's main measure")
        missing = [m for m in dict.fromkeys(candidates) if m not in self.sim]
        if missing:
            why.append(f"this run has no {join_names(missing)}")
        return (
            [],
            f"Nothing to set against {self.measure} ({'; '.join(why)}), so {what} is skipped.",
        )

    def need(
        self,
        *needs: str,
        min_datasets: int = 1,
        min_models: int = 2,
        min_domains: int = 1,
        figures: int = 1,
        what: str = "",
    ) -> str | None:
        """The first reason this chapter's figure (or ``figures`` figures) cannot be drawn on this
        run, or None.

        ``needs`` names optional run files (``consistency``, ``anchors``, ``probes``,
        ``features``); the counts are lower bounds on the run's datasets, models and domains.
        Datasets and domains are counted among the datasets with a defined similarity under the
        chapter's measure (:func:`repsim.analysis.defined_datasets`): a dataset every model
        failed on adds nothing to a mean, a spread or a dataset pair (two datasets, one of them
        undefined, passed ``min_datasets=2``). ``figures``: how many figures the reason skips,
        for the sentence's wording (chapter 13's train-split section said "this figure is
        skipped" of its two); ``what``: what is skipped when it is not figures ("this table":
        chapter 10 said "this figure is skipped" of its table of medians).
        """
        skipped = f"{what} is skipped" if what else _skipped(check_count("figures", figures))
        run = self.run
        have = {
            "consistency": run.consistency is not None,
            "anchors": run.consistency is not None and "anchor_consistency" in run.consistency,
            "probes": run.probes is not None,
            "features": run.features_path is not None,
        }
        for n in needs:
            if n not in have:
                raise InputError(f"unknown need {n!r}; choose from {sorted(have)}")
            k = self.sim.sizes["model_a"]
            if not have[n] and n in ("consistency", "anchors") and run.selection and k < 3:
                return (
                    f"Consistency needs at least 3 models (2 model pairs); this chapter's "
                    f"selection keeps {k} ({run.selection}), so {skipped}."
                )
            if not have[n]:
                return f"{_NEEDS[n]}, so {skipped}."
        from repsim.sentences import join_names, shown

        whose = shown(run.selection)
        defined = [d for d in self.datasets if d in set(self.defined())]  # in the run's order
        undefined = [d for d in self.datasets if d not in defined]
        # what is counted: "datasets" where all are defined (as it read), else the defined ones
        kind = f"datasets with a defined {self.measure}" if undefined else "datasets"
        if len(defined) < min_datasets:
            listed = ", ".join(defined)
            if undefined:
                verb = "has" if len(undefined) == 1 else "have"
                lack = f"{join_names(undefined)} {verb} no defined {self.measure}"
                listed = f"{listed}; {lack}" if listed else lack
            least = f"at least {min_datasets} {kind}"
            if min_datasets == 1:
                least = f"a {kind.replace('datasets', 'dataset', 1)}"
            return f"This needs {least} and {whose} has {len(defined)} ({listed}), so {skipped}."
        n_m = self.sim.sizes["model_a"]
        if n_m < min_models:
            return f"This needs at least {min_models} models and {whose} has {n_m}, so {skipped}."
        domains = list(dict.fromkeys(self.domains[d] for d in defined))
        if len(domains) < min_domains:
            if not domains:
                return (
                    f"This compares domain categories and no dataset of {whose} has a defined "
                    f"{self.measure}, so {skipped}."
                )
            one = kind.replace("datasets", "dataset", 1)
            return (
                f"This compares domain categories and every {one} of {whose} is {domains[0]}, "
                f"so {skipped}."
            )
        return None


def _skipped(figures: int) -> str:
    """What a skip sentence of :meth:`Chapter.need` says is skipped, by the number of figures."""
    if figures == 1:
        return "this figure is skipped"
    words = {2: "two", 3: "three", 4: "four", 5: "five"}
    return f"these {words.get(figures, figures)} figures are skipped"


#: The chapters' default parameters: a run without them is rendered with a fallback, said in
#: the chapter; any other measure or category a run lacks is an error (a typo must not render
#: another measure's chapter).
DEFAULT_MEASURE = "cka_linear"
DEFAULT_CATEGORY = "objective"


def open_chapter(
    run_dir: str | Path,
    measure: str = DEFAULT_MEASURE,
    datasets: Sequence[str] | None = None,
    models: Sequence[str] | None = None,
    category: str = DEFAULT_CATEGORY,
) -> Chapter:
    """Load a run and apply a chapter's parameters (:func:`select_run`).

    The default measure or category, when the run lacks it, falls back to the run's first
    (``notes`` says so); another one the run lacks raises InputError naming what it has.
    """
    run = select_run(load_run(run_dir), datasets, models)
    sim = run.similarity
    notes: list[str] = []
    if measure not in sim:
        if measure != DEFAULT_MEASURE:
            raise InputError(
                f"measure {measure!r} is not in this run; its measures are "
                f"{', '.join(run.measures)}: give one of them as the chapter's measure parameter"
            )
        notes.append(
            f"This run has no {measure}; the chapter shows {run.measures[0]}, the run's first "
            "measure."
        )
        measure = run.measures[0]
    if category not in CATEGORY_FIELDS or f"{category}_a" not in sim.coords:
        known_fields = [c for c in CATEGORY_FIELDS if f"{c}_a" in sim.coords]
        if category != DEFAULT_CATEGORY:
            # a model field outside CATEGORY_FIELDS (method, architecture) colours a figure but
            # has no consistency: its chapters blamed too few model pairs for the empty tables
            what = (
                "is a model field, but consistency is grouped only by the fields of "
                "repsim.names.CATEGORY_FIELDS"
                if f"{category}_a" in sim.coords
                else "is not a model field of this run"
            )
            raise InputError(
                f"category {category!r} {what}; its fields are "
                f"{', '.join(known_fields) or 'none'}: give one of them as the chapter's "
                "category parameter"
            )
        if known_fields:
            notes.append(
                f"The models of this run have no {category}; the chapter groups them by "
                f"{known_fields[0]}."
            )
            category = known_fields[0]
    return Chapter(run=run, sim=sim, measure=measure, category=category, notes=tuple(notes))


def check_measure_names(**parameters: str | Sequence[str]) -> None:
    """InputError unless each chapter parameter given (its name: a measure name or a list of
    them) names measures. A chapter leaves out the measures the run lacks (the tiny run has few);
    a misspelt one would be left out unsaid, so it is named here with the valid names."""
    from repsim.measures.registry import parse_measure

    for parameter, names in parameters.items():
        for name in [names] if isinstance(names, str) else names:
            try:
                parse_measure(str(name))
            except InputError as exc:
                raise InputError(f"the chapter's {parameter} parameter: {exc}") from None


#: The class of a table whose text cells wrap (book/_static/repsim.css): number cells elsewhere
#: stay on one line, which pushed long descriptions behind a scroll bar.
TEXT_TABLE_CLASS = "dataframe text-table"
#: The class of one wrapping cell in a table of numbers (book/_static/repsim.css), and the
#: length of text above which a column's cells get it (``text_table(wrap="long")``).
TEXT_CELL_CLASS = "text-cell"
LONG_TEXT = 20


def text_table(table: pd.DataFrame, wrap: str = "all") -> Any:
    """``table`` for display with no index and its text wrapped at the column's edge.

    ``wrap="all"``: every cell, for tables of descriptions and sources. ``wrap="long"``: only the
    cells of columns holding a text longer than :data:`LONG_TEXT` characters, for a table of
    numbers with columns of words (the basis and status of each value in the study-numbers
    chapter): its numbers and short labels stay on one line, and the words no longer push the
    table behind a scroll bar. Floats show with 3 decimals, undefined values as NaN."""
    styler = table.style.hide(axis="index").format(na_rep="NaN", precision=3)
    if wrap == "all":
        text = [c for c in table.columns if table[c].map(lambda v: isinstance(v, str)).any()]
        styler = styler.format(_breakable, subset=text, na_rep="NaN", precision=3)
        return styler.set_table_attributes(f'class="{TEXT_TABLE_CLASS}"')
    if wrap != "long":
        raise InputError(f"wrap must be 'all' or 'long'; got {wrap!r}")
    long = [
        c
        for c in table.columns
        if table[c].map(lambda v: isinstance(v, str) and len(v) > LONG_TEXT).any()
    ]
    classes = pd.DataFrame("", index=table.index, columns=table.columns)
    classes[long] = TEXT_CELL_CLASS
    return styler.set_td_classes(classes).set_table_attributes('class="dataframe"')


def _breakable(value: Any) -> str:
    """A text cell as HTML with a line-break opportunity (``<wbr>``, not copied with the text)
    after each "/" and "_": the sources table's ids (``consistency/cka_linear/all/...``) have no
    spaces, and a narrow column broke them mid-word ("consisten" / "cy/cka_lin")."""
    import html

    if not isinstance(value, str):
        return "NaN" if pd.isna(value) else html.escape(str(value))
    return html.escape(value).replace("/", "/<wbr>").replace("_", "_<wbr>")


def say(text: str) -> None:
    """Show a computed sentence (Markdown) in the notebook; nothing for "" (a sentence that
    applies only sometimes, such as :func:`repsim.sentences.panels_text`)."""
    from IPython.display import Markdown, display

    if text:
        display(Markdown(text))


def setup(
    run_dir: str | Path,
    measure: str = DEFAULT_MEASURE,
    datasets: Sequence[str] | None = None,
    models: Sequence[str] | None = None,
    category: str = DEFAULT_CATEGORY,
) -> tuple[Chapter, Run, xr.Dataset, xr.DataArray, list[str], str, str, str]:
    """A chapter's opening: :func:`open_chapter` with its parameters, unpacked into the names the
    chapter cells use: ``ch, run, sim, da, order, caption, measure, category`` (the measure and
    category after their fallbacks)."""
    # tqdm.auto in the kernel without ipywidgets: its warning is not part of the book
    warnings.filterwarnings("ignore", message="IProgress not found")
    # a dataset with no defined similarity: the chapters leave it out and name it in their
    # captions and sentences (a dataset with some NaN pairs still warns: nothing says that)
    warnings.filterwarnings("ignore", category=UndefinedDatasetWarning)
    # a table on a page shows its text whole: pandas cuts a cell at 50 characters with "..."
    pd.set_option("display.max_colwidth", None)
    ch = open_chapter(run_dir, measure, datasets, models, category)
    for note in ch.notes:
        say(note)
    return ch, ch.run, ch.sim, ch.da, ch.order, ch.caption, ch.measure, ch.category


#: The modules a chapter cell calls, under the short names the chapters use; imported on first
#: use, so ``repsim.load_run`` does not pay for matplotlib.
_SHORT = {
    "A": "repsim.analysis",
    "B": "repsim.behavior",
    "C": "repsim.consistency",
    "N": "repsim.names",
    "P": "repsim.plots",
    "R": "repsim.reference",
    "S": "repsim.stats",
    "T": "repsim.sentences",
}


def __getattr__(name: str) -> object:
    import importlib

    if name in _SHORT:
        return importlib.import_module(_SHORT[name])
    if name == "display":
        from IPython.display import display

        return display
    raise AttributeError(f"module 'repsim.chapter' has no attribute {name!r}")


__all__ = [
    "Chapter",
    "Run",
    "domain_order",
    "load_run",
    "model_table",
    "np",
    "open_chapter",
    "pd",
    "say",
    "select",
    "select_run",
    "setup",
    "text_table",
]
