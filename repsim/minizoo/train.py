"""Train the mini-zoo: every (architecture, objective, seed) on the same data with the same budget.

``repsim minizoo train [--out DIR] [--seeds 0 1 2] [--epochs N] [--only PATTERN ...]`` writes one
float16 safetensors file per model, ``manifest.csv`` and ``models.yaml`` into ``--out``.

What is held fixed across objectives: the images (the train splits of all embedded sets) and
their order for a given seed, the encoder's initialisation for a given seed (so ``*-random-s0`` is
the starting point of every ``*-s0`` model), the number of epochs and steps, the batch size, the
optimiser (AdamW) and its schedule (linear warm-up, cosine decay). Only the loss, and the heads it
needs, differ. Seeds, a fixed thread count and deterministic kernels make a rerun on the same
machine reproduce the weights.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from repsim.argtypes import Parser, at_least
from repsim.errors import ConfigError
from repsim.minizoo.archs import ARCHS, arch_kwargs, build_arch, count_params
from repsim.minizoo.captions import Tokenizer
from repsim.minizoo.data import ZooData, load_zoo_data, zoo_data_paths
from repsim.minizoo.evaluate import dataset_accuracies, embed, head_accuracy, ridge_probe
from repsim.minizoo.manifest import (
    merge_heldout,
    merge_rows,
    read_manifest,
    write_heldout,
    write_manifest,
    write_models_yaml,
)
from repsim.minizoo.objectives import (
    OBJECTIVES,
    Batch,
    Objective,
    build_objective,
    objective_key,
)
from repsim.minizoo.report import heldout_markdown, summary_markdown
from repsim.minizoo.weights import load_encoder, read_metadata, save_encoder
from repsim.pathcheck import DOES_NOT_EXIST, path_problem
from repsim.runfolder import check_output_path, check_path_option, sha256_file

log = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[2]
HELDOUT = "heldout.csv"

#: What weights files written before their metadata recorded the objective's hyperparameters and
#: the optimiser were trained with (the zoo shipped in 441cee3). ``--resume`` compares against these.
HPARAMS_BEFORE_RECORDING: dict[str, dict[str, Any]] = {
    "supervised": {},
    "simclr": {"proj_hidden": 256, "proj_dim": 64, "temperature": 0.2, "crop_scale": [0.35, 1.0]},
    "barlow": {"proj_dim": 256, "off_diagonal_scale": 1.0, "crop_scale": [0.35, 1.0]},
    "clip": {"out_dim": 64, "init_temperature": 0.07, "max_logit_scale": 100.0},
    "random": {},
}
OPTIMIZER_BEFORE_RECORDING: dict[str, Any] = {
    "batch_size": 256,
    "weight_decay": 0.05,
    "warmup": 0.1,
}


@dataclass(frozen=True)
class Budget:
    """The training budget every objective gets."""

    epochs: int = 20
    batch_size: int = 256
    lr: float = 2e-3
    weight_decay: float = 0.05
    warmup: float = 0.1

    def __post_init__(self) -> None:
        """ConfigError naming a value no training can use (--epochs 0 wrote untrained weights
        presented as trained; --batch-size 0 and --lr -1 ended in tracebacks)."""
        bad = []
        if isinstance(self.epochs, bool) or not isinstance(self.epochs, int) or self.epochs < 1:
            bad.append(f"epochs must be a whole number of at least 1, got {self.epochs!r}")
        if (
            isinstance(self.batch_size, bool)
            or not isinstance(self.batch_size, int)
            or self.batch_size < 2
        ):
            bad.append(
                "batch size must be a whole number of at least 2 (the contrastive objectives "
                f"contrast the images of a batch), got {self.batch_size!r}"
            )
        if not (math.isfinite(self.lr) and self.lr > 0):
            bad.append(f"the learning rate must be a positive number, got {self.lr!r}")
        if not (math.isfinite(self.weight_decay) and self.weight_decay >= 0):
            bad.append(f"the weight decay must be 0 or more, got {self.weight_decay!r}")
        if not (0 <= self.warmup < 1):
            bad.append(f"the warm-up fraction must lie in [0, 1), got {self.warmup!r}")
        if bad:
            raise ConfigError("; ".join(bad))


def model_id(arch: str, objective: str, seed: int) -> str:
    """The zoo's model id, e.g. ``cnn-simclr-s0``."""
    return f"{arch}-{objective}-s{seed}"


