"""Paired two-modality digit data for the example scripts.

Every example learns from pairs (x, w), two "modalities" of the same digit, with a
label y over K classes of which only a few are known:

* ``halves`` pairing (hmMNIST): x is the left half, w the right half of the image.
* ``noisy`` pairing (nmMNIST): x is the image rotated by an angle drawn uniformly
  from [-rotation, rotation] radians, w is the same image plus Gaussian noise of
  standard deviation ``noise``, clipped to [0, 1].

Data sets: ``digits`` (scikit-learn's bundled 8x8 digits, always available offline),
``mnist`` and ``fashion`` (IDX files read from ``data_root``, see :func:`load_idx_dataset`)
and ``features`` (a user's own two-modality arrays, see :func:`load_features`).

A script uses it as::

    parser = argparse.ArgumentParser()
    data.add_arguments(parser)
    paired = data.from_args(parser.parse_args())
    print(paired.description)
    for labelled, unlabelled in data.semi_supervised_batches(paired, 128, generator):
        ...  # labelled = {"x", "w", "y"}, unlabelled = {"x", "w"}
"""
from __future__ import annotations

import gzip
import math
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .errors import UsageError, user_errors

DATASETS = ("digits", "mnist", "fashion", "features")
PAIRINGS = ("halves", "noisy")
IDX_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
             "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
_TORCHVISION_FOLDERS = {"mnist": "MNIST", "fashion": "FashionMNIST"}  # <root>/<folder>/raw/


@dataclass
class PairedData:
    """A paired data set split for semi-supervised learning; all tensors float32 on the CPU.

    labelled:    (x (L, x_dim), w (L, w_dim), y (L, num_classes)), y one-hot (multi-hot if multilabel).
    unlabelled:  (x (U, x_dim), w (U, w_dim)), the training rows not in ``labelled``
                 (with ``labels="all"`` the whole training set, so training loops need no special case).
    test:        (x (T, x_dim), w (T, w_dim), y (T, num_classes)).
    image_shape: (H, W) of one modality for plotting, e.g. (28, 14) for MNIST halves,
                 (28, 28) for noisy MNIST; None for ``features``.
    description: one line naming the data, split, pairing and label count, for scripts to print.
    """

    labelled: tuple
    unlabelled: tuple
    test: tuple
    num_classes: int
    x_dim: int
    w_dim: int
    image_shape: tuple | None
    multilabel: bool
    description: str

    def __repr__(self):
        sizes = f"{len(self.labelled[0])} labelled, {len(self.unlabelled[0])} unlabelled, {len(self.test[0])} test"
        return f"PairedData({self.description}; {sizes}; x {self.x_dim}-d, w {self.w_dim}-d, {self.num_classes} classes)"


