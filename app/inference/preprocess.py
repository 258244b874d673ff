"""Normalising any decoded image into the 28x28 white-on-black digit the network was trained on.

A 28x28 image that already is an MNIST-framed digit (white on black, ink box 19 to 21 px on its
long side, centred by mass) is used pixel for pixel, so an MNIST digit reaches the network
exactly as in training. Every other image is normalised the way the MNIST digits themselves
were made, after undoing what real inputs add:

1. shrunk (area averaging) to at most 160 px on its long side, inverted when its background is
   light;
2. the background estimated (a morphological opening of a coarse copy: it keeps the lighting
   and removes the strokes) and subtracted, so shading and paper grain are not ink;
3. the ink thresholded (Otsu) and cleaned of specks (connected components), then cropped;
4. its strokes thickened or thinned towards MNIST's own width (distance transforms);
5. scaled with area averaging to fit a 20x20 box keeping its aspect ratio and centred by centre
   of mass in a 28x28 frame, where MNIST puts it.

OpenCV (opencv-python-headless) does the image operations: each step is one call into C++ on the
whole image, an order of magnitude faster in total than scipy.ndimage's equivalents when measured,
with a true area-averaging resize and Otsu's threshold, which scipy lacks.
"""

import cv2
import numpy as np

from app.errors import NoInkError
from mnist_core.contract import IMAGE_SIDE

DIGIT_BOX_SIDE = 20
# MNIST centres by mass, rounding to whole pixels: every training and test digit has its centre
# of mass at row and column index 13.5 to 14.5 (measured), so the target is index 14.
MNIST_MASS_CENTRE = 14.0
# What makes a 28x28 upload MNIST-framed. Measured on all 70,000 MNIST digits: the box of their
# nonzero pixels is 19 or 20 px on its long side, the centre of mass within 0.52 px of index 14
# and the brightest pixel 254 or 255. The margins below let every one of them through.
FRAMED_BOX_SIDES = (19, 21)
FRAMED_CENTRE_TOLERANCE = 1.0
FRAMED_MIN_PEAK = 224

# MNIST's stroke width in pixels of the 28x28 frame, measured once with this module's own
# `stroke_width(ink_strokes(digit)[0])` over the 60,000 training digits: median 2.45, 10th to 90th
# percentile 1.75 to 3.46. Strokes outside that band are brought to the median; those inside keep
# their own width (always redrawing them cost accuracy: see the README).
MNIST_STROKE_WIDTH = 2.45
MNIST_STROKE_BAND = (1.75, 3.46)

# Fewer grey levels than this between background and ink means there is no digit to read.
MIN_INK_CONTRAST = 32
# Larger images are first shrunk to this long side: plenty for a 20 px digit, and it bounds the
# cost of every later step.
WORK_SIDE = 160
# The background is estimated on a copy at most this small, with an opening this share of its
# side: wider than any stroke of a digit that fills the frame, narrower than lighting changes.
COARSE_SIDE = 32
COARSE_OPENING_SHARE = 0.4
# A piece of ink smaller than this share of the largest piece is a speck of dust or noise.
MIN_PIECE_SHARE = 0.05
# Strokes are measured and redrawn on a crop at least this large (4x the 20 px box).
STROKE_CANVAS_SIDE = 80

_NEIGHBOURHOOD = np.ones((3, 3), np.uint8)


def to_digit_pixels(gray: np.ndarray) -> np.ndarray:
    """An 8-bit grayscale picture of any size and polarity -> uint8 array (28, 28), white digit on black."""
    if gray.shape == (IMAGE_SIDE, IMAGE_SIDE):
        candidate = 255 - gray if has_light_background(gray) else gray
        if is_mnist_framed(candidate):
            return candidate
    return normalise_like_mnist(gray)


def _border(gray: np.ndarray) -> np.ndarray:
    return np.concatenate((gray[0], gray[-1], gray[1:-1, 0], gray[1:-1, -1]))


def has_light_background(gray: np.ndarray) -> bool:
    """A dark digit on light paper: most of the frame's border is nearer the lightest shade.

    Comparing with the image's own mid-grey rather than 127 keeps this right for shaded paper
    whose darker side is below 127 while the ink is darker still.
    """
    darkest, lightest, _, _ = cv2.minMaxLoc(gray)
    border = _border(gray)
    return np.count_nonzero(border > (darkest + lightest) / 2) * 2 > border.size


def is_mnist_framed(gray: np.ndarray) -> bool:
    """Whether a white-on-black 28x28 image is framed as MNIST frames its digits.

    The ink box is taken over every nonzero pixel, so any grey background (scanner noise, JPEG
    artefacts, shaded paper) fails the check and goes through the normalisation instead.
    """
    _, peak, _, _ = cv2.minMaxLoc(gray)
    if peak < FRAMED_MIN_PEAK:
        return False
    _, _, width, height = cv2.boundingRect(gray)
    if not FRAMED_BOX_SIDES[0] <= max(width, height) <= FRAMED_BOX_SIDES[1]:
        return False
    moments = cv2.moments(gray)
    # cv2's moments put pixel i at coordinate i, as the MNIST measurement above does.
    centre_col, centre_row = moments["m10"] / moments["m00"], moments["m01"] / moments["m00"]
    return max(abs(centre_row - MNIST_MASS_CENTRE), abs(centre_col - MNIST_MASS_CENTRE)) <= FRAMED_CENTRE_TOLERANCE


