"""Does the bundled model draw the colour and the shape a prompt names?

Two measures over the training data's own vocabulary, so that every target exists as a training emoji:

**Colour fidelity.** The data names several objects in several colours ("red heart", "green heart", "red apple",
"green apple", "blue book", …). For each such *(colour, object)* caption the model draws a few seeds; the
foreground (pixels away from the white background) is averaged in CIELAB. A picture passes when its mean colour is
nearer to the training emoji of its own colour than to the same object in any other colour the data has. That is
the tolerance: halfway to the nearest colour the model could have confused it with, which is what "green apple is
green" means to a viewer, and it scales itself (red and orange hearts are close, so the bar is tight there). Chance
is one over the number of colours of that object. Mean hue (° on the a*b* plane, for chromatic targets) and
lightness (L*) errors are reported beside it.

**Shape separation.** Images whose canonical caption ends in *heart*, *circle*, *square* or *face* form four
classes. The model draws captions of each class; each picture is matched to its nearest training image of those
classes under a colour-blind shape embedding (the foreground mask and the luminance detail inside it, 16×16), and
counts as separated when that neighbour is of the prompt's class.
"""

from __future__ import annotations

from collections import defaultdict

COLOURS = ("red", "orange", "yellow", "green", "blue", "purple", "brown", "black", "white")
SHAPES = ("heart", "circle", "square", "face")
BACKGROUND_DISTANCE = 40.0  # RGB distance from white beyond which a pixel is foreground (anti-aliasing is below it)
CHROMATIC = 15.0  # a*b* chroma above which a target's hue means something


def srgb_to_lab(rgb):
    """sRGB uint8 (…×3) → CIELAB (D65), float64 (…×3)."""
    import numpy as np

    c = np.asarray(rgb, dtype=np.float64) / 255.0
    c = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    m = np.array([[0.4124, 0.3576, 0.1805], [0.2126, 0.7152, 0.0722], [0.0193, 0.1192, 0.9505]])
    xyz = c @ m.T / np.array([0.95047, 1.0, 1.08883])
    f = np.where(xyz > (6 / 29) ** 3, np.cbrt(xyz), xyz / (3 * (6 / 29) ** 2) + 4 / 29)
    return np.stack([116 * f[..., 1] - 16, 500 * (f[..., 0] - f[..., 1]), 200 * (f[..., 1] - f[..., 2])], -1)


def foreground(image):
    """Boolean H×W mask of the pixels that are not background; the whole image if nothing stands out."""
    import numpy as np

    d = np.linalg.norm(image.astype(np.float64) - 255.0, axis=-1)
    mask = d > BACKGROUND_DISTANCE
    return mask if mask.sum() >= 8 else np.ones_like(mask)


def mean_lab(image):
    return srgb_to_lab(image[foreground(image)]).mean(0)


def colour_targets(images):
    """Each image's mean foreground colour in CIELAB, scaled to about ±1 (L* around 50, a*, b* over 50): float32
    N×3, what the trainer's colour loss asks the text encoder to tell."""
    import numpy as np

    lab = np.stack([mean_lab(im) for im in images])
    return ((lab - np.array([50.0, 0.0, 0.0])) / 50.0).astype(np.float32)


def hue_error(a, b) -> float:
    """Angle in degrees between two Lab colours on the a*b* plane."""
    import math

    d = math.degrees(math.atan2(a[2], a[1]) - math.atan2(b[2], b[1]))
    return abs((d + 180) % 360 - 180)


def colour_pairs(captions) -> dict[str, dict[str, tuple[int, str]]]:
    """object → colour → (image index, caption) for two-word "<colour> <object>" captions of objects the data
    has in at least two colours."""
    found: dict[str, dict[str, tuple[int, str]]] = defaultdict(dict)
    for i, caps in enumerate(captions):
        for c in caps:
            words = c.split()
            if len(words) == 2 and words[0] in COLOURS:
                found[words[1]].setdefault(words[0], (i, c))
    return {o: dict(sorted(cs.items())) for o, cs in sorted(found.items()) if len(cs) >= 2}