def _schedule(step: int, total: int, warmup: float) -> float:
    n_warm = max(1, int(warmup * total))
    if step < n_warm:
        return (step + 1) / n_warm
    return 0.5 * (1 + math.cos(math.pi * (step - n_warm) / max(1, total - n_warm)))


def train_model(
    arch: str,
    objective: str,
    seed: int,
    data: ZooData,
    tokens: torch.Tensor,
    vocab: int,
    budget: Budget,
) -> tuple[torch.nn.Module, Objective, dict[str, Any]]:
    """Train one encoder; returns it, its objective (with heads) and the training facts, all in
    eval mode.

    ``data`` is the training part; ``tokens`` its caption token ids (rows aligned with ``data``).
    """
    torch.manual_seed(seed)
    encoder = build_arch(arch)
    obj = build_objective(
        objective,
        embed_dim=encoder.embed_dim,
        n_classes=len(data.class_names),
        vocab_size=vocab,
        max_len=tokens.shape[1],
    )
    n = len(data)
    steps_per_epoch = n // budget.batch_size
    if obj.info.trains and steps_per_epoch < 1:
        raise ConfigError(
            f"{n} training images are fewer than one batch ({budget.batch_size}); lower --batch-size"
        )
    total = steps_per_epoch * budget.epochs if obj.info.trains else 0
    facts: dict[str, Any] = {
        "epochs": budget.epochs if total else 0,
        "steps": total,
        "lr": budget.lr if total else "",
        "final_loss": "",
    }
    if not total:
        return encoder.eval(), obj.eval(), facts
    params = [*encoder.parameters(), *obj.parameters()]
    opt = torch.optim.AdamW(params, lr=budget.lr, weight_decay=budget.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: _schedule(s, total, budget.warmup))
    order_gen = torch.Generator().manual_seed(seed)
    aug_gen = torch.Generator().manual_seed(10_000 + seed)
    encoder.train()
    obj.train()
    name = model_id(arch, objective, seed)
    bar = tqdm(total=total, desc=name, leave=False, mininterval=2.0)
    for _ in range(budget.epochs):
        perm = torch.randperm(n, generator=order_gen)
        losses = []
        for i in range(steps_per_epoch):
            idx = perm[i * budget.batch_size : (i + 1) * budget.batch_size]
            batch = Batch(data.images[idx], data.labels[idx], tokens[idx])
            loss = obj.loss(encoder, batch, aug_gen)
            if not torch.isfinite(loss):
                raise FloatingPointError(f"{name}: loss became {loss.item()} at step {len(losses)}")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            losses.append(loss.item())
            bar.update(1)
        bar.set_postfix(loss=f"{sum(losses) / len(losses):.4f}")
    bar.close()
    facts["final_loss"] = round(sum(losses) / len(losses), 5)
    return encoder.eval(), obj.eval(), facts  # heads too: one with BatchNorm evaluates per batch


def evaluate_stored(
    path: Path, name: str, sha256: str, train: ZooData, test: ZooData
) -> tuple[list[dict[str, Any]], torch.Tensor, torch.Tensor]:
    """The per-dataset ``heldout.csv`` rows of the weights file as stored (after the float16 round
    trip), and its train and test embeddings (for the 95-way probe and the supervised head)."""
    stored, _ = load_encoder(path)
    train_z, test_z = embed(stored, train.images), embed(stored, test.images)
    per_dataset = dataset_accuracies(train_z, train.labels, test_z, test.labels, train.class_names)
    return [{"id": name, **r, "sha256": sha256} for r in per_dataset], train_z, test_z


