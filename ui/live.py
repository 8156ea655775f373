"""The live view of a training job: curves, progress, Stop. Polls the engine's thread-safe event log.

The training thread never calls Streamlit; this fragment re-reads the job's events every second.
"""
from __future__ import annotations

import time

import streamlit as st

from transfer_core.core.advice import overfitting
from transfer_core.core.events import (
    FINAL_SMALL_DATA,
    DataReady,
    EpochEnd,
    ModelReady,
    Progress,
    RunFailed,
    RunFinished,
    RunStopped,
)
from transfer_core.core.i18n import _, get_language, retranslate
from transfer_core.core.metrics import wilson_interval
from transfer_core.methods import figure_words
from transfer_core.service.jobs import Job, default_queue
from transfer_core.training.eta import shown_as_range

from . import charts, lang, session
from .common import md_escape

KEY_SHOWN_END = "shown_end_of"


def _eta(progress: Progress) -> str:
    """The engine's estimate for the whole run (eta.RunClock), counted down since it was made: a range while
    the run may stop early (it stops when it stops improving), else one figure."""
    since = time.time() - progress.time
    seconds = max(progress.eta_seconds - since, 0.0)
    if not progress.eta_seconds:
        return _("estimating the time left")
    soonest = None if progress.eta_soonest_seconds is None else max(progress.eta_soonest_seconds - since, 0.0)
    if shown_as_range(soonest, seconds):
        return _("between {soonest} and {latest} left in all; it stops sooner when it stops improving").format(
            soonest=_duration(soonest), latest=_duration(seconds))
    if seconds >= 90:
        return _("about {minutes} min left in all").format(minutes=f"{seconds / 60:.0f}")
    return _("about {seconds} s left in all").format(seconds=f"{seconds:.0f}")


def _duration(seconds: float) -> str:
    if seconds >= 90:
        return _("{minutes} min").format(minutes=f"{seconds / 60:.0f}")
    return _("{seconds} s").format(seconds=f"{seconds:.0f}")


def _progress_line(job: Job, events) -> tuple[float, str]:
    ready = next((e for e in events if isinstance(e, DataReady)), None)
    last = next((e for e in reversed(events) if isinstance(e, Progress)), None)
    if ready is None or last is None or last.phase == "preparing":
        done = last.step / max(last.steps, 1) if last else 0.0
        return done, (_("Preparing: reading your pictures and the pretrained network")
                      + (f" · {_eta(last)}" if last else "..."))
    if last.phase in ("checking", "testing"):
        return 1.0, _("Finishing: measuring the best model · {eta}").format(eta=_eta(last))
    if last.phase == "choosing":  # small data: trial runs on folds decide whether fine-tuning helps (crossval)
        return last.step / max(last.steps, 1), _("Trying whether training more layers helps: trial run {i} of "
                                                 "{n} · {eta}").format(i=min(last.step + 1, last.steps),
                                                                       n=last.steps, eta=_eta(last))
    epochs = job.config.epochs
    done = ((last.epoch - 1) + last.step / max(last.steps, 1)) / epochs
    return min(done, 1.0), _("Epoch {epoch} of {epochs} · batch {step} of {steps} · "
                             "{speed} images/s · {eta}").format(epoch=last.epoch, epochs=epochs, step=last.step,
                                                               steps=last.steps, speed=f"{last.images_per_sec:.0f}",
                                                               eta=_eta(last))


def progress_of(job: Job) -> tuple[float, str]:
    """The job's progress bar and its line in words (also shown where Predict or Live started a retrain)."""
    return _progress_line(job, job.events())


def show_curves(job: Job, partner: Job | None) -> None:
    """Loss and accuracy; a partner (the linked from-scratch run) is overlaid: the classroom comparison."""
    loss, acc = _curve_figures(_curve_version(job), _curve_version(partner), get_language(), job, partner)
    left, right = st.columns(2)
    left.plotly_chart(loss, width="stretch")
    right.plotly_chart(acc, width="stretch")


CURVE_REFRESH_S = 5.0


