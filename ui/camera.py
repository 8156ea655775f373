"""Before the camera box: does this browser have a camera it may use here? Only the browser knows, so a
few lines of JavaScript ask it and say so in words, instead of the browser's permission text over an
empty box."""
from __future__ import annotations

import json

import streamlit.components.v1 as components

from transfer_core.core.i18n import N_, _, sentences

NO_CAMERA = N_("No camera found on this computer.")
NOT_ALLOWED = N_("This browser does not let the page use a camera here: it must be opened as https:// or on "
                 "this computer's own address (localhost).")
UPLOAD_INSTEAD = N_("Upload a picture above instead.")

_SCRIPT = """
<div id="msg" style="font-family: sans-serif; font-size: 15px; color: #9c4400"></div>
<script>
const say = (text) => { document.getElementById("msg").textContent = text; };
if (!navigator.mediaDevices || !navigator.mediaDevices.enumerateDevices) {
  say(%(not_allowed)s);
} else {
  navigator.mediaDevices.enumerateDevices()
    .then((devices) => { if (!devices.some((d) => d.kind === "videoinput")) say(%(no_camera)s); })
    .catch(() => say(%(no_camera)s));
}
</script>
"""


def camera_check(instead: str = UPLOAD_INSTEAD) -> None:
    """`instead`: what the person can do without a camera on this page."""
    components.html(_SCRIPT % {"no_camera": json.dumps(sentences(_(NO_CAMERA), _(instead))),
                               "not_allowed": json.dumps(sentences(_(NOT_ALLOWED), _(instead)))}, height=48)
