"""Command line: the same engine as the app, for scripts and machines without a screen.

    python -m transfer_core backbones
    python -m transfer_core train DATA [--backbone mobilenet_v2] [--freeze 3] [--epochs 4] [--out runs] [--json]
    python -m transfer_core predict RUN_DIR IMAGE... [--top-k 3] [--threshold 0.8] [--json]
    python -m transfer_core calibration RUN_DIR [--json]
    python -m transfer_core compare RUN_DIR RUN_DIR... [--json]
    python -m transfer_core gradcam RUN_DIR IMAGE [--out gradcam.png] [--class NAME]
    python -m transfer_core check-data DATA [--json]
    python -m transfer_core learning-curve RUN_DIR [--json]
    python -m transfer_core export RUN_DIR --out DIR [--json]
    python -m transfer_core resume RUN_DIR [--json]
    python -m transfer_core lr-find DATA [--backbone mobilenet_v2] [--steps 60] [--sweeps 3] [--json]
    python -m transfer_core serve RUN_DIR [--port 8000] [--replicas 1] [--host 127.0.0.1] [--max-mb 10]
    python -m transfer_core project save --data DIR [--run RUN_DIR ...] --out FILE [--json]
    python -m transfer_core project open FILE --to DIR [--json]

Values shown are the defaults (TrainConfig, transfer_core/core/config.py), except --threshold, whose default
0 always answers (0.8 is an example).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import fields

from transfer_core.cli.advice import report_learning_curve, run_check_data
from transfer_core.cli.elsewhere import add_project_commands, add_serve_command
from transfer_core.core.config import SETTINGS, ConfigError, TrainConfig
from transfer_core.core.events import (
    DataReady,
    EpochEnd,
    ModelReady,
    Progress,
    RunFailed,
    RunFinished,
    RunStopped,
)
from transfer_core.core.settings import Setting, added_settings
from transfer_core.methods import list_methods
from transfer_core.models.backbones import list_backbones
from transfer_core.runstore.runs import RunFolder
from transfer_core.training import distributed
from transfer_core.training.callbacks import Callback

_DEFAULTS = {f.name: f.default for f in fields(TrainConfig)}


def _add_setting(parser, s: Setting) -> None:
    """One command-line argument, read from the setting's description (a flag without dashes is positional)."""
    flag = s.cli_flag()
    if flag is None:
        return
    words = (s.help or "").replace("%", "%%")  # argparse formats help with %
    if not flag.startswith("-"):
        parser.add_argument(flag, help=words)
        return
    parser.add_argument(flag, dest=s.name, type=s.parser(), default=s.default, help=words or None,
                        metavar=s.metavar, choices=s.choices or None)


def add_train_arguments(p: argparse.ArgumentParser) -> None:
    """TrainConfig's settings (core/config.py) and then each registered method's, under its title."""
    of_methods = {o.name for m in list_methods() for o in m.options}
    for s in SETTINGS.values():
        if s.name not in of_methods:
            _add_setting(p, s)
    p.add_argument("--out", default="runs", help="runs directory; each run gets a folder inside")
    p.add_argument("--scratch-baseline", action="store_true",
                   help="also train the same network from random weights, for comparison")
    p.add_argument("--json", action="store_true", help="end with one JSON line summarising the run")
    for method in list_methods():
        group = p.add_argument_group(method.title)
        for option in method.options:
            _add_setting(group, option.setting)


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    # A method's setting left at its default stays out of method_settings (as in the app): a config names
    # only the methods it uses, whatever others are registered.
    added = added_settings()
    return TrainConfig.from_settings({k: v for k, v in vars(args).items() if v is not None and (
        k in SETTINGS or (k in added and v != added[k].default))})


