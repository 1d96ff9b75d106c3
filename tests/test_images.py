"""Safe decoding: every odd image becomes upright 8-bit RGB, every bad one a clear error naming the file."""


import numpy as np
import pytest
from PIL import Image

from conftest import DEMO
from lookalike import ImageError, load_image
from lookalike.images import fit


def save(img: Image.Image, path, **kw):
    img.save(path, **kw)
    return path


def test_real_photo_decodes_to_rgb():
    photo = next((DEMO / "shoes").glob("*.jpg"))
    img = load_image(photo)
    assert img.mode == "RGB" and img.size[0] > 100


def test_cmyk_jpeg(tmp_path):
    path = save(Image.new("CMYK", (40, 30), (0, 255, 255, 0)), tmp_path / "cmyk.jpg")  # pure red in CMYK
    img = load_image(path)
    assert img.mode == "RGB"
    r, g, b = img.getpixel((20, 15))
    assert r > 200 and g < 60 and b < 60


def test_16_bit_greyscale_is_scaled_not_clipped(tmp_path):
    arr = np.full((20, 20), 32768, dtype=np.uint16)  # mid grey in 16 bits
    path = save(Image.fromarray(arr), tmp_path / "grey16.png")
    assert Image.open(path).mode.startswith("I")
    r, g, b = load_image(path).getpixel((5, 5))
    assert 120 <= r <= 135 and r == g == b


def test_alpha_is_composited_on_white(tmp_path):
    img = Image.new("RGBA", (20, 20), (0, 0, 0, 0))
    img.paste((200, 0, 0, 255), (5, 5, 15, 15))
    out = load_image(save(img, tmp_path / "alpha.png"))
    assert out.getpixel((0, 0)) == (255, 255, 255)
    assert out.getpixel((10, 10)) == (200, 0, 0)


@pytest.mark.parametrize("mode", ["LA", "P", "L", "1"])
def test_other_modes(tmp_path, mode):
    img = Image.new("RGBA", (16, 16), (10, 120, 30, 255)).convert(mode)
    out = load_image(save(img, tmp_path / f"x_{mode}.png"))
    assert out.mode == "RGB" and out.size == (16, 16)


def test_palette_with_transparency(tmp_path):
    img = Image.new("P", (10, 10), 0)
    img.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    img.paste(1, (0, 0, 5, 10))
    path = save(img, tmp_path / "p.png", transparency=0)
    out = load_image(path)
    assert out.getpixel((8, 5)) == (255, 255, 255) and out.getpixel((2, 5)) == (255, 0, 0)


def test_exif_rotation_is_applied(tmp_path):
    img = Image.new("RGB", (40, 20), "white")
    img.paste((255, 0, 0), (0, 0, 10, 20))  # red stripe on the left
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    path = save(img, tmp_path / "rot.jpg", exif=exif, quality=95)
    out = load_image(path)
    assert out.size == (20, 40)
    assert out.getpixel((10, 2))[0] > 200 and out.getpixel((10, 2))[1] < 80  # red now on top


@pytest.mark.parametrize("fmt", ["GIF", "WEBP", "BMP"])
def test_other_formats(tmp_path, fmt):
    path = save(Image.new("RGB", (12, 12), (0, 0, 255)), tmp_path / f"x.{fmt.lower()}", format=fmt)
    assert load_image(path).getpixel((6, 6))[2] > 200


def test_truncated_jpeg_names_the_file(tmp_path):
    data = (next((DEMO / "hat").glob("*.jpg"))).read_bytes()
    path = tmp_path / "cut.jpg"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageError, match="cut.jpg"):
        load_image(path)


@pytest.mark.parametrize("payload,message", [(b"", "empty"), (b"hello, I am text", "not an image"),
                                             (b"\x89PNG\r\n\x1a\n" + b"\0" * 40, "cut|decode|not an image")])
def test_non_images(tmp_path, payload, message):
    path = tmp_path / "bad.jpg"
    path.write_bytes(payload)
    with pytest.raises(ImageError, match=message):
        load_image(path)
    with pytest.raises(ImageError):
        load_image(payload)


def test_missing_file(tmp_path):
    with pytest.raises(ImageError, match="no such file"):
        load_image(tmp_path / "nope.jpg")


def test_pixel_limit_refuses_huge_images(tmp_path):
    path = save(Image.new("1", (8000, 8000)), tmp_path / "huge.png")  # 64 MP, a few KB on disk
    with pytest.raises(ImageError, match="over the limit"):
        load_image(path)
    with pytest.raises(ImageError, match="over the limit"):
        load_image(path.read_bytes(), max_pixels=1000)


def test_draft_keeps_at_least_the_requested_size():
    photo = next((DEMO / "dress").glob("*.jpg"))
    small = load_image(photo, draft_size=(64, 64))
    assert min(small.size) >= 64 and small.size[0] <= load_image(photo).size[0]


@pytest.mark.parametrize("policy", ["pad", "stretch", "crop"])
def test_fit_gives_exact_size(policy):
    img = Image.new("RGB", (300, 100), (0, 0, 0))
    out = fit(img, (60, 80), policy)
    assert out.size == (60, 80)
    if policy == "pad":
        assert out.getpixel((30, 0)) == (255, 255, 255) and out.getpixel((30, 40)) == (0, 0, 0)


def test_files_that_are_not_photos_are_refused_before_reading(tmp_path):
    """A FIFO, a link to a device and a huge sparse file named like photos: one-line errors, nothing read or hung."""
    import os

    from lookalike.errors import ImageError
    from lookalike.images import MAX_FILE_BYTES, load_image
    from lookalike.models import load_model
    from lookalike.models.pipeline import embed_batch

    fifo = tmp_path / "pipe.jpg"
    os.mkfifo(fifo)
    zero = tmp_path / "zero.jpg"
    zero.symlink_to("/dev/zero")
    sparse = tmp_path / "sparse.jpg"
    with open(sparse, "wb") as f:
        f.truncate(MAX_FILE_BYTES + 1)
    for path, reason in [(fifo, "not a regular file"), (zero, "not a regular file"), (sparse, "over the limit")]:
        with pytest.raises(ImageError, match=reason):
            load_image(path)
    result = embed_batch(load_model("classic"), [(p.name, p) for p in (fifo, zero, sparse)])
    assert [k for k, _ in result.errors] == ["pipe.jpg", "zero.jpg", "sparse.jpg"] and not result.keys
