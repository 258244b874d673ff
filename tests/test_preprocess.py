"""Preprocessing, step by step, on generated images; and the input contract's deskew step."""

import numpy as np
import pytest
import torch
from PIL import Image

from app.errors import NoInkError
from app.inference.decode import gray_pixels, open_upload
from app.inference.preprocess import (
    DIGIT_BOX_SIDE,
    MNIST_MASS_CENTRE,
    MNIST_STROKE_BAND,
    has_light_background,
    ink_mask,
    ink_strokes,
    is_mnist_framed,
    remove_background,
    shrink_by_whole_factor,
    stroke_width,
    to_digit_pixels,
)
from mnist_core.contract import (
    DESKEW,
    IMAGE_SIDE,
    INPUT_SIZE,
    MAX_SKEW,
    describe_contract,
    deskew,
    input_steps,
    network_inputs,
    pixels_to_input,
)
from tests.helpers import drawn_digit, encode, png_of, shaded_photo


def _upload(data: bytes) -> np.ndarray:
    """What the service makes of an uploaded file: decode, then preprocess."""
    return to_digit_pixels(gray_pixels(open_upload(data, 1 << 24)))


def _box(digit: np.ndarray) -> tuple[int, int, int, int]:
    """(top, left, height, width) of the nonzero pixels."""
    rows, cols = np.flatnonzero(digit.any(axis=1)), np.flatnonzero(digit.any(axis=0))
    return int(rows[0]), int(cols[0]), int(rows[-1] - rows[0] + 1), int(cols[-1] - cols[0] + 1)


def _mass_centre(digit: np.ndarray) -> tuple[float, float]:
    mass = digit.astype(np.float64)
    return (
        float(mass.sum(axis=1) @ np.arange(IMAGE_SIDE)) / mass.sum(),
        float(mass.sum(axis=0) @ np.arange(IMAGE_SIDE)) / mass.sum(),
    )


def _assert_framed_like_mnist(digit: np.ndarray) -> None:
    _, _, height, width = _box(digit)
    assert max(height, width) in (DIGIT_BOX_SIDE - 1, DIGIT_BOX_SIDE)
    assert all(abs(centre - MNIST_MASS_CENTRE) <= 0.5 for centre in _mass_centre(digit))
    assert is_mnist_framed(digit)


def _correlation(first: np.ndarray, second: np.ndarray) -> float:
    return float(np.corrcoef(first.ravel().astype(np.float64), second.ravel().astype(np.float64))[0, 1])


# --- A 28x28 upload: used pixel for pixel only when it is already framed like MNIST ---


def test_every_mnist_test_digit_is_framed_and_passes_unchanged(mnist_test_split):
    digits = mnist_test_split.images.numpy()
    assert all(is_mnist_framed(digit) for digit in digits)
    for digit in digits[:200]:
        assert np.array_equal(_upload(png_of(digit)), digit)


def test_an_mnist_digit_dark_on_light_passes_as_its_exact_inverse(mnist_test_split):
    digit = mnist_test_split.images[0].numpy()
    assert np.array_equal(_upload(png_of(255 - digit)), digit)


def test_a_small_off_centre_28x28_digit_is_reframed(mnist_test_split):
    digit = mnist_test_split.images[0].numpy()
    small = np.asarray(Image.fromarray(digit[4:24, 4:24]).resize((10, 10), Image.Resampling.BOX))
    canvas = np.zeros((IMAGE_SIDE, IMAGE_SIDE), dtype=np.uint8)
    canvas[16:26, 1:11] = small  # bottom left corner
    assert not is_mnist_framed(canvas)
    reframed = _upload(png_of(canvas))
    _assert_framed_like_mnist(reframed)
    assert _correlation(reframed, digit) > 0.7


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (lambda digit: np.roll(digit, 3, axis=1), "centre of mass 3 px off"),
        (lambda digit: np.maximum(digit, 12), "grey background"),
        (lambda digit: (digit * 0.5).astype(np.uint8), "faint ink"),
        (lambda digit: np.asarray(Image.fromarray(digit).resize((14, 14)).crop((-7, -7, 21, 21))), "box 10 px"),
    ],
    ids=["off-centre", "grey-background", "faint", "small"],
)
def test_a_28x28_image_not_framed_like_mnist_is_normalised(mnist_test_split, change, reason):
    changed = change(mnist_test_split.images[0].numpy())
    assert not is_mnist_framed(changed), reason
    normalised = _upload(png_of(changed))
    assert not np.array_equal(normalised, changed)
    _assert_framed_like_mnist(normalised)


def test_normalising_is_idempotent(mnist_test_split):
    """An output of the normalisation, uploaded again, is framed and comes back unchanged."""
    for digit in mnist_test_split.images[:20].numpy():
        big = np.asarray(Image.fromarray(255 - digit).resize((200, 200), Image.Resampling.BILINEAR))
        once = _upload(png_of(big))
        assert np.array_equal(_upload(png_of(once)), once)