class ProgressPrinter(Callback):
    """A one-line progress bar on stderr, and one line per epoch."""

    def __init__(self, stream=None):
        self.stream = stream or sys.stderr  # looked up now, not at import: a redirected stderr is honoured

    def on_event(self, trainer, event):
        if isinstance(event, Progress):
            frac = event.step / max(event.steps, 1)
            bar = "#" * int(frac * 30)
            rate = f" {event.images_per_sec:.1f} img/s, {event.eta_seconds:.0f}s left" if event.images_per_sec else ""
            label = "preparing" if event.phase == "preparing" else f"epoch {event.epoch}"
            self.stream.write(f"\r{label:>10} [{bar:<30}] {frac:4.0%}{rate}   ")
        elif isinstance(event, DataReady):
            self.stream.write(f"\n{event.num_train} training / {event.num_val} validation images, "
                              f"{len(event.classes)} classes. {event.plan}\n")
        elif isinstance(event, EpochEnd):
            self.stream.write(f"\repoch {event.epoch}/{event.epochs}: train loss {event.train_loss:.3f}, "
                              f"val loss {event.val_loss:.3f}, val accuracy {event.val_accuracy:.3f} "
                              f"({event.seconds:.1f}s){' ' * 20}\n")
        elif isinstance(event, ModelReady):
            self.stream.write(f"\nFirst model ready after {event.seconds:.1f}s (the new classifier alone): val "
                              f"accuracy {event.val_accuracy:.3f}; it can predict now, training goes on\n")
        elif isinstance(event, RunFailed):
            self.stream.write(f"\nFAILED: {event.error}\n")
        elif isinstance(event, (RunFinished, RunStopped)):
            self.stream.write(f"\n{event.kind}: best validation accuracy {event.best_val_accuracy:.3f}\n")
        self.stream.flush()


def run_train(args: argparse.Namespace) -> int:
    from transfer_core.workflows.train import (
        train,  # imported here so `backbones` and `--help` stay quick
    )

    config = config_from_args(args)
    t0 = time.time()
    # Under `torchrun --nproc-per-node N -m transfer_core train ...` every process runs this; rank 0
    # alone prints and writes the run folder (see distributed.py).
    rank, _ = distributed.init()
    callbacks = [ProgressPrinter()] if rank == 0 else []
    scratch = None
    if args.scratch_baseline:  # the pretrained run, then the same from random weights (methods/baseline.py)
        from transfer_core.workflows.baseline import train_with_scratch_baseline

        result, scratch = train_with_scratch_baseline(config, runs_dir=args.out, callbacks=callbacks)
    else:
        result = train(config, runs_dir=args.out, callbacks=callbacks)
    # A rank that failed does not wait for the others: they may be mid-epoch, and torchrun ends them.
    distributed.finish(wait=isinstance(result.final, RunFinished))
    if rank != 0:
        return 0 if isinstance(result.final, RunFinished) else 1
    final = result.final
    summary = {"run_dir": str(result.run_dir), "status": final.kind,
               "best_val_accuracy": getattr(final, "best_val_accuracy", None),
               "test_accuracy": getattr(final, "test_accuracy", None), "num_test": getattr(final, "num_test", 0),
               "epochs": getattr(final, "epochs_run", 0), "seconds": round(time.time() - t0, 2)}
    ready = next((e for e in RunFolder(result.run_dir).events() if isinstance(e, ModelReady)), None) \
        if result.run_dir else None
    summary["first_model_seconds"] = round(ready.seconds, 2) if ready else None  # progressive schedule only
    if isinstance(final, RunFailed):
        summary["error"] = final.error
    summary.update(getattr(final, "extra", {}))  # method figures, e.g. target_accuracy with --target-data
    if scratch is not None:
        summary["scratch_baseline"] = {"run_dir": str(scratch.run_dir), "status": scratch.final.kind,
                                       "best_val_accuracy": getattr(scratch.final, "best_val_accuracy", None)}
    if args.json:
        print(json.dumps(summary))
    return 0 if isinstance(final, RunFinished) else 1


def run_resume(args: argparse.Namespace) -> int:
    """Continue an interrupted (or stopped, or failed) run from its last finished epoch."""
    from transfer_core.workflows.train import resume

    t0 = time.time()
    result = resume(args.run_dir, callbacks=[ProgressPrinter()])  # CannotResume is a ValueError: main() says why
    final = result.final
    if args.json:
        print(json.dumps({"run_dir": str(result.run_dir), "status": final.kind,
                          "best_val_accuracy": getattr(final, "best_val_accuracy", None),
                          "epochs": getattr(final, "epochs_run", 0), "seconds": round(time.time() - t0, 2),
                          **({"error": final.error} if isinstance(final, RunFailed) else {})}))
    return 0 if isinstance(final, RunFinished) else 1


def run_backbones(args: argparse.Namespace) -> int:
    rows = [{"name": s.name, "weights": s.availability(), "params_millions": s.params_millions,
             "imagenet_top1": s.imagenet_top1, "gflops": s.gflops, "title": s.title} for s in list_backbones()]
    if args.json:
        print(json.dumps(rows))
        return 0
    for r in rows:
        print(f"{r['name']:<20} {r['params_millions']:>6.1f}M  top-1 {r['imagenet_top1']:5.1f}%  "
              f"{r['gflops']:5.2f} GFLOPs  {r['weights']}")
    return 0


