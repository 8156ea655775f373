"""Data: choose the pictures to learn from, and see what the engine found in them."""
from __future__ import annotations

import streamlit as st

from transfer_core.core.i18n import N_, _, sentences
from transfer_core.data.datasets import write_uploads
from ui import charts, session
from ui.classes_view import classes_builder
from ui.common import friendly_errors, md_escape, page
from ui.data_view import scan, server_folder_picker, show_report, source_of
from ui.project_view import opened_note, project_download, project_open
from ui.quality_view import quality_check

page(N_("Your pictures"), "📁")
KEY_APPLIED = "applied_upload"  # the files of the last upload put to use, to tell a pending one apart
st.markdown(_("Give the model **one folder per class**: e.g. `good/` and `scratched/`, each full of photos. "
            "The folder names become the class names."))

SOURCES = {"demo": N_("Demo pictures: fabric with and without defects (2,000 images, 3 classes)"),
           "own": N_("Make my own classes: name them, then add pictures or take photos"),
           "folder": N_("Upload a folder from my computer"),
           "zip": N_("Upload a .zip file"),
           "server": N_("A folder on this server (for big data sets)"),
           "project": N_("Open a project saved from Transfer Studio (pictures, settings and models)")}
choice = session.data_choice()
if "data_source" not in st.session_state:  # back on the page: it opens on the source in use
    st.session_state["data_source"] = source_of(choice) or "demo"
opened_note(choice)
source = st.radio(_("Where are your pictures?"), list(SOURCES), format_func=lambda s: _(SOURCES[s]), key="data_source",
                  help=_("The demo pictures are real photos of woven fabric: 'nominal' (fine), 'local' (one small "
                       "defect) and 'global' (the whole texture is off). They work without internet. Your own "
                       "classes are built here, one upload or photo at a time, and kept in your workspace. A "
                       "project file brings back pictures, settings and models saved with \"Download this "
                       "project\"."))

in_use = source_of(choice)
if source == "demo" and in_use == "demo":
    st.caption(_("The demo pictures are the ones in use."))
elif source == "demo":
    # Replacing someone's own pictures must be their clear choice: said in words, never the page's first button.
    if choice is not None:
        st.warning(_("You are using **{data}**. The button below switches to the demo pictures instead; your own "
                     "pictures are not deleted, but you would have to choose them again.").format(
                         data=md_escape(session.data_label(choice))))
    if st.button(_("Use the demo pictures") if choice is None else _("Switch to the demo pictures"),
                 type="primary" if choice is None else "secondary", key="use_demo",
                 help=_("The model then learns from the demo pictures (fabric with and without defects).")):
        with friendly_errors(N_("Loading the demo pictures")):
            session.use_demo_data()
elif source == "project":
    with friendly_errors(N_("Opening the project")):
        project_open()
elif source == "own":
    with friendly_errors(N_("Making your classes")):
        classes_builder(choice)
elif source == "server":
    picked = server_folder_picker()
    if picked is not None:
        session.set_data_choice(session.DataChoice(str(picked[1]), N_("Server folder: {name}").format(
            name=picked[0])))
else:
    kind = "directory" if source == "folder" else False
    files = st.file_uploader(
        _("Choose the folder that holds one sub-folder per class") if source == "folder" else _("Choose a .zip file"),
        type=None if source == "folder" else ["zip"], accept_multiple_files=kind, key=f"upload_{source}",
        help=_("Files other than pictures are skipped and listed below. Nothing leaves this server."))
    files = [f for f in (files if isinstance(files, list) else [files]) if f is not None]
    chosen_files = tuple((f.name, f.size) for f in files)
    button = _("Use these {n} file(s)").format(n=len(files)) if len(files) > 1 else _("Use this file")
    if files and st.button(button, type="primary"):
        with friendly_errors(N_("Reading your upload")), st.spinner(_("Saving your files...")):
            folder = write_uploads(((f.name, f.getvalue()) for f in files), session.workspace().uploads_dir())
            name = files[0].name.replace("\\", "/").split("/")[0] if source == "folder" else files[0].name
            st.session_state[KEY_APPLIED] = chosen_files
            session.set_data_choice(session.DataChoice(str(folder), N_("Upload: {name}").format(name=name)))
    elif files and st.session_state.get(KEY_APPLIED) != chosen_files:
        press = _("Press **{button}** to use them.").format(button=button)
        now = _("Until then the model would learn from: {data}.").format(
            data=md_escape(session.data_label(choice))) if choice else ""
        st.info(sentences(press, now))

if choice is None:
    if source != "own":  # the classes being made say what to do next themselves
        st.info(_("Choose where your pictures are, above. The demo pictures are a good first try."))
    st.stop()

st.divider()
st.subheader(_("Using: {data}").format(data=md_escape(session.data_label(choice))))
with st.expander(_("Validation split"), expanded=False):
    val_split = st.slider(_("Share of pictures kept aside to check the model"), 0.1, 0.5, choice.val_split, 0.05,
                          help=_("These pictures are never trained on; the accuracy you see is measured on them. "
                               "More is a fairer score, less leaves more to learn from. 0.2 suits most data sets."))
    seed = st.number_input(_("Shuffle number"), 0, 10_000, choice.seed,
                           help=_("Which pictures land in the validation share. The same number gives the same "
                                "split, so two runs are compared on the same pictures."))
if (val_split, seed) != (choice.val_split, choice.seed):
    session.set_data_choice(session.DataChoice(choice.path, choice.label, val_split, int(seed)))

report = scan(choice.path, choice.val_split, choice.seed)  # None while it is made, or if it failed (said)
if report is None:
    st.stop()
with friendly_errors(N_("Checking your pictures")):
    show_report(report)
    st.plotly_chart(charts.class_counts(report.counts()), width="stretch")
    st.page_link("pages/2_Train.py", label=_("Next: train a model"), icon="🏋️")
st.divider()
quality_check(choice)
st.divider()
project_download(choice)