# --- Uneven lighting and paper: the background is removed before deciding what is ink ---


def test_background_removal_keeps_the_ink_and_drops_a_lighting_gradient():
    gradient = np.tile(np.linspace(20, 140, 160, dtype=np.float32), (120, 1))
    image = gradient.copy()
    image[40:80, 60:70] += 100  # a bright stroke on a background three times brighter at the right
    ink = remove_background(np.clip(image, 0, 255).astype(np.uint8))
    assert int(ink[:, :50].max()) <= 3
    assert int(ink[:, 80:].max()) <= 3
    assert int(ink[45:75, 62:68].min()) >= 95


def test_shaded_paper_without_a_digit_has_no_ink():
    paper = np.tile(np.linspace(230, 90, 400, dtype=np.float32), (300, 1)).astype(np.uint8)
    with pytest.raises(NoInkError, match="no digit found"):
        _upload(encode(Image.fromarray(paper)))


def test_a_shaded_photo_is_cropped_to_the_digit(mnist_test_split):
    digit = mnist_test_split.images[0].numpy()
    gray = gray_pixels(open_upload(shaded_photo(digit), 1 << 24))
    assert has_light_background(gray)
    # The shaded edge of the page is darker than mid-grey: a fixed threshold would take it for
    # ink. The ink mask must lie within the digit's box.
    assert gray[:, -60:].mean() < 127
    work = 255 - shrink_by_whole_factor(gray, 160)
    rows, cols = np.nonzero(ink_mask(remove_background(work)))
    scale = work.shape[1] / gray.shape[1]
    digit_top, digit_left, digit_side = 120 * scale, 213 * scale, 240 * scale  # where shaded_photo puts it
    assert digit_top <= rows.min() < rows.max() <= digit_top + digit_side
    assert digit_left <= cols.min() < cols.max() <= digit_left + digit_side
    normalised = to_digit_pixels(gray)
    _assert_framed_like_mnist(normalised)
    assert _correlation(normalised, digit) > 0.8


# --- Stroke width: a fine pen and a fat marker both reach MNIST's range ---


@pytest.mark.parametrize("pen_width", [1, 2, 60], ids=["1px-pen", "2px-pen", "60px-marker"])
@pytest.mark.parametrize("digit", [1, 7])
def test_strokes_end_in_mnists_width_range(digit, pen_width):
    drawing = drawn_digit(digit, pen_width=pen_width)
    drawn_width = stroke_width(ink_strokes(np.asarray(drawing))[0])
    assert not MNIST_STROKE_BAND[0] <= drawn_width <= MNIST_STROKE_BAND[1]
    normalised = _upload(encode(drawing))
    _assert_framed_like_mnist(normalised)
    assert MNIST_STROKE_BAND[0] <= stroke_width(ink_strokes(normalised)[0]) <= MNIST_STROKE_BAND[1]


def test_mnist_stroke_widths_are_left_alone(mnist_test_split):
    """An MNIST digit drawn large keeps its own stroke width (within MNIST's band nothing changes)."""
    digit = mnist_test_split.images[0].numpy()
    big = np.asarray(Image.fromarray(255 - digit).resize((280, 280), Image.Resampling.BILINEAR))
    before = stroke_width(ink_strokes(digit)[0])
    after = stroke_width(ink_strokes(_upload(png_of(big)))[0])
    assert MNIST_STROKE_BAND[0] <= before <= MNIST_STROKE_BAND[1]
    assert after == pytest.approx(before, abs=0.3)


def test_a_thin_pen_drawing_on_a_28x28_canvas_is_reframed_and_thickened():
    canvas = np.full((IMAGE_SIDE, IMAGE_SIDE), 255, dtype=np.uint8)
    canvas[3:17, 18] = 0  # a "1": one pixel wide, 14 tall, near the top right corner
    normalised = _upload(png_of(canvas))
    _assert_framed_like_mnist(normalised)
    assert MNIST_STROKE_BAND[0] <= stroke_width(ink_strokes(normalised)[0]) <= MNIST_STROKE_BAND[1]


# --- Blank images ---


@pytest.mark.parametrize("size", [1, 28, 100])
@pytest.mark.parametrize("shade", [0, 128, 255])
def test_blank_images_have_no_digit(size, shade):
    with pytest.raises(NoInkError, match="no digit found"):
        to_digit_pixels(np.full((size, size), shade, dtype=np.uint8))


# --- The input contract's deskew step (mnist_core), shared by training and the service ---


def _slanted_bar(slope: float) -> np.ndarray:
    """A vertical bar 2 px wide sheared so each row down moves it `slope` px to the left."""
    image = np.zeros((IMAGE_SIDE, IMAGE_SIDE), dtype=np.float32)
    for row in range(4, 24):
        column = round(14 + slope * (14 - row))
        image[row, column - 1 : column + 1] = 1.0
    return image.reshape(1, INPUT_SIZE)