def run_predict(args: argparse.Namespace) -> int:
    from transfer_core.inference.folders import answers, as_json, pictures_given
    from transfer_core.inference.predict import load_model

    model = load_model(args.run_dir)
    for path, ans, bad in answers(model, pictures_given(args.images), args.threshold, args.top_k):
        if args.json:
            print(json.dumps(as_json(path, ans, bad)))
        elif bad is not None:
            print(f"{path}: skipped ({bad})")
        elif ans.unfamiliar:
            print(f"{path}: does not look like the training pictures (more unusual than "
                  f"{ans.novelty.more_unusual_than:.0%} of the labelled pictures); best guesses: "
                  + ", ".join(f"{c} {p:.1%}" for c, p in ans.top))
        else:
            unsure = "" if ans.sure else f"not sure (below {args.threshold:.0%}); best guesses: "
            print(f"{path}: {unsure}" + ", ".join(f"{c} {p:.1%}" for c, p in ans.top))
    return 0


def run_calibration_report(args: argparse.Namespace) -> int:
    from transfer_core.inference.calibration import run_calibration

    rc = run_calibration(args.run_dir)
    curve = rc.threshold_curve(11)
    if args.json:
        print(json.dumps({**rc.calibration.to_dict(), "bins_before": [vars(b) for b in rc.bins_before()],
                          "bins_after": [vars(b) for b in rc.bins_after()],
                          "thresholds": [vars(t) for t in curve]}))
        return 0
    print(rc.calibration.describe())
    print("confidence    images  right (before)  right (after)")
    for b0, b1 in zip(rc.bins_before(), rc.bins_after()):
        print(f"{b0.lower:4.0%}-{b0.upper:4.0%}  {b0.count:5d}/{b1.count:<5d}  "
              f"{b0.accuracy:12.0%}  {b1.accuracy:12.0%}")
    for t in curve[5:]:
        print(t.describe())
    return 0


def run_compare(args: argparse.Namespace) -> int:
    from transfer_core.results.compare import compare_runs

    result = compare_runs(args.runs)
    if args.json:
        print(json.dumps({"runs": [r.label for r in result.runs], "curves": result.long_rows(),
                          "differences": result.differences, "best": result.best,
                          "verdict": result.verdict.message if result.verdict else None,
                          "not_comparable": result.not_comparable}, default=str))
        return 0
    table = result.aligned("val_accuracy")
    labels = [r.label for r in result.runs]
    print("validation accuracy by epoch")
    print("epoch  " + "  ".join(f"{lab[-24:]:>24}" for lab in labels))
    for i, epoch in enumerate(table["epoch"]):
        cells = ["" if table[lab][i] is None else f"{table[lab][i]:.3f}" for lab in labels]
        print(f"{epoch:5d}  " + "  ".join(f"{c:>24}" for c in cells))
    print("settings that differ:" if result.differences else "all settings are the same")
    for name, values in result.differences.items():
        print(f"  {name}: " + " | ".join(str(v) for v in values))
    for message in (result.not_comparable, result.verdict and result.verdict.message):
        if message:
            print(message)
    return 0


def run_gradcam(args: argparse.Namespace) -> int:
    from transfer_core.inference.gradcam import explain
    from transfer_core.inference.predict import load_model

    result = explain(load_model(args.run_dir), args.image, args.target)
    result.overlay().save(args.out)
    print(f"{args.image}: {result.class_name} {result.probability:.1%}; heat map saved to {args.out}")
    return 0


def run_export(args: argparse.Namespace) -> int:
    from transfer_core.results.export import ExportError, export_run

    try:
        result = export_run(args.run_dir, args.out)
    except ExportError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    parity = result.card["parity"]
    if args.json:
        print(json.dumps({"bundle": str(result.bundle), "zip": str(result.zip_path), "parity": parity}))
    else:
        print(f"bundle: {result.bundle}\nzip: {result.zip_path}")
        for name in ("onnxruntime", "torchscript"):
            if name in parity:
                r = parity[name]
                print(f"{name}: same top class on {r['top1_agreement']:.1%} of {r['images']} validation images, "
                      f"probabilities within {r['max_probability_difference']:.1e}")
    if not result.parity_passed:
        print(f"warning: the parity check did not pass: {parity.get('note', 'see model_card.json')}",
              file=sys.stderr)
        return 1
    return 0


