"""What the prediction endpoint refuses, and how it says so (service/picture_requests.py), without a server."""
import asyncio

import pytest
from conftest import copy_textile

from transfer_core.service.picture_requests import (
    FIELD,
    Limits,
    PictureRequestError,
    decode,
    form_pictures,
    kind_of,
    read_body,
)


def body(chunks: list[bytes], declared: str | None, limits: Limits) -> bytes:
    read: list[bytes] = []

    async def stream():
        for chunk in chunks:
            read.append(chunk)
            yield chunk

    try:
        return asyncio.run(read_body(declared, stream(), limits))
    finally:
        body.chunks_read = len(read)


def refused(call) -> PictureRequestError:
    with pytest.raises(PictureRequestError) as caught:
        call()
    return caught.value


def test_a_body_over_the_limit_is_refused_before_reading_it_when_its_length_is_declared():
    limits = Limits(max_bytes=1000)
    error = refused(lambda: body([b"x" * 600, b"x" * 600], "1200", limits))
    assert error.status == 413 and "at most" in str(error)
    assert body.chunks_read == 0
    # Undeclared (chunked): refused as soon as the limit is passed, not after reading everything.
    error = refused(lambda: body([b"x" * 600] * 5, None, limits))
    assert error.status == 413 and body.chunks_read == 2
    assert body([b"x" * 500, b"x" * 500], "1000", limits) == b"x" * 1000  # at the limit: taken


def test_an_empty_body_is_a_400_that_names_the_field():
    error = refused(lambda: body([], "0", Limits()))
    assert error.status == 400 and f"'{FIELD}'" in str(error)


@pytest.mark.parametrize("content_type, kind", [("image/jpeg", "picture"), ("IMAGE/PNG; q=1", "picture"),
                                                ("multipart/form-data; boundary=x", "form")])
def test_pictures_and_forms_are_recognised(content_type, kind):
    assert kind_of(content_type) == kind


@pytest.mark.parametrize("content_type", [None, "", "text/plain", "application/json", "imagejpeg"])
def test_anything_else_is_a_415_that_says_what_to_send(content_type):
    error = refused(lambda: kind_of(content_type))
    assert error.status == 415 and "image/jpeg" in str(error)


def test_a_real_picture_decodes_and_a_damaged_one_is_named(tmp_path):
    picture = sorted(copy_textile(tmp_path, 1).glob("*/*.jpg"))[0].read_bytes()
    assert decode("a.jpg", picture).mode == "RGB"
    error = refused(lambda: decode("cut.jpg", picture[:200]))
    assert error.status == 415 and "cut.jpg" in str(error) and "damaged" in str(error)
    assert "not an image" in str(refused(lambda: decode(None, b"hello, world")))


def test_a_form_needs_pictures_and_not_too_many():
    limits = Limits(max_pictures=2)
    assert refused(lambda: form_pictures([], limits)).status == 400
    assert refused(lambda: form_pictures([("a", b"1")] * 3, limits)).status == 413
    assert form_pictures([("a", b"1")] * 2, limits) == [("a", b"1")] * 2