def _slope(image: np.ndarray) -> float:
    """Columns moved per row down, fitted through each row's centre of ink."""
    rows = np.flatnonzero(image.sum(axis=1))
    centres = image[rows] @ np.arange(IMAGE_SIDE) / image[rows].sum(axis=1)
    return float(np.polyfit(rows, centres, 1)[0])


def test_deskew_stands_a_slanted_stroke_upright():
    slanted = _slanted_bar(0.5)
    upright = deskew(slanted)
    assert _slope(slanted.reshape(IMAGE_SIDE, IMAGE_SIDE)) == pytest.approx(-0.5, abs=0.02)
    assert abs(_slope(upright.reshape(IMAGE_SIDE, IMAGE_SIDE))) < 0.02
    assert upright.sum() == pytest.approx(slanted.sum(), rel=0.02)


def test_deskew_gives_the_same_bits_alone_or_in_a_batch(mnist_test_split):
    inputs = mnist_test_split.images[:300].numpy().reshape(-1, INPUT_SIZE).astype(np.float32) / 255
    batch = deskew(inputs)
    assert batch.dtype == np.float32
    assert np.array_equal(batch, np.concatenate([deskew(inputs[index : index + 1]) for index in range(300)]))


def _deskewed_row_by_row(image: np.ndarray) -> np.ndarray:
    """The contract's words, one row at a time with np.interp: each row read `skew x (row - centre
    row)` columns along, zeros beyond the image, skew the covariance of row and column over the
    variance of row, clamped to MAX_SKEW."""
    rows, columns = np.indices(image.shape)
    mass = image.sum()
    centre_row, centre_column = (rows * image).sum() / mass, (columns * image).sum() / mass
    covariance = ((rows - centre_row) * (columns - centre_column) * image).sum()
    skew = np.clip(covariance / ((rows - centre_row) ** 2 * image).sum(), -MAX_SKEW, MAX_SKEW)
    framed = np.arange(-1, IMAGE_SIDE + 1)
    return np.stack([
        np.interp(np.arange(IMAGE_SIDE) + skew * (row - centre_row), framed, np.pad(image[row], 1), left=0, right=0)
        for row in range(IMAGE_SIDE)
    ])  # fmt: skip


def _corner_strokes() -> np.ndarray:
    """Short diagonals in each corner: slants the clamp stops, centred on an edge row, so rows far
    from the centre shift by most of the image's width."""
    strokes = np.zeros((4, IMAGE_SIDE, IMAGE_SIDE), dtype=np.float32)
    for step in range(4):
        strokes[0, step, step] = strokes[1, step, IMAGE_SIDE - 1 - step] = 1.0
        strokes[2, IMAGE_SIDE - 1 - step, step] = strokes[3, IMAGE_SIDE - 1 - step, IMAGE_SIDE - 1 - step] = 1.0
    return strokes


def test_deskew_does_what_the_contract_says_row_by_row(mnist_test_split):
    digits = mnist_test_split.images[:200].numpy().astype(np.float32) / 255
    images = np.concatenate([digits, _corner_strokes()])
    expected = np.stack([_deskewed_row_by_row(image.astype(np.float64)) for image in images])
    served = deskew(images.reshape(-1, INPUT_SIZE)).reshape(images.shape)
    np.testing.assert_allclose(served, expected, rtol=0, atol=1e-5)


def test_deskew_leaves_blank_and_upright_inputs_alone():
    assert np.array_equal(deskew(np.zeros((2, INPUT_SIZE), dtype=np.float32)), np.zeros((2, INPUT_SIZE)))
    upright = _slanted_bar(0.0)
    assert np.array_equal(deskew(upright), upright)


def test_a_contract_without_steps_is_the_identity_and_unknown_steps_are_refused():
    inputs = np.random.default_rng(0).random((3, INPUT_SIZE), dtype=np.float32)
    assert network_inputs(inputs, describe_contract(())) is inputs
    assert network_inputs(inputs, None) is inputs
    contract = describe_contract((DESKEW,))
    assert input_steps(contract) == (DESKEW,)
    assert np.array_equal(network_inputs(inputs, contract), deskew(inputs))
    with pytest.raises(ValueError, match="unknown input contract step"):
        network_inputs(inputs, {"steps": ["sharpen"]})


def test_pixels_to_input_divides_as_torch_does_bit_for_bit():
    """The same bits as torch's float32 division (ToTensor's), so training and serving agree exactly."""
    every_shade = np.resize(np.arange(256, dtype=np.uint8), (2, IMAGE_SIDE, IMAGE_SIDE))
    by_torch = torch.from_numpy(every_shade).reshape(2, -1).to(torch.float32).div(255).numpy()
    assert np.array_equal(pixels_to_input(every_shade), by_torch)
    with pytest.raises(ValueError, match="expected uint8 pixels"):
        pixels_to_input(every_shade.astype(np.float32))
