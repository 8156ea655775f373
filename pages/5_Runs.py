"""Runs: this person's runs (and those others share), kept on disk; compare them, download, share or delete yours."""
from __future__ import annotations

import time
from functools import partial
from pathlib import Path

import streamlit as st

from transfer_core.core.i18n import N_, _, get_language, retranslate, use_language
from transfer_core.results.bundle import model_bundle
from transfer_core.results.compare import compare_runs
from transfer_core.results.export import export_run
from transfer_core.service.serve_examples import curl_example, python_example, start_command
from transfer_core.service.workspaces import (
    NotAllowed,
    delete_run,
    list_runs_for,
    rename_run,
    require_visible,
)
from ui import charts, session, tasks
from ui.common import (
    accuracy_with_range,
    download_name,
    friendly_errors,
    kept_model_word,
    md_escape,
    owned_label,
    page,
    percent,
    status_word,
    whose_word,
)
from ui.resume import RESUMABLE, resume_button
from ui.settings_view import setting_label, setting_value, settings_rows
from ui.sharing_view import name_control, share_controls, viewer_words

page(N_("Runs"), "🗂️")
KEY_DELETED = "runs_deleted"
if st.session_state.get(KEY_DELETED):
    st.success(_("Deleted {name}.").format(name=md_escape(st.session_state.pop(KEY_DELETED))))
owned = list_runs_for(session.workspace().token, session.runs_dir())
runs = [o.summary for o in owned]
if not runs:
    st.info(_("No runs yet. Train one on the **Train** page; every run is kept here, even after a restart. "
              "Your runs are yours alone until you share one here."))
    name_control()
    st.stop()

token = session.workspace().token
mine = {o.summary.id for o in owned if o.mine}
names = {o.summary.id: o.name for o in owned}


def _row(r) -> dict:
    c = r.config
    return {_("run"): names[r.id], _("whose"): whose_word(owned_by_id[r.id]),
            _("status"): status_word(r.status), _("network"): r.backbone,
            _("frozen"): str(c.freeze) if c else "?", _("epochs"): r.epochs_run,
            _("best accuracy"): percent(r.best_val_accuracy),
            _("95% sure between"): "-" if r.interval is None else f"{r.interval[0]:.0%}-{r.interval[1]:.0%}",
            _("kept model"): kept_model_word(r),
            _("started"): time.strftime("%Y-%m-%d %H:%M", time.localtime(r.created))}


owned_by_id = {o.summary.id: o for o in owned}
st.dataframe([_row(r) for r in runs], hide_index=True, width="stretch")
st.caption(_("'interrupted' means the app stopped while the run was training (its last finished epoch is kept). "
           "Your runs are private: only this workspace sees them until you share one below. Runs other people "
           "share are yours to look at and use, not to change."))

st.subheader(_("Compare runs"))
by_id = {r.id: r for r in runs}
chosen = st.multiselect(_("Runs to compare"), list(by_id), default=list(by_id)[:min(2, len(by_id))],
                        format_func=lambda i: owned_label(owned_by_id[i]), key="compare_runs",
                        help=_("Their validation curves are drawn on top of each other, and the settings that "
                             "differ are listed."))
if len(chosen) >= 2:
    with friendly_errors(N_("Comparing")):
        comparison = compare_runs([by_id[i].path for i in chosen])
        loss, acc = charts.compared_runs(comparison, names)
        left, right = st.columns(2)
        left.plotly_chart(loss, width="stretch")
        right.plotly_chart(acc, width="stretch")
        st.caption(_("Colour is the share of pictures (as on every chart here); each run has its own line style."))
        st.write(_("The kept model's validation accuracy (epoch 0 on the charts is the first model, fitted before "
                   "any epoch): {runs}").format(runs=_("; ").join(
            f"{md_escape(names[i])} {accuracy_with_range(by_id[i])}, {kept_model_word(by_id[i])}" for i in chosen)))
        diffs = {k: v for k, v in comparison.differences.items() if k not in ("tags",)}
        if diffs:
            st.dataframe([{_("setting"): setting_label(k), **{names[i][-24:]: setting_value(k, v)
                                                               for i, v in zip(chosen, values)}}
                          for k, values in diffs.items()], hide_index=True, width="stretch")
        else:
            st.write(_("They were trained with the same settings."))
        if comparison.not_comparable:
            st.warning(md_escape(retranslate(comparison.not_comparable)))
        if comparison.verdict is not None:
            (st.success if comparison.verdict.distinguishable else st.warning)(
                retranslate(comparison.verdict.message))
elif chosen:
    st.caption(_("Pick a second run to compare."))



def parity_words(parity: dict) -> str:
    if not parity.get("images"):
        return _("Exported, but not checked: {why}.").format(
            why=retranslate(parity.get("note", "")) or _("no validation pictures"))
    parts = [_("{name}: same answer on {agreement} of them, probabilities within {difference}").format(
        name=name, agreement=f"{p['top1_agreement']:.1%}", difference=f"{p['max_probability_difference']:.1e}")
             for name, p in parity.items() if name in ("onnxruntime", "torchscript")]
    text = (_("The exported files match the app on {n} validation pictures ({details}).") if parity.get("passed")
            else _("The exported files do NOT fully match the app on {n} validation pictures ({details})."))
    return text.format(n=parity["images"], details=_("; ").join(parts))


