"""The Data page's "Make your own classes": name classes, fill each from uploads or the camera, look at and
tidy their pictures. The result is an ordinary class-per-folder data set in the person's workspace
(transfer_core.data.classbuilder does the work on the folders; this module only draws and calls it).

Every change runs in a widget's callback, before the page is drawn again, so the counts and thumbnails
shown are always the folder's as it is now."""
from __future__ import annotations

import math
import time
from pathlib import Path

import streamlit as st

from transfer_core.core.i18n import N_, _, retranslate
from transfer_core.data.classbuilder import (
    SETS,
    add_picture,
    class_dir,
    create_class,
    delete_class,
    ensure_set,
    list_classes,
    move_picture,
    remove_picture,
    rename_class,
    set_info,
    zip_bytes,
)
from transfer_core.data.datafiles import (
    IMAGE_EXTENSIONS,
    DatasetError,
)

from . import session
from .camera import camera_check
from .camera_burst import burst_recorder
from .common import download_name, friendly_errors, md_escape
from .data_view import thumbnail
from .labelling_view import label_with_help

OWN_SET, OWN_LABEL = "my-classes", N_("My classes")  # the label is kept in English, shown translated
PER_PAGE = 12  # thumbnails of one class shown at once
KEY_NEW = "cb_new_class"
KEY_SET = "cb_set"
KEY_CONFIRM = "cb_confirm_delete"  # the class whose deletion waits for a yes
PICTURE_TYPES = sorted(e.lstrip(".") for e in IMAGE_EXTENSIONS)


def classes_builder(choice: session.DataChoice | None) -> None:
    """The whole "Make your own classes" section."""
    dataset = _pick_set(choice)
    st.text_input(_("New class name"), key=KEY_NEW, max_chars=60, placeholder=_("e.g. cat, 猫, scratched"),
                  help=_("Any language. Characters that cannot be in a folder name (/ \\ : and the like) become "
                       "spaces; two classes cannot share a name, whatever the capitals."))
    st.button(_("Add class"), key="cb_add_class", on_click=_create, args=(dataset,),
              help=_("Makes an empty class; fill it below with uploads or photos."))
    classes = list_classes(dataset)
    if not classes:
        st.info(_("Name your first class above (for example **good**), then a second one (**scratched**). Each "
                "then gets its own place for pictures."))
        return
    _counts(classes)
    _camera(dataset, list(classes))
    burst_recorder(dataset, list(classes))
    for name, pictures in classes.items():
        _class_box(dataset, name, pictures, [c for c in classes if c != name])
    with st.container(border=True):
        label_with_help(dataset, list(classes), PICTURE_TYPES)
    _use_or_download(dataset, classes, choice)


# ---------------------------------------------------------------------------------------------- which set
def _sets_dir() -> Path:
    return session.workspace().path / SETS


def _pick_set(choice: session.DataChoice | None) -> Path:
    """The set being edited: the person's hand-made one, or another of their own (a copy the Predict page
    made); the one chosen as training data first."""
    own = ensure_set(_sets_dir(), OWN_SET, OWN_LABEL)
    sets = sorted(d for d in _sets_dir().iterdir() if d.is_dir() and not d.name.startswith("."))
    if len(sets) < 2:
        return own
    chosen = Path(choice.path) if choice else None
    default = next((d for d in sets if chosen is not None and d.resolve() == chosen.resolve()), own)
    if st.session_state.get(KEY_SET) not in [str(d) for d in sets]:
        st.session_state[KEY_SET] = str(default)
    picked = st.selectbox(_("Which of your sets"), [str(d) for d in sets], key=KEY_SET, format_func=_set_label,
                          help=_("Your hand-made classes, and copies made when you corrected an answer on the "
                               "Predict page. Each is a data set of your own."))
    return Path(picked)


def _set_label(path: str) -> str:
    label = set_info(path).get("label")
    return retranslate(label) if label else Path(path).name


# ---------------------------------------------------------------------------------------------- counts, camera
def _counts(classes: dict[str, list[str]]) -> None:
    per_row = 6
    names = list(classes)
    for start in range(0, len(names), per_row):
        cols = st.columns(per_row)
        for col, name in zip(cols, names[start:start + per_row]):
            col.metric(name, len(classes[name]), help=_("Pictures in this class now."))