def build_one(
    arch: str,
    objective: str,
    seed: int,
    train: ZooData,
    test: ZooData,
    tok: Tokenizer,
    budget: Budget,
    out: Path,
) -> dict[str, Any]:
    """Train, save and evaluate one model; returns its manifest row.

    Accuracies are measured on the weights as stored (float16 round trip), so the manifest
    describes the files that ship.
    """
    start = time.perf_counter()
    encoder, obj, facts = train_model(
        arch, objective, seed, train, tok.encode(train.captions), len(tok), budget
    )
    seconds = time.perf_counter() - start
    name = model_id(arch, objective, seed)
    path = out / f"{name}.safetensors"
    save_encoder(
        encoder,
        path,
        arch,
        arch_kwargs(arch),
        extra={
            "objective": obj.info.objective,
            "method": obj.info.method,
            "seed": seed,
            "training_data": train.description,
            "objective_hparams": json.dumps(obj.hparams, sort_keys=True),
            # an untrained control does not depend on the optimiser
            **(
                {"optimizer": json.dumps(_optimizer(budget), sort_keys=True)}
                if facts["steps"]
                else {}
            ),
        },
    )
    sha = sha256_file(path)
    heldout, train_z, test_z = evaluate_stored(path, name, sha, train, test)
    probe = ridge_probe(train_z, train.labels, test_z, test.labels, len(train.class_names))
    head = head_accuracy(obj.head, test_z, test.labels) if hasattr(obj, "head") else ""
    row = {
        "id": name,
        "objective": obj.info.objective,
        "method": obj.info.method,
        "architecture": ARCHS[arch][2]["architecture"],
        "identifier": arch,
        "seed": seed,
        "training_data": train.description,
        "n_train": len(train),
        **facts,
        "probe_acc": round(probe, 4),
        "head_acc": round(head, 4) if head != "" else "",
        "train_s": round(seconds, 1),
        "params": count_params(encoder),
        "embed_dim": int(encoder.embed_dim),
        "weights": path.name,
        "sha256": sha,
        "heldout": heldout,
    }
    log.info(
        "%s: loss %s, probe acc %.3f%s, %.1f s",
        name,
        facts["final_loss"] or "-",
        probe,
        f", head acc {head:.3f}" if head != "" else "",
        seconds,
    )
    return row


def _select(
    archs: list[str], objectives: list[str], seeds: list[int], only: list[str] | None
) -> list[tuple[str, str, int]]:
    # seed-major: an interrupted run still holds every (arch, objective) cell for the first seeds
    jobs = [(a, o, s) for s in seeds for a in archs for o in objectives]
    if only:
        jobs = [j for j in jobs if any(fnmatch.fnmatch(model_id(*j), pat) for pat in only)]
        if not jobs:
            raise ConfigError(
                f"--only {only} matches no model id; ids look like {model_id(archs[0], objectives[0], seeds[0])}"
            )
    return jobs


def _optimizer(budget: Budget) -> dict[str, Any]:
    """The optimiser settings a weights file records (epochs, steps and lr are in the manifest too)."""
    return {
        "batch_size": budget.batch_size,
        "weight_decay": budget.weight_decay,
        "warmup": budget.warmup,
    }