def normalise_like_mnist(gray: np.ndarray) -> np.ndarray:
    """Image of any size and polarity -> 28x28 digit: background removed, cropped, strokes
    brought to MNIST's width, fitted to 20x20 and centred by mass."""
    strokes, resolved = ink_strokes(gray)
    return _centre_by_mass(_fit_box(adjust_stroke_width(strokes, resolved)))


def ink_strokes(gray: np.ndarray) -> tuple[np.ndarray, bool]:
    """The digit's ink as coverage (float32, 0..1) cropped to it, at least 80 px on its long side,
    and whether the image resolved it that finely (False when the crop had to be upscaled)."""
    gray = shrink_by_whole_factor(gray, WORK_SIDE)
    if has_light_background(gray):
        gray = cv2.bitwise_not(gray)
    ink = remove_background(gray)
    mask = ink_mask(ink)
    left, top, width, height = cv2.boundingRect(mask)
    box = (slice(top, top + height), slice(left, left + width))
    coverage = stretch_ink(ink[box], mask[box])
    resolved = max(width, height) >= STROKE_CANVAS_SIDE
    return (coverage if resolved else _enlarge(coverage, STROKE_CANVAS_SIDE)), resolved


def shrink_by_whole_factor(gray: np.ndarray, side: int) -> np.ndarray:
    """Mean of k x k blocks, k the smallest whole number that brings the long side to `side` or less.

    A whole factor is OpenCV's fast path for area averaging (a plain block mean, tens of times
    faster than a fractional factor); the few edge pixels that do not fill a block are dropped.
    """
    height, width = gray.shape
    factor = -(-max(height, width) // side)
    if factor == 1:
        return gray
    rows, cols = max(1, height // factor), max(1, width // factor)
    whole_blocks = gray[: rows * factor, : cols * factor] if min(height, width) >= factor else gray
    return cv2.resize(whole_blocks, (cols, rows), interpolation=cv2.INTER_AREA)


def remove_background(gray: np.ndarray) -> np.ndarray:
    """Light ink on a dark background -> the ink alone: the slowly varying background subtracted.

    The background is the opening (erosion, then dilation) of a coarse copy: strokes narrower than
    the opening vanish from it while a lighting gradient or vignette survives, and scaling it back
    up smoothly gives the background under every pixel. The coarse copy is first extended beyond
    its edges by odd reflection (continuing a gradient linearly), so the opening follows a
    gradient right up to the image's edge instead of lagging behind it there.
    """
    height, width = gray.shape
    coarse = shrink_by_whole_factor(gray, COARSE_SIDE).astype(np.float32)
    side = max(3, int(max(coarse.shape) * COARSE_OPENING_SHARE) | 1)
    kernel = cv2.getStructuringElement(cv2.MORPH_RECT, (side, side))
    if min(coarse.shape) > 1:
        margin = side // 2
        extended = np.pad(coarse, margin, mode="reflect", reflect_type="odd")
        background = cv2.morphologyEx(extended, cv2.MORPH_OPEN, kernel)[margin:-margin, margin:-margin]
    else:  # a single row or column has nothing to reflect
        background = cv2.morphologyEx(coarse, cv2.MORPH_OPEN, kernel)
    if background.shape != gray.shape:
        background = cv2.resize(background, (width, height), interpolation=cv2.INTER_LINEAR)
    return np.clip(gray - background, 0, 255).astype(np.uint8)


def ink_mask(ink: np.ndarray) -> np.ndarray:
    """Where the strokes are (uint8 0/1): Otsu's threshold, then only pieces large enough to be strokes."""
    _, peak, _, _ = cv2.minMaxLoc(ink)
    if peak < MIN_INK_CONTRAST:
        raise NoInkError("no digit found: the image has no strokes that stand out from its background")
    _, mask = cv2.threshold(ink, 0, 1, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    pieces, labels = cv2.connectedComponents(mask, connectivity=8)
    if pieces <= 2:  # the background and one piece of ink
        return mask
    areas = np.bincount(labels.ravel(), minlength=pieces)
    areas[0] = 0
    return (areas >= MIN_PIECE_SHARE * areas.max()).astype(np.uint8)[labels]


def stretch_ink(ink: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Ink levels -> 0..1 coverage: the paper's own grain (what lies away from the strokes) is
    background, the typical stroke level and above is full ink (MNIST's stroke cores are saturated)."""
    away = 1 - cv2.dilate(mask, np.ones((5, 5), np.uint8))
    floor = _percentile(ink, away, 99) if away.any() else 0
    level = _percentile(ink, mask, 75)
    coverage = (ink.astype(np.float32) - floor) * (1.0 / max(level - floor, 1))
    return np.clip(coverage, 0, 1, out=coverage)


def _percentile(values: np.ndarray, where: np.ndarray, percent: float) -> int:
    """A percentile of uint8 `values` where `where` is nonzero, read off their histogram."""
    counts = np.cumsum(cv2.calcHist([values], [0], where, [256], [0, 256]).ravel())
    return int(np.searchsorted(counts, counts[-1] * percent / 100))


def stroke_width(strokes: np.ndarray) -> float:
    """Typical stroke width of a coverage crop, in pixels of a 28x28 frame where its box is 20 px long.

    The distance transform of the strokes' mask peaks along their centre lines at half their
    width: twice the median of those peaks (less half a pixel, the mean error of a whole-pixel
    grid) is the width, unbiased by stroke ends, junctions and stroke length.
    """
    mask = np.pad(strokes >= 0.5, 1).astype(np.uint8)  # the crop's edge is not background: pad with some
    distances = cv2.distanceTransform(mask, cv2.DIST_L2, cv2.DIST_MASK_5)
    centre_lines = distances[(distances >= cv2.dilate(distances, _NEIGHBOURHOOD)) & (mask > 0)]
    if centre_lines.size == 0:
        return MNIST_STROKE_WIDTH
    return (2 * float(centre_lines.mean()) - 0.5) * DIGIT_BOX_SIDE / max(strokes.shape)


def adjust_stroke_width(strokes: np.ndarray, resolved: bool) -> np.ndarray:
    """Coverage crop -> the same digit with strokes brought to MNIST's width when they lie outside
    MNIST's usual band; redrawn from distance transforms, anti-aliased.

    Strokes are thinned only when the image resolved them: an upscaled small or low-resolution
    image blurs its strokes, which then measure wider than they were drawn.
    """
    width = stroke_width(strokes)
    # Per side, in this crop's pixels. Growing (or shrinking) every stroke by c grows (or shrinks)
    # the digit's box by 2c too, and the box is then scaled to 20 px: solving
    # (w + 2c) / (box + 2c) = target / 20 for c gives this, not just (target - w) / 2.
    change = max(strokes.shape) * (MNIST_STROKE_WIDTH - width) / (2 * (DIGIT_BOX_SIDE - MNIST_STROKE_WIDTH))
    if width < MNIST_STROKE_BAND[0]:
        margin = int(change) + 2
        outside = (np.pad(strokes, margin) < 0.5).astype(np.uint8)
        distances = cv2.distanceTransform(outside, cv2.DIST_L2, cv2.DIST_MASK_5)
        return np.clip(change + 0.5 - distances, 0, 1)
    if width > MNIST_STROKE_BAND[1] and resolved:
        inside = np.pad(strokes >= 0.5, 1).astype(np.uint8)
        distances = cv2.distanceTransform(inside, cv2.DIST_L2, cv2.DIST_MASK_5)[1:-1, 1:-1]
        # The ridge (local maxima of the distance) keeps the thinnest parts of a stroke from vanishing.
        ridge = (distances >= cv2.dilate(distances, _NEIGHBOURHOOD)) & (distances > 0)
        return np.maximum(np.clip(distances + change + 0.5, 0, 1), ridge.astype(np.float32))
    return strokes


def _enlarge(strokes: np.ndarray, side: int) -> np.ndarray:
    height, width = strokes.shape
    scale = side / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return cv2.resize(strokes, size, interpolation=cv2.INTER_LINEAR)


def _fit_box(strokes: np.ndarray) -> np.ndarray:
    """Coverage -> uint8 patch of its ink whose long side is 20 px, by area averaging (anti-aliased)."""
    left, top, width, height = cv2.boundingRect((strokes > 0).astype(np.uint8))
    if width == 0:
        raise NoInkError("no digit found: the strokes are too faint or too small")
    scale = DIGIT_BOX_SIDE / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    box = strokes[top : top + height, left : left + width]
    patch = cv2.resize(box, size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    return np.clip(np.rint(patch * 255), 0, 255).astype(np.uint8)


def _centre_by_mass(patch: np.ndarray) -> np.ndarray:
    height, width = patch.shape
    moments = cv2.moments(patch)
    if moments["m00"] == 0:
        raise NoInkError("no digit found: the strokes are too faint or too small")
    top = int(np.clip(round(MNIST_MASS_CENTRE - moments["m01"] / moments["m00"]), 0, IMAGE_SIDE - height))
    left = int(np.clip(round(MNIST_MASS_CENTRE - moments["m10"] / moments["m00"]), 0, IMAGE_SIDE - width))
    frame = np.zeros((IMAGE_SIDE, IMAGE_SIDE), dtype=np.uint8)
    frame[top : top + height, left : left + width] = patch
    return frame