def _curve_version(job: Job | None) -> tuple | None:
    """What the curves show: each finished epoch at once; the running loss within an epoch every few
    seconds. Between versions the charts stay as they are, so a watching browser does not redraw them
    for every batch (the progress line above them still moves every second)."""
    if job is None:
        return None
    epochs = sum(isinstance(e, EpochEnd) for e in job.events())
    if job.final is not None:  # ended: nothing more will come
        return job.id, epochs, "ended"
    return job.id, epochs, int(time.time() // CURVE_REFRESH_S)


@st.cache_resource(max_entries=16, show_spinner=False)
def _curve_figures(version: tuple, partner_version: tuple | None, lang: str, _job: Job, _partner: Job | None):
    """Built once per version and shared by every session watching the run: a class of 30 following one
    run costs one figure build per update, not 30 a second (Streamlit does not hash the arguments that
    start with _). The figures are only read afterwards, never changed."""
    events, partner = _job.events(), _partner
    epochs = [e for e in events if isinstance(e, EpochEnd)]
    label = _("pretrained") if partner is not None else ""
    loss = charts.loss_curves(epochs, charts.live_points([e for e in events if isinstance(e, Progress)]), label=label)
    acc = charts.accuracy_curves(epochs, label=label)
    charts.mark_phases(loss, events)
    charts.mark_phases(acc, events, accuracy=True)
    if partner is not None:
        partner_epochs = [e for e in partner.events() if isinstance(e, EpochEnd)]
        charts.add_loss_traces(loss, partner_epochs, label=_("from scratch"), run=1)
        charts.add_accuracy_traces(acc, partner_epochs, label=_("from scratch"), run=1)
    return loss, acc


def _method_figures(events) -> None:
    """The figures a method adds each epoch (EpochEnd.extra), in words, latest epoch. Their words come from
    the methods' specs (transfer_core.methods), so a method added to the engine is shown here too."""
    epochs = [e for e in events if isinstance(e, EpochEnd) and e.extra]
    if not epochs:
        return
    words = figure_words()
    shown = [(words[k], v) for k, v in epochs[-1].extra.items() if k in words]
    for col, (figure, value) in zip(st.columns(max(1, len(shown))), shown):
        col.metric(_("{name} (epoch {epoch})").format(name=_(figure.label), epoch=epochs[-1].epoch),
                   figure.format.format(value))


def _final_figures(extra: dict) -> str:
    """The methods' end-of-run figures (RunFinished.extra) in one line of words."""
    words = figure_words()
    return " · ".join(f"{_(words[k].label)}: {words[k].format.format(v)}" for k, v in extra.items() if k in words)


def _partner(job: Job) -> Job | None:
    """The from-scratch twin queued with this run (tags link them both ways)."""
    other = job.config.tags.get("compare_to")
    return default_queue().get(other) if other else None


def _show_progress(job: Job, events) -> None:
    done, text = _progress_line(job, events)
    who = f"{_(job.config.tags['baseline'])}: " if job.config.tags.get("baseline") else ""
    st.progress(done, text=who + text)
    ready = next((e for e in events if isinstance(e, DataReady)), None)
    if ready:
        st.caption(retranslate(ready.plan))
    if st.button(_("Stop"), key=f"stop_{job.id}", help=_("Ends training within one batch; the best model so far "
                                                     "is kept.")):
        default_queue().stop(job.id, owner=session.workspace().token)


def first_model_words(ready: ModelReady, num_val: int) -> str:
    """The instant model announced in plain words, with how sure its figure is (small shares: wide)."""
    low, high = wilson_interval(round(ready.val_accuracy * num_val), num_val) if num_val else (0.0, 1.0)
    figures = dict(seconds=f"{ready.seconds:.0f}", accuracy=f"{ready.val_accuracy:.0%}", n=num_val,
                   low=f"{low:.0%}", high=f"{high:.0%}")
    if ready.final:  # it is the run's model: no training follows
        words = _("Your model is ready after {seconds} s: {accuracy} right on {n} validation pictures (95% sure "
                  "the true figure is between {low} and {high}). **Predict** works now.").format(**figures)
        if ready.final == FINAL_SMALL_DATA:
            words += " " + _("It is the new classifier on the pretrained network's features, which holds up best "
                             "with few pictures; with this few validation pictures no fine-tuned model could be "
                             "shown to be better, so none was trained. More pictures per class narrow the range "
                             "and let training improve it.")
        return words
    return _("Your first model is ready after {seconds} s: {accuracy} right on "
             "{n} validation pictures (95% sure the true figure is between {low} and {high}). "
             "**Predict** works now; training goes on to improve it, and a better model replaces it only if it "
             "is clearly better.").format(**figures)


def _show_first_model(events, ended: bool = False) -> None:
    """While the run goes on; after its end only when that model is the run's (its figure's range and why no
    training followed stay on the page: a small-data run ends a moment after its first model)."""
    ready = next((e for e in events if isinstance(e, ModelReady)), None)
    data = next((e for e in events if isinstance(e, DataReady)), None)
    if ready is not None and (not ended or ready.final):
        st.success(first_model_words(ready, data.num_val if data else 0))


def _final_message(final, who: str = "", epochs=()) -> None:
    if isinstance(final, RunFinished):
        st.success(who + _("Finished: best validation accuracy {accuracy} "
                           "(epoch {epoch}, {seconds} s). See **Evaluate** and **Predict**.").format(
                               accuracy=f"{final.best_val_accuracy:.1%}", epoch=final.best_epoch,
                               seconds=f"{final.seconds:.0f}"))
        if _final_figures(final.extra):
            st.caption(who + _final_figures(final.extra))
        warning = overfitting(epochs, final.best_epoch)
        if warning:
            st.warning(who + retranslate(warning))
    elif isinstance(final, RunStopped):
        st.info(who + _("Stopped after {n} epoch(s). The best model so far is kept.").format(n=final.epochs_run))
    elif isinstance(final, RunFailed):
        st.error(who + _("Training failed: {why}").format(why=md_escape(retranslate(final.error))))


LIVE_STATES = ("queued", "running")


def live_job() -> None:
    """Redraw every second while this workspace's job is queued or running; otherwise draw once and only
    look every few seconds for a new job (a teacher's class leaves many idle tabs open: they must be cheap)."""
    job = session.current_job()
    if job is not None and any(j.state in LIVE_STATES for j in (job, _partner(job)) if j is not None):
        st.fragment(_job_view, run_every=1.0)()
        return
    if job is not None:
        _job_view()
    st.fragment(_watch_for_new_job, run_every=3.0)()


def _watch_for_new_job() -> None:
    lang.apply()
    job = session.current_job()
    if job is not None and job.state in LIVE_STATES:
        st.rerun(scope="app")


def _job_view() -> None:
    lang.apply()
    job = session.current_job()
    if job is None:
        return
    partner = _partner(job)
    if partner is not None and job.config.tags.get("baseline"):  # the pretrained run leads the picture
        job, partner = partner, job
    jobs = [j for j in (job, partner) if j is not None]
    for j in jobs:
        position = default_queue().position(j.id)
        if position and position > 0:
            st.info(_("Waiting for the machine: run {id} is number {position} in the queue. It starts by "
                      "itself when the run before it ends.").format(id=j.id, position=position))
        elif position == 0:
            _show_progress(j, j.events())
            if j.final is None:
                _show_first_model(j.events())
    show_curves(job, partner)
    _method_figures(job.events())
    for j in jobs:
        if j.final is not None:
            _show_first_model(j.events(), ended=True)
            _final_message(j.final, f"{_(j.config.tags['baseline'])}: " if j.config.tags.get("baseline") else "",
                           [e for e in j.events() if isinstance(e, EpochEnd)])
    ended = tuple(j.id for j in jobs if j.final is not None)
    if ended and st.session_state.get(KEY_SHOWN_END) != ended:
        st.session_state[KEY_SHOWN_END] = ended
        st.rerun(scope="app")  # the whole page again: Start comes back, Evaluate lists the run