def run_lr_find(args: argparse.Namespace) -> int:
    from transfer_core.workflows.lr_finder import lr_find

    def progress(done, total):
        sys.stderr.write(f"\r  lr-find {done}/{total} steps   ")
        sys.stderr.flush()

    result = lr_find(config_from_args(args), steps=args.steps, sweeps=args.sweeps, progress=progress)
    sys.stderr.write("\n")
    if args.json:
        print(json.dumps(result.to_dict()))
        return 0
    for lr, loss in list(zip(result.lrs, result.losses))[::max(1, len(result.lrs) // 15)]:
        print(f"  lr {lr:9.2e}  loss {loss:6.3f}")
    print(f"suggested learning rate: {result.suggestion:.2e}  (use --lr {result.suggestion:.1e})")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m transfer_core", description="Transfer Studio engine")
    sub = parser.add_subparsers(dest="command", required=True)
    b = sub.add_parser("backbones", help="list the pretrained backbones and whether they work offline")
    b.add_argument("--json", action="store_true")
    b.set_defaults(fn=run_backbones)
    t = sub.add_parser("train", help="fine-tune a backbone on an image folder")
    add_train_arguments(t)
    t.set_defaults(fn=run_train)
    f = sub.add_parser("lr-find", help="suggest a learning rate with a range test (same options as train)")
    add_train_arguments(f)
    f.add_argument("--steps", type=int, default=60, help="learning rates tried per sweep")
    f.add_argument("--sweeps", type=int, default=3, help="sweeps averaged (more = steadier suggestion)")
    f.set_defaults(fn=run_lr_find)
    p = sub.add_parser("predict", help="classify images with a trained run (and say when a picture does not look "
                                       "like the training pictures)")
    p.add_argument("run_dir")
    p.add_argument("images", nargs="+", help="pictures, or folders of pictures")
    p.add_argument("--top-k", type=int, default=3)
    p.add_argument("--threshold", type=float, default=0.0,
                   help="answer 'not sure' below this calibrated confidence (0 to 1, e.g. 0.8)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(fn=run_predict)
    c = sub.add_parser("calibration", help="how trustworthy a run's confidence is, before and after calibration")
    c.add_argument("run_dir")
    c.add_argument("--json", action="store_true")
    c.set_defaults(fn=run_calibration_report)
    cmp = sub.add_parser("compare", help="two or more runs: curves, differing settings, real difference or not")
    cmp.add_argument("runs", nargs="+", metavar="RUN_DIR")
    cmp.add_argument("--json", action="store_true")
    cmp.set_defaults(fn=run_compare)
    g = sub.add_parser("gradcam", help="save a heat map of where the model looked in an image")
    g.add_argument("run_dir")
    g.add_argument("image")
    g.add_argument("--out", default="gradcam.png")
    g.add_argument("--class", dest="target", default=None, help="explain this class (default: the predicted one)")
    g.set_defaults(fn=run_gradcam)
    q = sub.add_parser("check-data", help="find duplicates, train/validation leaks and likely wrong labels")
    q.add_argument("data", help="image folder (one sub-folder per class, or train/ and val/), or a .zip")
    q.add_argument("--backbone", default="mobilenet_v2")
    q.add_argument("--image-size", type=int, default=128)
    q.add_argument("--val-split", type=float, default=_DEFAULTS["val_split"])
    q.add_argument("--seed", type=int, default=_DEFAULTS["seed"])
    q.add_argument("--json", action="store_true")
    q.set_defaults(fn=run_check_data)
    lc = sub.add_parser("learning-curve", help="would more pictures help, and of which class? (the first model "
                        "refitted on 25-100%% of each class, cross-validated)")
    lc.add_argument("run_dir")
    lc.add_argument("--json", action="store_true")
    lc.set_defaults(fn=lambda args: report_learning_curve(args.run_dir, args.json))
    e = sub.add_parser("export", help="write a bundle (ONNX, TorchScript, model card, predict.py) and a zip")
    e.add_argument("run_dir")
    e.add_argument("--out", required=True, help="new folder for the bundle; the zip is written beside it")
    e.add_argument("--json", action="store_true")
    e.set_defaults(fn=run_export)
    r = sub.add_parser("resume", help="continue an interrupted run from its last finished epoch")
    r.add_argument("run_dir")
    r.add_argument("--json", action="store_true", help="end with one JSON line summarising the run")
    r.set_defaults(fn=run_resume)
    add_project_commands(sub)
    add_serve_command(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.fn(args)
    except (ConfigError, FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