def _finished(out: Path, budget: Budget, n_train: int) -> set[str]:
    """Ids that ``out`` already holds trained with ``budget`` and today's architecture and objective
    hyperparameters (:data:`ARCHS`, ``Objective.hparams``): manifest row and intact file."""
    steps = (n_train // budget.batch_size) * budget.epochs
    done = set()
    for row in read_manifest(out / "manifest.csv"):
        key = objective_key(row["method"])
        if key is None or not _same_recipe(out / row["weights"], row["identifier"], key, budget):
            continue
        trains = row["objective"] != "Random"
        # rows written before the lr column existed were all trained with the default lr
        lr = float(row.get("lr") or Budget.lr) if trains else budget.lr
        same = (int(row["epochs"]), int(row["steps"]), lr) == (
            (budget.epochs, steps, budget.lr) if trains else (0, 0, budget.lr)
        )
        path = out / row["weights"]
        if same and path.exists() and sha256_file(path) == row["sha256"]:
            done.add(row["id"])
    return done


def recorded_recipe(path: Path, objective: str) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """The objective hyperparameters and optimiser settings the weights file at ``path`` records.

    Files written before the metadata held them count as trained with
    :data:`HPARAMS_BEFORE_RECORDING` and :data:`OPTIMIZER_BEFORE_RECORDING`; an untrained control
    has no optimiser (``None``). Raises what reading the header raises.
    """
    meta = read_metadata(path)
    if "objective_hparams" not in meta:
        trains = OBJECTIVES[objective].info.trains
        return HPARAMS_BEFORE_RECORDING[objective], OPTIMIZER_BEFORE_RECORDING if trains else None
    opt = json.loads(meta["optimizer"]) if "optimizer" in meta else None
    return json.loads(meta["objective_hparams"]), opt


def _same_recipe(path: Path, arch: str, objective: str, budget: Budget) -> bool:
    """Whether the weights at ``path`` were built with the architecture hyperparameters
    ``ARCHS[arch]`` has now, the objective's ``hparams`` and the budget's optimiser settings.

    A ViT of another patch size, or a Barlow Twins model of another off-diagonal weight, is
    another model even with the same epochs and learning rate.
    """
    if arch not in ARCHS or objective not in OBJECTIVES or not path.exists():
        return False
    from safetensors import SafetensorError

    try:
        stored_arch = json.loads(read_metadata(path).get("arch_kwargs", "null"))
        stored_obj, stored_opt = recorded_recipe(path, objective)
    except (OSError, ValueError, SafetensorError):  # unreadable header: retrain it
        return False
    expected = json.loads(json.dumps(arch_kwargs(arch), sort_keys=True))
    hparams = json.loads(json.dumps(OBJECTIVES[objective].hparams, sort_keys=True))
    trains = OBJECTIVES[objective].info.trains
    return (
        stored_arch == expected
        and stored_obj == hparams
        and (not trains or stored_opt == _optimizer(budget))
    )


def _fill_heldout(out: Path, ids: set[str], train: ZooData, test: ZooData) -> None:
    """Add heldout.csv rows for models of ``ids`` that lack them (zoos trained before it existed)."""
    held = read_manifest(out / HELDOUT)
    have = {r["id"] for r in held}
    new = []
    for row in read_manifest(out / "manifest.csv"):
        if row["id"] in ids and row["id"] not in have:
            new += evaluate_stored(out / row["weights"], row["id"], row["sha256"], train, test)[0]
    if new:
        write_heldout(merge_heldout(held, new), out / HELDOUT)


def train_zoo(
    out: str | Path,
    data_dir: str | Path,
    *,
    archs: list[str] | None = None,
    objectives: list[str] | None = None,
    seeds: tuple[int, ...] = (0, 1, 2),
    only: list[str] | None = None,
    budget: Budget = Budget(),
    datasets: list[str] | None = None,
    resume: bool = False,
) -> list[dict[str, Any]]:
    """Train the selected models into ``out`` and (re)write its manifest and models.yaml.

    With ``resume``, models that ``out`` already holds with this budget (same epochs and steps,
    weights file intact) are skipped, so a long retraining can be finished over several sittings.
    Returns the manifest rows of the models trained in this call.
    """
    archs = archs or list(ARCHS)
    objectives = objectives or list(OBJECTIVES)
    for a in archs:
        if a not in ARCHS:
            raise ConfigError(f"unknown architecture {a!r}; choose from {sorted(ARCHS)}")
    for o in objectives:
        if o not in OBJECTIVES:
            raise ConfigError(f"unknown objective {o!r}; choose from {sorted(OBJECTIVES)}")
    jobs = _select(archs, objectives, list(seeds), only)
    data = load_zoo_data(data_dir, datasets)
    train, test = data.subset(True), data.subset(False)
    tok = Tokenizer(train.captions)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if resume:
        done = _finished(out, budget, len(train))
        if done:
            log.info(
                "resume: %d models already trained with this budget: %s", len(done), sorted(done)
            )
        jobs = [j for j in jobs if model_id(*j) not in done]
        _fill_heldout(out, done, train, test)
    start = time.perf_counter()
    rows = []
    for a, o, s in tqdm(jobs, desc="mini-zoo", unit="model"):
        rows.append(build_one(a, o, s, train, test, tok, budget, out))
        # after every model, so an interrupted run keeps what it finished (rerun the rest with --only)
        merged = merge_rows(read_manifest(out / "manifest.csv"), rows[-1:])
        write_manifest(merged, out / "manifest.csv")
        write_models_yaml(merged, out / "models.yaml")
        held = merge_heldout(read_manifest(out / HELDOUT), rows[-1]["heldout"])
        write_heldout(held, out / HELDOUT)
    if not rows:  # --resume with every selected model done: no empty table
        log.info("nothing to train: every selected model is already in %s", out)
        return rows
    log.info(
        "trained %d models in %.1f s into %s\n%s",
        len(rows),
        time.perf_counter() - start,
        out,
        summary_markdown(rows),
    )
    return rows


def evaluate_zoo(zoo: str | Path, data_dir: str | Path) -> list[dict[str, Any]]:
    """Rewrite ``heldout.csv`` of an existing zoo from its weights, checked against the manifest.

    Refuses a weights file whose SHA-256 differs from its manifest row: the accuracies must
    describe the files that ship. Returns the rows written.
    """
    zoo = Path(zoo)
    problem = path_problem(zoo, "folder")  # a link loop or a file was "manifest.csv is missing"
    if problem not in (None, DOES_NOT_EXIST):
        raise ConfigError(f"zoo folder {zoo} {problem}; give the --out folder of a training")
    manifest = read_manifest(zoo / "manifest.csv")
    if not manifest:
        raise ConfigError(f"{zoo / 'manifest.csv'} is missing or empty; train the zoo first")
    checked = []  # every file against its row before the images are loaded (a minute)
    for row in manifest:
        path = zoo / row["weights"]
        retrain = f"retrain it with `repsim minizoo train --only {row['id']} --out {zoo}`"
        if not path.exists():
            raise ConfigError(f"{row['id']}: weights file {path} is missing; {retrain}")
        sha = sha256_file(path)
        if sha != row["sha256"]:
            raise ConfigError(
                f"{row['id']}: {path.name} does not match its manifest row (SHA-256 differs); "
                f"{retrain}"
            )
        checked.append((path, row["id"], sha))
    data = load_zoo_data(data_dir)
    train, test = data.subset(True), data.subset(False)
    rows: list[dict[str, Any]] = []
    for path, model, sha in tqdm(checked, desc="held-out", unit="model"):
        rows += evaluate_stored(path, model, sha, train, test)[0]
    write_heldout(rows, zoo / HELDOUT)
    return rows


def build_parser() -> argparse.ArgumentParser:
    b = Budget()
    p = Parser(
        prog="repsim minizoo train", description="Retrain the mini-zoo on the embedded sets."
    )
    p.add_argument(
        "--out",
        default=str(REPO / "data" / "minizoo"),
        help="output folder (weights, manifest.csv, models.yaml, heldout.csv); the default is "
        "the shipped mini-zoo, whose files are replaced: give another folder to try a budget",
    )
    p.add_argument(
        "--data", default=str(REPO / "data" / "embedded"), help="folder of embedded sets (*.npz)"
    )
    p.add_argument(
        "--datasets", nargs="+", default=None, help="embedded set names (default: every *.npz)"
    )
    p.add_argument(
        "--seeds", nargs="+", type=at_least(0), default=[0, 1, 2], help="(default: 0 1 2)"
    )
    p.add_argument("--archs", nargs="+", default=list(ARCHS), choices=list(ARCHS))
    p.add_argument("--objectives", nargs="+", default=list(OBJECTIVES), choices=list(OBJECTIVES))
    p.add_argument(
        "--only", nargs="+", default=None, help="glob(s) on model ids, e.g. 'vit-*' 'cnn-clip-s0'"
    )
    p.add_argument("--epochs", type=int, default=b.epochs, help="(default: %(default)s)")
    p.add_argument(
        "--resume",
        action="store_true",
        help="skip models --out already holds with this budget (intact file, same epochs/steps)",
    )
    p.add_argument("--batch-size", type=int, default=b.batch_size, help="(default: %(default)s)")
    p.add_argument("--lr", type=float, default=b.lr, help="(default: %(default)s)")
    # one thread by default: results do not depend on the core count, and on a shared machine one
    # thread is many times faster than two contending OpenMP threads
    p.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads (fixed so reruns reproduce; default 1)",
    )
    return p


