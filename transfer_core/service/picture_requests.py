"""The pictures an HTTP request carries: a picture's raw bytes (Content-Type image/*) or a multipart form
(field `file`, one or several). Whatever is wrong with a request (empty, too big, not a picture) becomes a
PictureRequestError with a status code and a plain message, so a caller never sees a server error for it.

Pure: no web framework here, so the limits and messages are tested without a server (serving.py wires it).
"""
from __future__ import annotations

import io
from collections.abc import AsyncIterator
from dataclasses import dataclass

from PIL import Image

from transfer_core.core.i18n import _, retranslate
from transfer_core.data.datafiles import BadImage, _human, load_rgb

FIELD = "file"  # the multipart field that carries the pictures


@dataclass(frozen=True)
class Limits:
    max_bytes: int = 10 * 1024 * 1024  # a whole request: a phone photo is 2-6 MB
    max_pictures: int = 32  # in one multipart request


class PictureRequestError(ValueError):
    """A request the server cannot answer as sent; the message says what to change."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


async def read_body(declared_length: str | None, chunks: AsyncIterator[bytes], limits: Limits) -> bytes:
    """The request's body, refused as soon as it is known to be over the limit (before reading it all when
    the client says its length)."""
    if declared_length and declared_length.isdigit() and int(declared_length) > limits.max_bytes:
        raise _too_big(int(declared_length), limits)
    body = bytearray()
    async for chunk in chunks:
        body += chunk
        if len(body) > limits.max_bytes:
            raise _too_big(len(body), limits)
    if not body:
        raise PictureRequestError(400, _("The request is empty: send a picture's bytes (Content-Type image/jpeg, "
                                         "image/png, ...) or a form with the pictures in the field '{field}'.")
                                  .format(field=FIELD))
    return bytes(body)


def _too_big(size: int, limits: Limits) -> PictureRequestError:
    return PictureRequestError(413, _("The request is {size}; this server takes at most {most} at once. Send a "
                                      "smaller picture, or fewer pictures per request.").format(
        size=_human(size), most=_human(limits.max_bytes)))


def kind_of(content_type: str | None) -> str:
    """'picture' for image/*, 'form' for multipart/form-data; anything else is refused in words."""
    media = (content_type or "").split(";")[0].strip().lower()
    if media.startswith("image/"):
        return "picture"
    if media == "multipart/form-data":
        return "form"
    raise PictureRequestError(415, _("Send a picture (Content-Type image/jpeg, image/png, ...) or a multipart "
                                     "form with the pictures in the field '{field}', not '{type}'.").format(
        field=FIELD, type=media or _("no Content-Type")))


def decode(name: str | None, data: bytes) -> Image.Image:
    """One picture as the app reads it (upright 8-bit RGB), or a 415 naming the picture and the reason."""
    try:
        return load_rgb(io.BytesIO(data))
    except BadImage as exc:
        raise PictureRequestError(415, _("{name} cannot be used as a picture: {reason}.").format(
            name=name or _("The request's body"), reason=retranslate(str(exc)))) from None


def form_pictures(uploads: list[tuple[str | None, bytes]], limits: Limits) -> list[tuple[str | None, bytes]]:
    """The form's pictures (name, bytes), checked for count; an empty form or one without `file` is refused."""
    if not uploads:
        raise PictureRequestError(400, _("The form has no pictures: put them in the field '{field}'.").format(
            field=FIELD))
    if len(uploads) > limits.max_pictures:
        raise PictureRequestError(413, _("The form has {n} pictures; this server takes at most {most} per "
                                         "request.").format(n=len(uploads), most=limits.max_pictures))
    return uploads