def _export(run_dir, out, lang, report, stop):
    """The task's work, in the engine's queue: never on the page's thread, never beside a training run. The
    model card is written in the language of the person who asked for it."""
    with use_language(lang):
        return export_run(run_dir, out, progress=lambda stage, i, n: report(i, n, stage))


def export_section(run) -> None:
    """ONNX + TorchScript + model card + standalone predict.py, checked against the app's own answers."""
    if st.button(_("Export for use outside the app (ONNX, TorchScript)"), key=f"export_{run.id}",
                 help=_("Makes files that run with only onnxruntime or only torch, a model card and a predict.py. "
                      "Before you get them, they are checked to give the app's answers on the validation "
                      "pictures.")):
        out = session.workspace().path / "exports" / f"{run.id}-{int(time.time())}"
        tasks.submit(f"export_task_{run.id}", N_("Exporting and checking the model"),
                     partial(_export, run.path, out, get_language()))
    task = tasks.follow(f"export_task_{run.id}")
    if task is not None and task.result is not None:
        st.session_state[f"exported_{run.id}"] = (str(task.result.zip_path), task.result.card["parity"])
    exported = st.session_state.get(f"exported_{run.id}")
    if exported:
        zip_path, parity = exported
        (st.success if parity.get("passed") else st.warning)(parity_words(parity))
        st.download_button(_("Download the export (.zip)"), Path(zip_path).read_bytes, Path(zip_path).name,
                           "application/zip", key=f"download_export_{run.id}")


def delete_with_confirmation(run) -> None:
    """Delete asks once more (it cannot be undone); the message survives the page's redraw."""
    confirm = f"confirm_delete_{run.id}"
    if not st.session_state.get(confirm):
        if st.button(_("Delete this run"), key=f"delete_{run.id}",
                     help=_("Removes its folder for good, after you confirm. Only the person who started it can.")):
            st.session_state[confirm] = True
            st.rerun()
        return
    st.warning(_("Delete **{name}** for good? Its model and curves cannot be brought back.").format(
        name=md_escape(names[run.id])))
    yes, no = st.columns(2)
    if yes.button(_("Yes, delete it"), key=f"delete_yes_{run.id}", type="primary"):
        del st.session_state[confirm]
        try:
            delete_run(run.path, token, session.runs_dir())
            st.session_state[KEY_DELETED] = names[run.id]
            st.rerun()
        except NotAllowed as exc:
            st.error(md_escape(retranslate(str(exc))))
    if no.button(_("Cancel"), key=f"delete_no_{run.id}"):
        del st.session_state[confirm]
        st.rerun()


st.subheader(_("One run"))
run_id = st.selectbox(_("Run"), list(by_id), format_func=lambda i: owned_label(owned_by_id[i]), key="detail_run")
run = by_id[run_id]
with st.expander(_("All its settings")):
    st.dataframe(settings_rows(run.config) if run.config else [], hide_index=True, width="stretch")
with friendly_errors(N_("Preparing the download")):
    if run.has_model:
        # Asked of the engine again here, where the files are read for this person (not only by the list).
        visible = require_visible(run.path, token, session.runs_dir())
        # The zip is built when the button is pressed, not on every redraw of the page.
        st.download_button(_("Download the trained model (.zip)"),
                           partial(model_bundle, visible, with_pictures=owned_by_id[run.id].pictures),
                           download_name(names[run.id]),
                           "application/zip", help=_("Weights, class names, preprocessing and settings: everything "
                                                   "`python -m transfer_core predict` needs, with no internet."))
        if owned_by_id[run.id].pictures:  # the export checks itself on the run's own pictures
            export_section(run)
        with st.expander(_("Call it from your own code (over HTTP)")):
            st.caption(_("On the computer that runs this app, start a prediction endpoint for this run; then any "
                         "program can send it pictures (answers as JSON; the API's page is on /docs):"))
            here = visible.relative_to(Path.cwd()) if visible.is_relative_to(Path.cwd()) else visible
            for text, language in ((start_command(here), "bash"), (curl_example(), "bash"),
                                   (python_example(), "python")):
                st.code(text, language=language)
if run.id in mine:
    c1, c2, c3 = st.columns(3)
    new_name = c1.text_input(_("Name"), names[run.id], key=f"name_{run.id}",
                             help=_("A name you will recognise, e.g. 'frozen 3, light augmentation'."))
    if new_name != names[run.id]:
        with friendly_errors(N_("Renaming")):
            rename_run(run.path, token, session.runs_dir(), new_name)
            st.rerun()
    if run.status in RESUMABLE:
        with c2:
            resume_button(next(o for o in owned if o.summary.id == run.id), key=f"resume_{run.id}")
    with c3:
        delete_with_confirmation(run)
    share_controls(owned_by_id[run.id])
else:
    st.caption(viewer_words(owned_by_id[run.id]))
