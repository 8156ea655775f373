"""The live view of a training job: curves, progress, Stop. Polls the engine's thread-safe event log.

The training thread never calls Streamlit; this fragment re-reads the job's events every second.
"""
from __future__ import annotations

import streamlit as st

from transfer_core.events import DataReady, EpochEnd, Progress, RunFailed, RunFinished, RunStopped
from transfer_core.jobs import Job, default_queue

from . import charts, session

KEY_SHOWN_END = "shown_end_of"


def _eta(seconds: float) -> str:
    if seconds >= 90:
        return f"about {seconds / 60:.0f} min left"
    return f"about {seconds:.0f} s left"


def _progress_line(job: Job, events) -> tuple[float, str]:
    ready = next((e for e in events if isinstance(e, DataReady)), None)
    last = next((e for e in reversed(events) if isinstance(e, Progress)), None)
    if ready is None or last is None or last.phase == "preparing":
        done = last.step / max(last.steps, 1) if last else 0.0
        return done, "Preparing: reading your pictures and the pretrained network..."
    epochs = job.config.epochs
    done = ((last.epoch - 1) + last.step / max(last.steps, 1)) / epochs
    return min(done, 1.0), (f"Epoch {last.epoch} of {epochs} · batch {last.step} of {last.steps} · "
                            f"{last.images_per_sec:.0f} images/s · {_eta(last.eta_seconds)}")


def show_curves(epochs: list[EpochEnd], progress: list[Progress] = ()) -> None:
    left, right = st.columns(2)
    left.plotly_chart(charts.loss_curves(epochs, charts.live_points(list(progress))), width="stretch")
    right.plotly_chart(charts.accuracy_curves(epochs), width="stretch")


def _final_message(final) -> None:
    if isinstance(final, RunFinished):
        st.success(f"Finished: best validation accuracy {final.best_val_accuracy:.1%} "
                   f"(epoch {final.best_epoch}, {final.seconds:.0f} s). See **Evaluate** and **Predict**.")
    elif isinstance(final, RunStopped):
        st.info(f"Stopped after {final.epochs_run} epoch(s). The best model so far is kept.")
    elif isinstance(final, RunFailed):
        st.error(f"Training failed: {final.error}")


@st.fragment(run_every=1.0)
def live_job() -> None:
    job = session.current_job() or default_queue().get(st.session_state.get(session.KEY_JOB, ""))
    if job is None:
        return
    events = job.events()
    position = default_queue().position(job.id)
    if position and position > 0:
        st.info(f"Waiting for the machine: your run is number {position} in the queue. It starts by itself "
                "when the run before it ends.")
    elif position == 0:
        done, text = _progress_line(job, events)
        st.progress(done, text=text)
        ready = next((e for e in events if isinstance(e, DataReady)), None)
        if ready:
            st.caption(ready.plan)
        if st.button("Stop", key=f"stop_{job.id}", help="Ends training within one batch; the best model so far "
                                                         "is kept."):
            default_queue().stop(job.id, owner=session.workspace().token)
    show_curves([e for e in events if isinstance(e, EpochEnd)], [e for e in events if isinstance(e, Progress)])
    if job.final is not None:
        _final_message(job.final)
        if st.session_state.get(KEY_SHOWN_END) != job.id:
            st.session_state[KEY_SHOWN_END] = job.id
            st.rerun(scope="app")  # the whole page again: Start comes back, Evaluate lists the run
