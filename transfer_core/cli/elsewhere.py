"""The commands that take a run elsewhere: `serve` (its predictions over HTTP, service/serving.py) and
`project save` / `project open` (pictures, settings and runs as one file, runstore/project.py). Kept apart from
cli/__init__.py so that module stays one screenful per kind of command."""
from __future__ import annotations

import argparse
import json


def add_serve_command(sub) -> None:
    """`serve`: the run's predictions over HTTP on Ray Serve (service/serving.py)."""
    s = sub.add_parser("serve", help="answer predictions over HTTP (POST /predict, GET /health, /docs) on Ray Serve")
    s.add_argument("run_dir")
    s.add_argument("--port", type=int, default=8000)
    s.add_argument("--host", default="127.0.0.1",
                   help="127.0.0.1: this machine only; 0.0.0.0: every machine that can reach it (no password!)")
    s.add_argument("--replicas", type=int, default=1, help="copies of the model answering at once")
    s.add_argument("--max-mb", type=float, default=10, help="largest request accepted, in MB")
    s.set_defaults(fn=run_serve)


def run_serve(args: argparse.Namespace) -> int:
    from transfer_core.service.picture_requests import Limits
    from transfer_core.service.serving import serve_until_stopped

    serve_until_stopped(args.run_dir, host=args.host, port=args.port, replicas=args.replicas,
                        limits=Limits(max_bytes=int(args.max_mb * 1024 * 1024)))
    return 0


def add_project_commands(sub) -> None:
    """`project save` / `project open`: pictures, settings and runs as one file (runstore/project.py)."""
    pj = sub.add_parser("project", help="save pictures and runs as one project file, or open one")
    actions = pj.add_subparsers(dest="action", required=True)
    s = actions.add_parser("save", help="write the pictures of DIR and the chosen runs (models included) to FILE")
    s.add_argument("--data", required=True, metavar="DIR", help="image folder, one sub-folder per class")
    s.add_argument("--run", dest="runs", action="append", default=[], metavar="RUN_DIR", help="a run to include")
    s.add_argument("--out", required=True, metavar="FILE")
    s.add_argument("--json", action="store_true")
    s.set_defaults(fn=run_project)
    o = actions.add_parser("open", help="unpack FILE into DIR/data/<class>/... and DIR/runs/<run id>/...")
    o.add_argument("file")
    o.add_argument("--to", required=True, metavar="DIR")
    o.add_argument("--json", action="store_true")
    o.set_defaults(fn=run_project)


def run_project(args: argparse.Namespace) -> int:
    from pathlib import Path

    from transfer_core.runstore.opening import open_project
    from transfer_core.runstore.project import save_project

    if args.action == "save":
        done = save_project(args.data, args.out, runs=args.runs)
        summary = {"file": str(done.path), "classes": list(done.classes), "pictures": done.pictures,
                   "runs": list(done.runs)}
    else:
        opened = open_project(args.file, Path(args.to) / "data", Path(args.to) / "runs")
        summary = {"data": str(opened.data), "classes": list(opened.classes), "pictures": opened.pictures,
                   "runs": [str(r) for r in opened.runs]}
    print(json.dumps(summary) if args.json else "\n".join(f"{k}: {v}" for k, v in summary.items()))
    return 0