def colour_fidelity(draw, images, captions, seeds=(0, 1, 2, 3)) -> dict:
    """``draw(prompts, seeds) -> uint8 N×H×W×3``. Returns the pass share, its chance level and the errors."""
    import numpy as np

    pairs = colour_pairs(captions)
    jobs = [(o, col, i, cap) for o, cs in pairs.items() for col, (i, cap) in cs.items()]
    prompts = [cap for _, _, _, cap in jobs for _ in seeds]
    pics = draw(prompts, [s for _ in jobs for s in seeds])
    per_colour: dict[str, list[int]] = defaultdict(list)
    hue_err, light_err, chance = [], [], []
    k = 0
    for o, col, i, _ in jobs:
        target = {c: mean_lab(images[j]) for c, (j, _) in pairs[o].items()}
        for _ in seeds:
            lab = mean_lab(pics[k])
            k += 1
            nearest = min(target, key=lambda c: float(np.linalg.norm(lab - target[c])))
            per_colour[col].append(int(nearest == col))
            chance.append(1 / len(target))
            light_err.append(abs(float(lab[0] - target[col][0])))
            if np.hypot(target[col][1], target[col][2]) > CHROMATIC:
                hue_err.append(hue_error(lab, target[col]))
    passed = [p for v in per_colour.values() for p in v]
    return {
        "objects": {o: list(cs) for o, cs in pairs.items()},
        "pictures": len(passed), "seeds": list(seeds),
        "within_tolerance": float(np.mean(passed)), "chance": float(np.mean(chance)),
        "per_colour": {c: float(np.mean(v)) for c, v in sorted(per_colour.items())},
        "median_hue_error_deg": float(np.median(hue_err)) if hue_err else None,
        "median_lightness_error": float(np.median(light_err)),
        "tolerance": "nearer (CIELAB) to the training emoji of the named colour than to the same object in any "
                     "other colour",
    }


def shape_embedding(images):
    """Colour-blind 16×16 shape features: the foreground mask and the luminance detail inside it."""
    import numpy as np
    import torch
    import torch.nn.functional as F

    feats = []
    for im in images:
        m = foreground(im).astype(np.float64)
        lum = srgb_to_lab(im)[..., 0] / 100.0
        detail = (lum - lum[m > 0].mean()) * m
        feats.append(np.stack([m, detail]))
    x = F.adaptive_avg_pool2d(torch.as_tensor(np.stack(feats), dtype=torch.float32), 16)
    return x.reshape(len(x), -1)


def shape_classes(captions) -> dict[str, list[int]]:
    """shape → images whose canonical (first) caption ends in that word."""
    out: dict[str, list[int]] = {s: [] for s in SHAPES}
    for i, caps in enumerate(captions):
        last = caps[0].split()[-1] if caps and caps[0] else ""
        if last in out:
            out[last].append(i)
    return out


def shape_separation(draw, images, captions, per_class=12, seeds=(0, 1)) -> dict:
    import numpy as np
    import torch

    classes = shape_classes(captions)
    members = [i for s in SHAPES for i in classes[s]]
    label = np.array([s for s in SHAPES for _ in classes[s]])
    rng = np.random.RandomState(0)
    jobs = [(s, captions[i][0]) for s in SHAPES
            for i in rng.choice(classes[s], size=min(per_class, len(classes[s])), replace=False)]
    pics = draw([c for _, c in jobs for _ in seeds], [sd for _ in jobs for sd in seeds])
    near = torch.cdist(shape_embedding(pics), shape_embedding(images[members])).argmin(1).numpy()
    want = np.array([s for s, _ in jobs for _ in seeds])
    got = label[near]
    confusion = {s: {t: int(((want == s) & (got == t)).sum()) for t in SHAPES} for s in SHAPES}
    return {
        "classes": {s: len(v) for s, v in classes.items()}, "pictures": int(len(want)),
        "accuracy": float((want == got).mean()),
        "per_class": {s: float((got[want == s] == s).mean()) for s in SHAPES},
        "confusion": confusion, "chance": 1 / len(SHAPES),
    }
