"""Image input: every awkward mode decodes to upright RGB; every bad input names itself and the reason."""

import io

import numpy as np
import pytest
from helpers import image_bytes
from PIL import Image

from i2a_core.io import images
from i2a_core.io.images import ImageError, ImageLimits, decode_image, load_image


@pytest.mark.parametrize("mode,fmt", [("L", "PNG"), ("CMYK", "JPEG"), ("RGBA", "PNG"), ("LA", "PNG"),
                                      ("P", "PNG"), ("P", "GIF"), ("RGB", "WEBP"), ("1", "BMP")])
def test_modes_become_rgb(mode, fmt):
    image = decode_image(image_bytes(mode, fmt=fmt), f"x.{fmt.lower()}".replace("jpeg", "jpg"))
    assert image.mode == "RGB" and image.size == (48, 32)


def test_alpha_composites_over_white():
    buffer = io.BytesIO()
    Image.new("RGBA", (4, 4), (0, 0, 0, 0)).save(buffer, "PNG")
    assert decode_image(buffer.getvalue(), "clear.png").getpixel((0, 0)) == (255, 255, 255)


def test_palette_with_transparency_composites():
    image = Image.new("P", (4, 4), 0)
    image.putpalette([10, 20, 30] * 256)
    buffer = io.BytesIO()
    image.save(buffer, "PNG", transparency=0)
    assert decode_image(buffer.getvalue(), "p.png").getpixel((0, 0)) == (255, 255, 255)


def test_16_bit_keeps_its_range():
    pixels = np.full((8, 8), 65535, np.uint16)
    pixels[0, 0] = 0
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "PNG")
    image = decode_image(buffer.getvalue(), "deep.png")
    assert image.getpixel((1, 1)) == (255, 255, 255) and image.getpixel((0, 0)) == (0, 0, 0)


def test_exif_orientation_is_applied():
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    data = image_bytes(size=(40, 20), fmt="JPEG", exif=exif.tobytes())
    assert decode_image(data, "rotated.jpg").size == (20, 40)


@pytest.mark.parametrize("data,name,reason", [
    (b"", "empty.png", "empty file"),
    (b"<!DOCTYPE html><html>", "page.jpg", "not an image (HTML, 21 bytes)"),
    (image_bytes(fmt="JPEG")[:300], "cut.jpg", "truncated or corrupt"),
    (image_bytes(fmt="PNG")[:-200], "cut.png", "truncated or corrupt PNG"),
])
def test_bad_bytes_get_one_clear_line(data, name, reason):
    with pytest.raises(ImageError) as error:
        decode_image(data, name)
    message = str(error.value)
    assert message.startswith(f"{name}: ") and reason in message and "\n" not in message


def test_lying_extension_decodes_with_a_warning():
    image, warning = images.decode_checked(image_bytes(fmt="WEBP"), "liar.jpg")
    assert image.size == (48, 32) and warning == "extension says JPEG but the content is WEBP"
    assert images.decode_checked(image_bytes(fmt="PNG"), "honest.png")[1] == ""


def test_pixel_limit_stops_decompression_bombs():
    with pytest.raises(ImageError, match=r"bomb.png: 48x32 pixels, over the 1,000-pixel limit"):
        decode_image(image_bytes(), "bomb.png", ImageLimits(max_pixels=1000))


def test_missing_file_and_bad_scheme(tmp_path):
    with pytest.raises(ImageError, match="no such file"):
        load_image(str(tmp_path / "nope.png"))
    with pytest.raises(ImageError, match="only http://, https://"):
        load_image("ftp://example.org/x.png")


LOOPBACK = ImageLimits(allow_private_urls=True)


def test_urls(http_root):
    root, base = http_root
    (root / "ok.png").write_bytes(image_bytes())
    assert load_image(f"{base}/ok.png", LOOPBACK).size == (48, 32)
    with pytest.raises(ImageError, match=r"/missing.png: HTTP 404 Not Found$"):
        load_image(f"{base}/missing.png", LOOPBACK)
    with pytest.raises(ImageError, match="timed out after 1 s"):
        load_image(f"{base}/slow.png", ImageLimits(timeout_s=1.0, allow_private_urls=True))
    with pytest.raises(ImageError, match="over the 100-byte limit"):
        load_image(f"{base}/ok.png", ImageLimits(max_bytes=100, allow_private_urls=True))


def test_url_content_is_not_held_to_its_extension(http_root):
    root, base = http_root
    (root / "served.jpg").write_bytes(image_bytes(fmt="PNG"))  # hosts often mislabel; the bytes decide
    image, warning = images.load_checked(f"{base}/served.jpg", LOOPBACK)
    assert image.mode == "RGB" and warning == ""


def test_max_pixels_is_honoured_above_pillows_own_bomb_limit(monkeypatch):
    # Pillow refuses images over twice Image.MAX_IMAGE_PIXELS (179 million by default) whatever --max-pixels
    # says; a small Pillow limit shows the same with a small image.
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 500)
    data = image_bytes(size=(48, 32))  # 1,536 pixels: over Pillow's error threshold of 1,000
    assert decode_image(data, "big.png", ImageLimits(max_pixels=2000)).size == (48, 32)  # before: too_large
    with pytest.raises(ImageError, match="over the 1,000-pixel limit"):  # our own limit still holds
        decode_image(data, "big.png", ImageLimits(max_pixels=1000))


def test_avif_and_heic_are_image_files_decoded_or_refused_clearly():
    from PIL import features

    assert {".avif", ".heic", ".heif"} <= images.IMAGE_EXTENSIONS  # before: skipped silently by listings
    if features.check("avif"):
        image, warning = images.decode_checked(image_bytes(fmt="AVIF"), "photo.avif")
        assert image.size == (48, 32) and warning == ""
    # An iPhone HEIC: the ISO base media `ftyp` box names its brands. This Pillow has no HEVC decoder.
    heic = b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + b"\x00" * 200
    generic = b"\x00\x00\x00\x18ftypmif1\x00\x00\x00\x00mif1heic" + b"\x00" * 200  # HEIC under a generic brand
    for data in (heic, generic):
        with pytest.raises(ImageError, match=r"photo.heic: HEIC images are not supported here") as error:
            decode_image(data, "photo.heic")
        assert error.value.kind == "unsupported_format"  # before: "not an image (binary data, 224 bytes)"


def test_an_error_naming_an_input_is_one_console_line():
    with pytest.raises(ImageError) as error:
        decode_image(b"", "evil\nsonify: all done\r\x1b[2K.png")
    assert str(error.value) == "evil\\nsonify: all done\\r\\x1b[2K.png: empty file"


def test_an_object_store_that_stays_away_is_a_transient_error_of_that_input(s3_bucket, s3_proxy, monkeypatch):
    from i2a_core.errors import is_transient
    from i2a_core.io import storage

    storage.write_bytes_atomic(f"{s3_bucket}/a.png", image_bytes())
    assert load_image(f"{s3_bucket}/a.png").size == (48, 32)
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")  # give up at once: the outage outlasts every retry
    s3_proxy.outage(60.0)
    with pytest.raises(ImageError, match="a.png: cannot read: storage unavailable") as error:
        load_image(f"{s3_bucket}/a.png")  # before: botocore's EndpointConnectionError, which stopped the job
    assert error.value.kind == "storage_unavailable" and is_transient(error.value.kind)
