"""How sure a model should be (its calibration), measured as a task in the engine's queue, never on the
page's thread, and kept for the session until the run's validation results change."""
from __future__ import annotations

from functools import partial
from pathlib import Path

import streamlit as st

from transfer_core.core.i18n import N_, _
from transfer_core.inference.calibration import RunCalibration, run_calibration
from transfer_core.runstore import runfiles

from . import tasks

KEY_DONE = "calibrations"  # run folder -> (what its files were, RunCalibration)
KIND = N_("Measuring how sure the model should be")


def task_key(run_dir: Path) -> str:
    return f"calibration_task_{run_dir.name}"


def calibration_when_ready(run_dir: Path) -> RunCalibration | None:
    """The run's calibration; None while its task waits or runs (the task's progress and Stop are shown)."""
    files = _files_state(run_dir)
    done = st.session_state.setdefault(KEY_DONE, {})
    kept = done.get(str(run_dir))
    if kept and kept[0] == files:
        return kept[1]
    key = task_key(run_dir)
    if st.session_state.get(f"{key}_files") != files:  # once per state of the files, even if it fails
        st.session_state[f"{key}_files"] = files
        tasks.submit(key, KIND, partial(_measure, run_dir))
    task = tasks.follow(key)
    if task is not None and task.error and st.button(_("Measure again"), key=f"{key}_again",
                                                     help=_("Runs the measurement once more.")):
        del st.session_state[f"{key}_files"]
        st.rerun()
    if task is None or task.result is None:
        return None
    done[str(run_dir)] = (files, task.result)
    return task.result


def _measure(run_dir: Path, report, stop) -> RunCalibration:
    """The task's work: it runs in the engine's queue."""
    return run_calibration(run_dir, progress=lambda phase, i, n: report(i, n, phase))


def _files_state(run_dir: Path) -> tuple:
    """Changes when the validation results or the saved calibration are written again."""
    paths = (run_dir / runfiles.VALIDATION, run_dir / runfiles.CALIBRATION)
    return tuple(p.stat().st_mtime_ns if p.is_file() else None for p in paths)