def _camera(dataset: Path, names: list[str]) -> None:
    if not st.toggle(_("Take photos with my camera"), key="cb_use_camera",
                     help=_("Each photo you take goes straight into the class chosen here; remove it below if "
                          "it is not a good one.")):
        return
    target = st.selectbox(_("Photos go into"), names, key="cb_camera_class",
                          help=_("The class each new photo is added to. Switch it between shots."))
    camera_check()  # says "no camera found" in words where the browser has none (or may not use it here)
    shots = st.session_state.setdefault("cb_camera_shots", 0)
    st.camera_input(_("Take a photo for {name}").format(name=target), key=f"cb_camera:{shots}", on_change=_add_photo,
                    args=(dataset, f"cb_camera:{shots}"),
                    help=_("Press the button under the picture: the photo is added at once, and the camera is "
                         "ready for the next one."))


def _add_photo(dataset: Path, key: str) -> None:
    photo = st.session_state.get(key)
    target = st.session_state.get("cb_camera_class")
    if photo is None or target is None:
        return
    with friendly_errors(N_("Adding the photo")):
        add_picture(dataset, target, photo.getvalue(), f"photo-{time.strftime('%Y%m%d-%H%M%S')}.jpg")
        st.toast(_("Photo added to {name}.").format(name=target))
    st.session_state["cb_camera_shots"] += 1  # a fresh camera box: the next shot is one press away


# ---------------------------------------------------------------------------------------------- one class
def _class_box(dataset: Path, name: str, pictures: list[str], others: list[str]) -> None:
    with st.container(border=True):
        st.markdown(_("**{name}** · {n} picture(s)").format(name=md_escape(name), n=len(pictures)))
        _uploader(dataset, name)
        _thumbnails(dataset, name, pictures, others)
        _rename_or_delete(dataset, name, len(pictures))


def _uploader(dataset: Path, name: str) -> None:
    round_ = st.session_state.get(f"cb_upround:{name}", 0)  # a new key empties the box after adding
    key = f"cb_up:{name}:{round_}"
    files = st.file_uploader(_("Pictures of {name}").format(name=name), type=PICTURE_TYPES,
                             accept_multiple_files=True, key=key,
                             help=_("Choose one or many pictures; they all go into this class. Damaged files "
                                  "are refused with the reason, the others are added."))
    if files:
        st.button(_("Add {n} picture(s) to {name}").format(n=len(files), name=name), key=f"cb_addpics:{name}",
                  type="primary",
                  on_click=_add_uploads, args=(dataset, name, key),
                  help=_("Checks each picture opens, then saves it in your workspace."))


def _add_uploads(dataset: Path, name: str, key: str) -> None:
    added, refused = 0, []
    for f in st.session_state.get(key) or []:
        try:
            add_picture(dataset, name, f.getvalue(), f.name)
            added += 1
        except DatasetError as exc:
            refused.append(str(exc))
    if added:
        st.toast(_("Added {n} picture(s) to {name}.").format(n=added, name=name))
    for reason in refused:
        st.error(md_escape(retranslate(reason)))
    st.session_state[f"cb_upround:{name}"] = st.session_state.get(f"cb_upround:{name}", 0) + 1


def _thumbnails(dataset: Path, name: str, pictures: list[str], others: list[str]) -> None:
    if not pictures:
        st.caption(_("No pictures yet: upload some above, or take photos with the camera."))
        return
    pages = math.ceil(len(pictures) / PER_PAGE)
    page_key = f"cb_page:{name}"
    if pages > 1:
        st.session_state[page_key] = min(st.session_state.get(page_key, 1), pages)  # after removals
        page = st.number_input(_("Page (of {pages})").format(pages=pages), 1, pages, key=page_key,
                               help=_("{n} pictures are shown at a time.").format(n=PER_PAGE))
    else:
        page = 1
    folder = class_dir(dataset, name)
    cols = st.columns(6)
    for i, picture in enumerate(pictures[(page - 1) * PER_PAGE:page * PER_PAGE]):
        with cols[i % 6]:
            _picture_cell(dataset, name, folder / picture, others)


def _picture_cell(dataset: Path, name: str, path: Path, others: list[str]) -> None:
    picture = path.name
    thumb = thumbnail(str(path), 128)
    if thumb is not None:
        st.image(thumb, caption=picture, width=96)
    st.button(_("Remove"), key=f"cb_rm:{name}/{picture}", on_click=_remove, args=(dataset, name, picture),
              help=_("Deletes this picture from your set."))
    if others:
        st.selectbox(_("Move to"), others, index=None, placeholder=_("Move to…"), key=f"cb_mv:{name}/{picture}",
                     on_change=_move, args=(dataset, name, picture), label_visibility="collapsed",
                     help=_("Puts this picture into another class."))