def load(dataset="digits", pairing="halves", data_root=None, labels=100,
         rotation=math.pi / 4, noise=0.5, seed=0, download=False) -> PairedData:
    """Load ``dataset``, pair its modalities and draw a seeded labelled subset of the training set.

    dataset:  one of "digits", "mnist", "fashion", "features".
    pairing:  "halves" or "noisy" (ignored for "features", whose arrays are already paired).
    labels:   number of labelled training examples, class-balanced (labels // K per class,
              the first labels % K classes get one more), or "all".
    rotation, noise: the noisy pairing's maximum angle (radians) and noise standard deviation.
    download: for mnist/fashion only, let torchvision download the files into ``data_root`` first.
    """
    if dataset not in DATASETS:
        raise ValueError(f"dataset={dataset!r} is not one of {DATASETS}.")
    if pairing not in PAIRINGS:
        raise ValueError(f"pairing={pairing!r} is not one of {PAIRINGS}.")
    rng = np.random.default_rng(seed)
    if dataset == "features":
        (x, w, y), test, source = load_features(data_root, rng)
        image_shape, how = None, "pairing ignored (features are already paired)"
    else:
        if dataset == "digits":
            (images, y), (test_images, test_y), source = load_digits(seed)
        else:
            (images, y), (test_images, test_y), source = load_idx_dataset(dataset, data_root, download)
        generator = torch.Generator().manual_seed(seed)
        x, w = make_pairs(images, pairing, rotation, noise, generator)
        test = (*make_pairs(test_images, pairing, rotation, noise, generator), test_y)
        height, width = images.shape[1:]
        image_shape = (height, width // 2) if pairing == "halves" else (height, width)
        how = "halves pairing" if pairing == "halves" else (
            f"noisy pairing (rotation up to {rotation:.3g} rad, noise std {noise:g})")
    multilabel = y.ndim == 2
    num_classes = y.shape[1] if multilabel else int(max(y.max(), test[2].max())) + 1
    chosen = labelled_indices(y, labels, num_classes, rng)
    rest = np.setdiff1d(np.arange(len(y)), chosen) if len(chosen) < len(y) else chosen
    x, w, y = _float32(x, w, y, num_classes)
    label_text = "all labels" if len(chosen) == len(y) else f"{len(chosen):,} labels"
    return PairedData(
        labelled=(x[chosen], w[chosen], y[chosen]), unlabelled=(x[rest], w[rest]),
        test=_float32(*test, num_classes),
        num_classes=num_classes, x_dim=x.shape[1], w_dim=w.shape[1], image_shape=image_shape,
        multilabel=multilabel, description=f"{source}, {how}, {label_text}")


@user_errors
def labelled_images(dataset="digits", data_root=None, seed=0, download=False) -> PairedData:
    """Whole images x (N, H W) in [0, 1] with their one-hot labels y, every training image labelled, and an empty
    w (N, 0): the data of a model of x given y (e.g. the conditional VAE), which ``training.train`` passes as the
    labelled batches {"x", "w", "y"}. dataset: "digits", "mnist" or "fashion"; the split is :func:`load`'s."""
    if dataset == "digits":
        (images, y), (test_images, test_y), source = load_digits(seed)
    else:
        (images, y), (test_images, test_y), source = load_idx_dataset(dataset, data_root, download)
    num_classes = int(max(y.max(), test_y.max())) + 1
    x, w, y = _float32(images.reshape(len(images), -1), images.new_zeros(len(images), 0), y, num_classes)
    test = _float32(test_images.reshape(len(test_images), -1), test_images.new_zeros(len(test_images), 0), test_y,
                    num_classes)
    return PairedData(labelled=(x, w, y), unlabelled=(x, w), test=test, num_classes=num_classes, x_dim=x.shape[1],
                      w_dim=0, image_shape=tuple(images.shape[1:]), multilabel=False,
                      description=f"{source}, whole images, all labels")


def _float32(x, w, y, num_classes):
    """x, w as float32 tensors and y as one-hot (N, num_classes) float32; multi-hot y (N, C) is kept."""
    y = torch.as_tensor(y)
    y = y.float() if y.ndim == 2 else F.one_hot(y, num_classes).float()
    return torch.as_tensor(x, dtype=torch.float32), torch.as_tensor(w, dtype=torch.float32), y


def make_pairs(images, pairing, rotation, noise, generator):
    """Turn images (N, H, W) in [0, 1] into flattened modalities x (N, Dx) and w (N, Dw).

    halves: x = images[:, :, :W/2], w = images[:, :, W/2:] (Dx = Dw = H W / 2).
    noisy:  x = rotate(images, angle ~ U[-rotation, rotation]), w = clip(images + noise * eps, 0, 1),
            eps ~ N(0, 1) (Dx = Dw = H W); angles and eps drawn from ``generator``.
    """
    n, height, width = images.shape
    if pairing == "halves":
        return images[:, :, : width // 2].reshape(n, -1), images[:, :, width // 2:].reshape(n, -1)
    angles = (torch.rand(n, generator=generator) * 2 - 1) * rotation
    eps = torch.randn(images.shape, generator=generator)
    rotated = rotate(images, angles) if rotation != 0 else images
    return rotated.reshape(n, -1), (images + noise * eps).clamp(0, 1).reshape(n, -1)


def rotate(images, angles, chunk=4096):
    """Rotate square images (N, H, W) counter-clockwise about their centres by ``angles`` (N,) radians.

    Bilinear interpolation, zero fill outside the image; batched (``chunk`` images at a time).
    """
    cos, sin, zero = torch.cos(angles), torch.sin(angles), torch.zeros_like(angles)
    # affine_grid maps output to input coordinates, hence the inverse (clockwise) matrix.
    theta = torch.stack([torch.stack([cos, -sin, zero], 1), torch.stack([sin, cos, zero], 1)], 1)
    out = []
    for start in range(0, len(images), chunk):
        batch = images[start:start + chunk, None]
        grid = F.affine_grid(theta[start:start + chunk].to(batch), list(batch.shape), align_corners=False)
        out.append(F.grid_sample(batch, grid, align_corners=False)[:, 0])
    return torch.cat(out) if out else images.clone()


def load_digits(seed, test_size=400):
    """scikit-learn's 1,797 8x8 digits scaled to [0, 1], split stratified and seeded.

    Returns ((images (N, 8, 8) float32 tensor, labels (N,) int64), (test images, test labels), description).
    """
    from sklearn.datasets import load_digits as sklearn_digits
    from sklearn.model_selection import train_test_split

    digits = sklearn_digits()
    images = digits.images.astype(np.float32) / 16
    train, test = train_test_split(np.arange(len(images)), test_size=test_size,
                                   stratify=digits.target, random_state=seed)
    split = [(torch.from_numpy(images[i]), digits.target[i].astype(np.int64)) for i in (train, test)]
    return (*split, f"scikit-learn digits ({len(train):,} train / {len(test):,} test, 8x8)")


def load_idx_dataset(dataset, data_root, download=False):
    """Read MNIST or Fashion-MNIST from the four IDX files (gzipped or not) under ``data_root``.

    Looked for, in order: ``<root>/MNIST/raw`` (or ``<root>/FashionMNIST/raw``, torchvision's
    layout), ``<root>/raw``, ``<root>`` itself, then each subfolder of ``<root>`` (e.g. the folder
    that Debian's ``dataset-fashion-mnist`` installs). Files: train-images-idx3-ubyte,
    train-labels-idx1-ubyte, t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte, each optionally ``.gz``.
    Returns ((images (N, H, W) float32 tensor in [0, 1], labels (N,) int64), (test ...), description).
    """
    folder_name = _TORCHVISION_FOLDERS[dataset]
    if data_root is None:
        raise FileNotFoundError(
            f"dataset {dataset!r} needs --data-root DIR holding the four IDX files ({', '.join(IDX_FILES)}, "
            f"gzipped or not) or torchvision's {folder_name}/raw/ layout; or use --dataset digits, "
            "which ships with scikit-learn.")
    root = Path(data_root).expanduser()
    if download:
        _download(dataset, root)
    others = set(_TORCHVISION_FOLDERS.values()) - {folder_name}
    subfolders = sorted(p for p in root.iterdir() if p.is_dir() and p.name not in others) if root.is_dir() else []
    for folder in [root / folder_name / "raw", root / "raw", root, *subfolders]:
        paths = [_find_idx(folder, name) for name in IDX_FILES]
        if all(paths):
            break
    else:
        hint = " or apt-get install dataset-fashion-mnist and pass its folder" if dataset == "fashion" else ""
        raise FileNotFoundError(
            f"no {dataset} IDX files found in {root} (searched {root / folder_name / 'raw'}, "
            f"{root} and its subfolders); expected {', '.join(IDX_FILES)} (each optionally .gz). "
            f"Pass --data-root DIR holding train-images-idx3-ubyte.gz ...{hint}.")
    images, labels, test_images, test_labels = (read_idx(p) for p in paths)
    if len(images) != len(labels) or len(test_images) != len(test_labels):
        raise ValueError(f"the IDX files in {folder} hold different numbers of images and labels.")
    title = {"mnist": "MNIST", "fashion": "Fashion-MNIST"}[dataset]
    height, width = images.shape[1:]
    return ((torch.from_numpy(images.astype(np.float32) / 255), labels.astype(np.int64)),
            (torch.from_numpy(test_images.astype(np.float32) / 255), test_labels.astype(np.int64)),
            f"{title} ({len(images):,} train / {len(test_images):,} test, {height}x{width}) from {folder}")


def _download(dataset, root):
    """Let torchvision download ``dataset`` into ``root``; a UsageError naming the failure and the way round it."""
    instead = (f"download the four IDX files ({', '.join(IDX_FILES)}, gzipped or not) yourself and pass their "
               f"folder as --data-root without --download")
    try:
        import torchvision.datasets
    except ImportError:
        raise UsageError(f"--download needs torchvision (pip install torchvision); or {instead}.") from None
    tv_class = torchvision.datasets.MNIST if dataset == "mnist" else torchvision.datasets.FashionMNIST
    try:
        for train in (True, False):
            tv_class(str(root), train=train, download=True)
    except (RuntimeError, OSError) as error:  # torchvision's "Error downloading ..." (each mirror's failure), disk
        lines = [line.strip() for line in str(error).splitlines() if line.strip()]
        reason = lines[-1] if lines else type(error).__name__
        raise UsageError(f"--download: could not download {dataset} into {root} ({reason}); check the network "
                         f"connection and that {root} is writable, or {instead}.") from None


def _find_idx(folder, name):
    """The path of IDX file ``name`` in ``folder`` (plain, .gz, or with '.idx' for '-idx'), or None."""
    for stem in (name, name.replace("-idx", ".idx")):
        for candidate in (folder / stem, folder / f"{stem}.gz"):
            if candidate.is_file():
                return candidate
    return None


def read_idx(path):
    """Read an IDX file (optionally gzipped): 2 zero bytes, a type byte, ndim, ndim big-endian int32 dims, data."""
    path = Path(path)
    gzipped = path.suffix == ".gz"
    try:
        with (gzip.open if gzipped else open)(path, "rb") as file:
            raw = file.read()
    except (OSError, EOFError, zlib.error) as error:  # gzip.BadGzipFile is an OSError; EOFError: truncated
        reason = " ".join(str(error).split()) or type(error).__name__
        raise ValueError(f"{path} cannot be read as {'a gzipped' if gzipped else 'an'} IDX file ({reason}); "
                         f"replace it with a good copy (e.g. download it again).") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise ValueError(f"{path} is not an IDX file (bad magic number {raw[:4].hex()}).")
    ndim = raw[3]
    shape = tuple(int(d) for d in np.frombuffer(raw, ">i4", count=ndim, offset=4))
    dtype = np.dtype(_IDX_DTYPES[raw[2]])
    expected = 4 + 4 * ndim + dtype.itemsize * math.prod(shape)
    if len(raw) != expected:
        raise ValueError(f"{path} has {len(raw)} bytes; its header (shape {shape}) says {expected}.")
    return np.frombuffer(raw, dtype, offset=4 + 4 * ndim).reshape(shape).astype(dtype.newbyteorder("="))


def load_features(data_root, rng, test_fraction=0.2):
    """Read a user's two-modality features from a ``.npz`` file or a folder of ``.npy`` files.

    Arrays (``.npz`` keys, or files ``x.npy``, ``w.npy``, ``y.npy`` ... in the folder):
      x (N, Dx) float, w (N, Dw) float, and
      y (N,) integer class labels (single-label) or (N, C) {0, 1} multi-hot (multi-label, e.g. MIR Flickr's 38 tags);
    optionally a test set, as either
      split (N,) bool or {0, 1}, nonzero marking a test row, or
      x_test (M, Dx), w_test (M, Dw), y_test (M,) or (M, C).
    Without one, a seeded ``test_fraction`` of the rows is held out.
    Returns ((x, w, y), (x_test, w_test, y_test), description) as numpy arrays.
    """
    if data_root is None:
        raise FileNotFoundError("dataset 'features' needs --data-root pointing at a .npz file or a folder "
                                "holding x.npy, w.npy and y.npy.")
    path = Path(data_root).expanduser()
    expected = "pass a .npz file holding x, w and y, or a folder holding x.npy, w.npy and y.npy"
    if path.is_file():
        arrays = _np_load(path, expected)
        if not isinstance(arrays, dict):
            raise ValueError(f"--data-root {path} holds a single array (a .npy file), not the arrays x, w and y; "
                             f"{expected}.")
    elif path.is_dir():
        arrays = {p.stem: _np_load(p, expected) for p in path.glob("*.npy")}
    else:
        raise FileNotFoundError(f"features path {path} does not exist; pass a .npz file or a folder of .npy files.")
    test_names = ("x_test", "w_test", "y_test")
    required = ("x", "w", "y") + (test_names if any(name in arrays for name in test_names) else ())
    missing = [name for name in required if name not in arrays]
    if missing:
        raise FileNotFoundError(f"features in {path} lack {', '.join(missing)} (found {sorted(arrays) or 'nothing'}); "
                                "expected x (N, Dx), w (N, Dw), y (N,) or (N, C) [and x_test, w_test, y_test].")
    train = _checked_features(arrays["x"], arrays["w"], arrays["y"], "")
    if "x_test" in arrays:
        test = _checked_features(arrays["x_test"], arrays["w_test"], arrays["y_test"], "_test", like=train)
    else:
        n = len(train[0])
        if "split" in arrays:
            is_test = np.asarray(arrays["split"]).astype(bool)
            if is_test.shape != (n,):
                raise ValueError(f"split must have shape ({n},) like x; got {is_test.shape}.")
        else:
            is_test = np.zeros(n, bool)
            is_test[rng.permutation(n)[: max(1, round(test_fraction * n))]] = True
        test, train = (tuple(a[mask] for a in train) for mask in (is_test, ~is_test))
    kind = f"{train[2].shape[1]} tags, multi-label" if train[2].ndim == 2 else "single-label"
    return train, test, (f"features from {path} ({len(train[0]):,} train / {len(test[0]):,} test, "
                         f"x {train[0].shape[1]}-d, w {train[1].shape[1]}-d, {kind})")


def _np_load(path, expected):
    """What numpy reads from ``path`` (no pickles): an array for a .npy file, {name: array} for a .npz archive; a
    ValueError naming the file and ``expected`` when numpy cannot read it."""
    with open(path, "rb") as file:  # ours to close, also when numpy fails half-way (it would leak its own)
        magic = file.read(6)
        if not (magic.startswith(b"PK") or magic == b"\x93NUMPY"):  # a zip archive (.npz) or a .npy array
            raise ValueError(f"--data-root: {path} is not a numpy file (.npz or .npy); {expected}.")
        file.seek(0)
        what = str(path)
        try:
            loaded = np.load(file)
            if not isinstance(loaded, np.lib.npyio.NpzFile):
                return loaded
            arrays = {}
            with loaded:
                for name in loaded.files:
                    what = f"array {name!r} of {path}"
                    arrays[name] = loaded[name]
            return arrays
        except (ValueError, OSError, EOFError, zlib.error, zipfile.BadZipFile) as error:  # truncated, object arrays
            raise ValueError(f"--data-root: numpy cannot read {what} ({' '.join(str(error).split())}); "
                             f"{expected}.") from None


def _checked_features(x, w, y, suffix, like=None):
    """Validate x (N, Dx), w (N, Dw), y (N,) int or (N, C) {0, 1}; return them as float32, float32, int64/float32."""
    x, w, y = np.asarray(x), np.asarray(w), np.asarray(y)
    for name, array in (("x", x), ("w", w)):
        if array.ndim != 2:
            raise ValueError(f"{name}{suffix} must be 2-d (N, D{name}); got shape {array.shape}.")
    if y.ndim not in (1, 2):
        raise ValueError(f"y{suffix} must be (N,) labels or (N, C) multi-hot; got shape {y.shape}.")
    if not len(x) == len(w) == len(y):
        raise ValueError(f"x{suffix}, w{suffix} and y{suffix} must have the same number of rows; "
                         f"got shapes {x.shape}, {w.shape} and {y.shape}.")
    if y.ndim == 1 and not (np.all(y == np.round(y)) and np.all(y >= 0)):
        raise ValueError(f"y{suffix} of shape {y.shape} must hold non-negative integer class labels.")
    if y.ndim == 2 and not np.isin(y, (0, 1)).all():
        raise ValueError(f"y{suffix} of shape {y.shape} is multi-hot, so it must hold only 0 and 1.")
    if like is not None:
        for name, array, reference in zip(("x", "w", "y"), (x, w, y), like):
            if array.shape[1:] != reference.shape[1:]:
                raise ValueError(f"{name}{suffix} has shape {array.shape} but {name} has {reference.shape}; "
                                 "only the number of rows may differ.")
    return x.astype(np.float32), w.astype(np.float32), y.astype(np.float32 if y.ndim == 2 else np.int64)


def labelled_indices(y, labels, num_classes, rng):
    """Sorted indices of the labelled training rows: ``labels`` rows drawn with ``rng``, class-balanced
    for labels y (N,), uniformly for multi-hot y (N, C); ``labels="all"`` gives every row."""
    n = len(y)
    if labels == "all":
        return np.arange(n)
    if not isinstance(labels, (int, np.integer)) or isinstance(labels, bool):
        raise ValueError(f"labels={labels!r} must be an int or 'all'.")
    if labels > n:
        raise ValueError(f"labels={labels} exceeds the {n:,} training examples; use at most {n} or 'all'.")
    if y.ndim == 2:
        if labels < 1:
            raise ValueError(f"labels={labels} must be at least 1.")
        return np.sort(rng.permutation(n)[:labels])
    if labels < num_classes:
        raise ValueError(f"labels={labels} is fewer than the {num_classes} classes, so the labelled set "
                         f"cannot be class-balanced; use at least {num_classes}.")
    chosen = []
    for k in range(num_classes):
        members = np.flatnonzero(y == k)
        wanted = labels // num_classes + (k < labels % num_classes)
        if wanted > len(members):
            raise ValueError(f"labels={labels} needs {wanted} examples of class {k} but the training set has "
                             f"{len(members)}; use fewer labels.")
        chosen.append(rng.choice(members, wanted, replace=False))
    return np.sort(np.concatenate(chosen))


def iterate(tensors, batch_size, shuffle, generator=None):
    """Yield tuples of minibatches (B, ...) with B <= batch_size from tensors that share their first dimension N.

    With ``shuffle``, rows come in a random permutation drawn from ``generator``; the last partial batch is kept.
    """
    n = len(tensors[0])
    order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
    for start in range(0, n, batch_size):
        index = order[start:start + batch_size]
        yield tuple(t[index.to(t.device)] for t in tensors)


def semi_supervised_batches(data, batch_size, generator=None, labelled_batch_size=None):
    """One epoch of semi-supervised minibatches: one shuffled pass over ``data.unlabelled``.

    Yields (labelled, unlabelled) dicts: labelled = {"x": (B_l, x_dim), "w": (B_l, w_dim), "y": (B_l, K)},
    unlabelled = {"x": (B, x_dim), "w": (B, w_dim)}. The (usually small) labelled set is cycled through,
    reshuffled after each pass; B_l = min(labelled_batch_size or batch_size, number of labelled rows).
    """
    x_l, w_l, y_l = data.labelled
    size = min(labelled_batch_size or batch_size, len(x_l))
    order = torch.empty(0, dtype=torch.long)
    for x, w in iterate(data.unlabelled, batch_size, shuffle=True, generator=generator):
        if len(order) < size:  # drop the remainder rather than repeat rows within one batch
            order = torch.randperm(len(x_l), generator=generator)
        index, order = order[:size].to(x_l.device), order[size:]
        yield {"x": x_l[index], "w": w_l[index], "y": y_l[index]}, {"x": x, "w": w}


def int_or_all(text):
    """argparse type for --labels: an int or 'all' (argparse reports anything else as invalid)."""
    return text if text == "all" else int(text)


def add_arguments(parser):
    """Add the shared data options (--dataset, --pairing, --rotation, --noise, --data-root, --labels, --download)."""
    group = parser.add_argument_group("data")
    group.add_argument("--dataset", choices=DATASETS, default="digits",
                       help="digits: scikit-learn's 8x8 digits (offline); mnist/fashion read IDX files from "
                            "--data-root (torchvision layout or a folder of the four IDX files); features: "
                            "your own x, w, y arrays (.npz or folder of .npy) at --data-root (default: digits)")
    group.add_argument("--pairing", choices=PAIRINGS, default="halves",
                       help="halves: x = left, w = right half; noisy: x = rotated, w = noisy image (default: halves)")
    from .training import non_negative_float  # (training imports this module)

    group.add_argument("--rotation", type=non_negative_float, default=math.pi / 4,
                       help="noisy pairing: maximum rotation in radians (default: pi/4)")
    group.add_argument("--noise", type=non_negative_float, default=0.5,
                       help="noisy pairing: standard deviation of the added Gaussian noise (default: 0.5)")
    group.add_argument("--data-root", default=None, help="folder (or .npz file for features) to read data from")
    group.add_argument("--labels", type=int_or_all, default=100,
                       help="number of labelled training examples, class-balanced, or 'all' (default: %(default)s)")
    group.add_argument("--download", action="store_true",
                       help="mnist/fashion: let torchvision download the files into --data-root first")
    return parser


def add_image_arguments(parser):
    """Add --dataset (digits, mnist or fashion), --data-root and --download for :func:`labelled_images`; every
    training image is labelled, so ``args.labels`` is "all"."""
    group = parser.add_argument_group("data")
    group.add_argument("--dataset", choices=DATASETS[:3], default="digits",
                       help="digits: scikit-learn's 8x8 digits (offline); mnist/fashion read IDX files from "
                            "--data-root (default: digits)")
    group.add_argument("--data-root", default=None, help="folder to read mnist/fashion from")
    group.add_argument("--download", action="store_true",
                       help="mnist/fashion: let torchvision download the files into --data-root first")
    parser.set_defaults(labels="all")
    return parser


@user_errors
def from_args(args, seed=None) -> PairedData:
    """``load`` with the options of :func:`add_arguments`; the seed is ``seed``, else ``args.seed``, else 0."""
    seed = seed if seed is not None else getattr(args, "seed", 0)
    return load(args.dataset, args.pairing, args.data_root, args.labels, args.rotation, args.noise,
                seed=seed, download=getattr(args, "download", False))