def build_evaluate_parser() -> argparse.ArgumentParser:
    p = Parser(
        prog="repsim minizoo evaluate",
        description="Rewrite heldout.csv (per-dataset held-out accuracy) of a trained zoo.",
    )
    p.add_argument("--zoo", default=str(REPO / "data" / "minizoo"), help="zoo folder")
    p.add_argument(
        "--data", default=str(REPO / "data" / "embedded"), help="folder of embedded sets (*.npz)"
    )
    p.add_argument("--threads", type=at_least(1), default=1, help="torch threads (as in training)")
    return p


def evaluate_main(argv: list[str] | None = None) -> int:
    """Entry point of ``repsim minizoo evaluate``: prints the table and the near-chance models."""
    from repsim.minizoo.evaluate import heldout_chance

    args = build_evaluate_parser().parse_args(argv)
    check_path_option(args.zoo, "--zoo")
    check_path_option(args.data, "--data", "read")
    threads = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    try:
        rows = evaluate_zoo(args.zoo, args.data)
    finally:
        torch.set_num_threads(threads)
    manifest = read_manifest(Path(args.zoo) / "manifest.csv")
    print(heldout_markdown(manifest, rows))
    trained = {r["id"] for r in manifest if r["objective"] != "Random"}
    chance = heldout_chance(rows)
    near = chance[chance["near_chance"] & chance["model"].isin(trained)]
    print(
        f"{len(near)} (model, dataset) cells of trained models are near chance"
        + (
            ": " + ", ".join(f"{m} on {d}" for m, d in zip(near["model"], near["dataset"]))
            if len(near)
            else ""
        )
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``repsim minizoo train``."""
    args = build_parser().parse_args(argv)
    budget = Budget(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr)
    if args.threads < 1:
        raise ConfigError(f"--threads must be at least 1, got {args.threads}")
    check_path_option(args.data, "--data", "read")
    # all before --out is created: a refused command left an empty folder
    zoo_data_paths(args.data, args.datasets)
    _select(args.archs, args.objectives, list(args.seeds), args.only)
    check_output_path(args.out, "--out", "folder")
    # the thread count and kernel choice are part of what fixes the weights; restored afterwards
    # so that a caller in the same process (a notebook, the test suite) keeps its own settings
    threads, deterministic = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    torch.set_num_threads(args.threads)
    torch.use_deterministic_algorithms(True)
    try:
        train_zoo(
            args.out,
            args.data,
            archs=args.archs,
            objectives=args.objectives,
            seeds=tuple(args.seeds),
            only=args.only,
            budget=budget,
            datasets=args.datasets,
            resume=args.resume,
        )
    finally:
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(deterministic)
    return 0