def _remove(dataset: Path, name: str, picture: str) -> None:
    with friendly_errors(N_("Removing the picture")):
        remove_picture(dataset, name, picture)
        st.toast(_("Removed {picture} from {name}.").format(picture=picture, name=name))


def _move(dataset: Path, name: str, picture: str) -> None:
    target = st.session_state.get(f"cb_mv:{name}/{picture}")
    if target is None:
        return
    with friendly_errors(N_("Moving the picture")):
        moved = move_picture(dataset, name, picture, target)
        st.toast(_("Moved {picture} to {target} (as {new_name}).").format(picture=picture, target=target,
                                                                          new_name=moved.name)
                 if moved.name != picture else _("Moved {picture} to {target}.").format(
                     picture=picture, target=target))


def _rename_or_delete(dataset: Path, name: str, count: int) -> None:
    with st.expander(_("Rename or delete {name}").format(name=name)):
        st.text_input(_("New name"), key=f"cb_rename:{name}", max_chars=60,
                      help=_("The class keeps its pictures. Runs trained before keep the old name."))
        st.button(_("Rename"), key=f"cb_renamebtn:{name}", on_click=_rename, args=(dataset, name),
                  help=_("Gives the class the name typed above."))
        if st.session_state.get(KEY_CONFIRM) == name:
            st.warning(_("Delete **{name}** and its {n} picture(s)? This cannot be undone.").format(
                name=md_escape(name), n=count))
            st.button(_("Yes, delete it"), key=f"cb_delyes:{name}", type="primary", on_click=_delete,
                      args=(dataset, name), help=_("Deletes the class folder and every picture in it."))
            st.button(_("Keep it"), key=f"cb_delno:{name}", on_click=_ask_delete, args=(None,),
                      help=_("Nothing is deleted."))
        else:
            st.button(_("Delete {name}").format(name=name), key=f"cb_del:{name}", on_click=_ask_delete, args=(name,),
                      help=_("Asks once more before deleting anything."))


def _ask_delete(name: str | None) -> None:
    st.session_state[KEY_CONFIRM] = name


def _create(dataset: Path) -> None:
    typed = st.session_state.get(KEY_NEW, "")
    with friendly_errors(N_("Adding the class")):
        made = create_class(dataset, typed)
        st.session_state[KEY_NEW] = ""
        st.toast((_("Class '{name}' made (some characters cannot be in a class name, so they were left out). "
                    "Now add its pictures.") if made != typed.strip()
                  else _("Class '{name}' made. Now add its pictures.")).format(name=made))


def _rename(dataset: Path, name: str) -> None:
    with friendly_errors(N_("Renaming the class")):
        made = rename_class(dataset, name, st.session_state.get(f"cb_rename:{name}", ""))
        st.toast(_("'{old}' is now '{new}'.").format(old=name, new=made))


def _delete(dataset: Path, name: str) -> None:
    st.session_state.pop(KEY_CONFIRM, None)
    with friendly_errors(N_("Deleting the class")):
        count = delete_class(dataset, name)
        st.toast(_("Deleted {name} and its {n} picture(s).").format(name=name, n=count))


# ---------------------------------------------------------------------------------------------- use it
def _use_or_download(dataset: Path, classes: dict[str, list[str]], choice: session.DataChoice | None) -> None:
    filled = [c for c, pictures in classes.items() if pictures]
    label = _set_label(str(dataset))
    in_use = choice is not None and Path(choice.path).resolve() == dataset.resolve()
    if in_use:
        st.success(_("**{name}** is your training data: the Train page learns from these classes.").format(
            name=md_escape(label)))
    elif st.button(_("Train on these classes"), key="cb_use", type="primary", disabled=len(filled) < 2,
                   help=_("Makes these classes the pictures the Train page learns from. Needs at least two "
                        "classes with pictures (a few dozen each work best).")):
        session.set_data_choice(session.DataChoice(str(dataset), set_info(str(dataset)).get("label") or label))
    if len(filled) < 2:
        st.caption(_("Training needs at least two classes with pictures in them."))
    st.download_button(_("Download as .zip"), data=lambda: zip_bytes(dataset), file_name=download_name(label),
                       mime="application/zip", key="cb_zip", on_click="ignore",
                       help=_("One folder per class, the layout every tool (and the upload on this page) reads."))
