"""Tests of examples/common/data.py: pairings, IDX reading, user features, labelled subsets and batching."""
import argparse
import gzip
import math
import struct

import numpy as np
import pytest
import torch
import torchvision.transforms.functional as TF
from sklearn.datasets import load_digits

from common import data

DIGITS = load_digits()
DIGIT_IMAGES = DIGITS.images.astype(np.float32) / 16  # the reference, computed independently of data.py


def rows(*arrays):
    """The rows of 2-d arrays/tensors joined column-wise, as a set of tuples (digits has no duplicate images)."""
    joined = np.concatenate([np.asarray(a, dtype=np.float32) for a in arrays], axis=1)
    return {tuple(r) for r in joined}


def reassemble_halves(x, w, height, half):
    """Images (N, height * 2 half) flattened back from left halves x and right halves w."""
    n = len(x)
    return torch.cat([x.reshape(n, height, half), w.reshape(n, height, half)], dim=2).reshape(n, -1)


@pytest.fixture(scope="module")
def halves():
    return data.load("digits", "halves", labels=100, seed=0)


# --- digits, halves pairing ---------------------------------------------------------------------------------

def test_halves_shapes_and_range(halves):
    (xl, wl, yl), (xu, wu), (xt, wt, yt) = halves.labelled, halves.unlabelled, halves.test
    assert (xl.shape, wl.shape, yl.shape) == ((100, 32), (100, 32), (100, 10))
    assert (xu.shape, wu.shape) == ((1297, 32), (1297, 32))
    assert (xt.shape, wt.shape, yt.shape) == ((400, 32), (400, 32), (400, 10))
    assert (halves.x_dim, halves.w_dim, halves.num_classes, halves.image_shape) == (32, 32, 10, (8, 4))
    assert not halves.multilabel
    for t in (xl, wl, yl, xu, wu, xt, wt, yt):
        assert t.dtype == torch.float32
        assert t.min() >= 0 and t.max() <= 1
    assert torch.equal(yl.sum(1), torch.ones(100)) and torch.equal(yt.sum(1), torch.ones(400))
    assert halves.description == "scikit-learn digits (1,397 train / 400 test, 8x8), halves pairing, 100 labels"


def test_halves_reassemble_the_original_images(halves):
    (xl, wl, yl), (xu, wu), (xt, wt, yt) = halves.labelled, halves.unlabelled, halves.test
    labelled = rows(reassemble_halves(xl, wl, 8, 4), yl.argmax(1)[:, None])
    test = rows(reassemble_halves(xt, wt, 8, 4), yt.argmax(1)[:, None])
    unlabelled = rows(reassemble_halves(xu, wu, 8, 4))
    original = rows(DIGIT_IMAGES.reshape(-1, 64), DIGITS.target[:, None])
    assert len(labelled) + len(test) == 500 and labelled | test <= original
    assert unlabelled == {r[:64] for r in original - labelled - test}


def test_labelled_unlabelled_and_test_are_disjoint(halves):
    (xl, wl, _), (xu, wu), (xt, wt, _) = halves.labelled, halves.unlabelled, halves.test
    labelled, unlabelled, test = rows(xl, wl), rows(xu, wu), rows(xt, wt)
    assert (len(labelled), len(unlabelled), len(test)) == (100, 1297, 400)
    assert not labelled & unlabelled and not labelled & test and not unlabelled & test


def test_test_split_is_stratified(halves):
    counts = halves.test[2].sum(0)
    assert counts.min() >= 39 and counts.max() <= 41  # 400 of ~180 per class


@pytest.mark.parametrize("labels, expected", [(100, [10] * 10), (105, [11] * 5 + [10] * 5), (10, [1] * 10)])
def test_labelled_set_is_class_balanced(labels, expected):
    paired = data.load("digits", labels=labels, seed=3)
    assert paired.labelled[2].sum(0).tolist() == expected
    assert len(paired.unlabelled[0]) == 1397 - labels


def test_same_seed_same_data_other_seed_other_data(halves):
    again, other = data.load("digits", labels=100, seed=0), data.load("digits", labels=100, seed=1)
    for a, b in zip(halves.labelled + halves.unlabelled + halves.test, again.labelled + again.unlabelled + again.test):
        assert torch.equal(a, b)
    assert rows(*halves.labelled) != rows(*other.labelled)
    assert rows(*halves.test) != rows(*other.test)


def test_all_labels_uses_the_whole_training_set_for_both():
    paired = data.load("digits", labels="all")
    assert len(paired.labelled[0]) == len(paired.unlabelled[0]) == 1397
    assert torch.equal(paired.labelled[0], paired.unlabelled[0])
    assert paired.description.endswith("halves pairing, all labels")


@pytest.mark.parametrize("labels, message", [
    (1398, r"labels=1398 exceeds the 1,397 training examples"),
    (9, r"labels=9 is fewer than the 10 classes"),
    ("many", r"labels='many' must be an int or 'all'"),
])
def test_bad_label_counts_raise(labels, message):
    with pytest.raises(ValueError, match=message):
        data.load("digits", labels=labels)


@pytest.mark.parametrize("kwargs, message", [
    ({"dataset": "cifar"}, r"dataset='cifar' is not one of"),
    ({"pairing": "thirds"}, r"pairing='thirds' is not one of"),
])
def test_unknown_dataset_or_pairing_raise(kwargs, message):
    with pytest.raises(ValueError, match=message):
        data.load(**kwargs)


# --- digits, noisy pairing ----------------------------------------------------------------------------------

def test_noisy_without_rotation_or_noise_gives_the_image_twice():
    paired = data.load("digits", "noisy", rotation=0, noise=0, labels=50, seed=2)
    assert (paired.x_dim, paired.w_dim, paired.image_shape) == (64, 64, (8, 8))
    (xl, wl, yl), (xu, wu), (xt, wt, yt) = paired.labelled, paired.unlabelled, paired.test
    for x, w in ((xl, wl), (xu, wu), (xt, wt)):
        assert torch.equal(x, w)
    original = rows(DIGIT_IMAGES.reshape(-1, 64), DIGITS.target[:, None])
    assert rows(xl, yl.argmax(1)[:, None]) | rows(xt, yt.argmax(1)[:, None]) <= original
    assert "noisy pairing (rotation up to 0 rad, noise std 0)" in paired.description


def test_noisy_w_is_the_image_plus_gaussian_noise():
    # Small noise on mid-grey pixels (5/16..11/16, > 6 std from 0 and 1) is never clipped: w - x ~ N(0, 0.05^2).
    paired = data.load("digits", "noisy", rotation=0, noise=0.05, labels=50, seed=4)
    x, w = paired.unlabelled
    mid = (x > 0.3) & (x < 0.7)
    difference = (w - x)[mid]
    assert mid.sum() > 10_000
    assert abs(difference.std().item() - 0.05) < 0.05 * 0.03
    assert abs(difference.mean().item()) < 0.002


def test_noisy_w_is_clipped_with_the_default_noise():
    # On background pixels (0) w = clip(e, 0, 1), e ~ N(0, 0.5^2): half are exactly 0, and the positive part is
    # half-normal, whose median 0.5 * 0.6745 is unaffected by clipping at 1.
    paired = data.load("digits", "noisy", rotation=0, labels=50, seed=5)
    x, w = paired.unlabelled
    assert w.min() >= 0 and w.max() <= 1 and (w == 1).any()
    background = w[x == 0]
    assert abs((background == 0).float().mean().item() - 0.5) < 0.01
    assert abs(background[background > 0].median().item() - 0.5 * 0.6745) < 0.01


def test_noisy_x_is_the_source_image_rotated_within_range():
    # With noise 0, w is the source image; find the angle in [-pi, pi] that best turns w into x.
    paired = data.load("digits", "noisy", rotation=math.pi / 4, noise=0, labels=50, seed=6)
    x, w = paired.test[0][:20].reshape(20, 8, 8), paired.test[1][:20].reshape(20, 8, 8)
    assert x.min() >= 0 and x.max() <= 1
    angles = torch.linspace(-math.pi, math.pi, 801)
    candidates = data.rotate(w.repeat_interleave(len(angles), 0), angles.repeat(20)).reshape(20, len(angles), 8, 8)
    errors = (candidates - x[:, None]).abs().amax(dim=(2, 3))
    best_error, best = errors.min(1)
    assert best_error.max() < 0.05
    assert angles[best].abs().max() <= math.pi / 4 + 0.01
    assert angles[best].std() > 0.2  # the angles vary from image to image


def test_noisy_pairing_is_seeded():
    def noise_by_image(seed):
        paired = data.load("digits", "noisy", rotation=0, labels=50, seed=seed)
        x, w = (torch.cat([paired.labelled[i], paired.unlabelled[i], paired.test[i]]) for i in (0, 1))
        return {tuple(image.tolist()): noisy for image, noisy in zip(x, w)}

    first, again, other = noise_by_image(0), noise_by_image(0), noise_by_image(1)
    assert first.keys() == again.keys() == other.keys() and len(first) == 1797
    assert all(torch.equal(first[k], again[k]) for k in first)
    assert sum(torch.equal(first[k], other[k]) for k in first) == 0


@pytest.mark.parametrize("degrees", [90.0, 33.0, -60.0])
def test_rotate_matches_torchvision(degrees):
    images = torch.rand(4, 12, 12, generator=torch.Generator().manual_seed(0))
    rotated = data.rotate(images, torch.full((4,), math.radians(degrees)))
    reference = TF.rotate(images[:, None], degrees, interpolation=TF.InterpolationMode.BILINEAR)[:, 0]
    torch.testing.assert_close(rotated, reference, atol=1e-5, rtol=0)
    if degrees == 90:
        torch.testing.assert_close(rotated, torch.rot90(images, 1, dims=(1, 2)), atol=1e-5, rtol=0)


# --- IDX files (mnist / fashion) ----------------------------------------------------------------------------

def write_idx(path, array, gzipped):
    """Write a uint8 array in IDX format: 0, 0, type 0x08, ndim, big-endian int32 dims, data."""
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}i", *array.shape)
    path.parent.mkdir(parents=True, exist_ok=True)
    with (gzip.open if gzipped else open)(str(path) + (".gz" if gzipped else ""), "wb") as file:
        file.write(header + array.tobytes())


def write_fake_mnist(folder, gzipped, seed=0):
    rng = np.random.default_rng(seed)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (6, 4, 4), dtype=np.uint8),
        "train-labels-idx1-ubyte": np.array([0, 1, 2, 0, 1, 2], np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (3, 4, 4), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": np.array([2, 0, 1], np.uint8),
    }
    for name, array in arrays.items():
        write_idx(folder / name, array, gzipped)
    return arrays


@pytest.mark.parametrize("dataset, layout, gzipped", [
    ("mnist", "MNIST/raw", True),
    ("mnist", "MNIST/raw", False),
    ("mnist", ".", False),
    ("fashion", "FashionMNIST/raw", False),
    ("fashion", ".", True),
    ("fashion", "fashion-mnist", True),  # e.g. Debian's dataset-fashion-mnist folder, one level down
])
def test_idx_files_are_read_from_either_layout(tmp_path, dataset, layout, gzipped):
    arrays = write_fake_mnist(tmp_path / layout, gzipped)
    paired = data.load(dataset, "halves", data_root=tmp_path, labels=3, seed=0)
    images = arrays["t10k-images-idx3-ubyte"].astype(np.float32) / 255
    np.testing.assert_array_equal(paired.test[0].numpy(), images[:, :, :2].reshape(3, 8))
    np.testing.assert_array_equal(paired.test[1].numpy(), images[:, :, 2:].reshape(3, 8))
    np.testing.assert_array_equal(paired.test[2].argmax(1).numpy(), [2, 0, 1])
    train = arrays["train-images-idx3-ubyte"].astype(np.float32) / 255
    (xl, wl, yl), (xu, wu) = paired.labelled, paired.unlabelled
    assert yl.sum(0).tolist() == [1, 1, 1]
    assert rows(reassemble_halves(torch.cat([xl, xu]), torch.cat([wl, wu]), 4, 2)) == rows(train.reshape(6, 16))
    title = "MNIST" if dataset == "mnist" else "Fashion-MNIST"
    assert paired.description.startswith(f"{title} (6 train / 3 test, 4x4) from {tmp_path}")


def test_mnist_does_not_read_the_fashion_folder(tmp_path):
    write_fake_mnist(tmp_path / "FashionMNIST" / "raw", gzipped=True)
    assert data.load("fashion", data_root=tmp_path, labels=3).num_classes == 3
    with pytest.raises(FileNotFoundError, match="no mnist IDX files found"):
        data.load("mnist", data_root=tmp_path, labels=3)


@pytest.mark.parametrize("dataset, root, message", [
    ("mnist", None, r"dataset 'mnist' needs --data-root DIR holding the four IDX files \(train-images-idx3-ubyte"),
    ("mnist", "", r"no mnist IDX files found in .*expected train-images-idx3-ubyte, train-labels-idx1-ubyte, "
                       r"t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte \(each optionally .gz\)\. Pass --data-root"),
    ("fashion", "", r"apt-get install dataset-fashion-mnist and pass its folder"),
    ("fashion", "missing", r"no fashion IDX files found in .*missing"),
])
def test_missing_idx_files_raise(tmp_path, dataset, root, message):
    with pytest.raises(FileNotFoundError, match=message):
        data.load(dataset, data_root=None if root is None else tmp_path / root)


def test_idx_file_with_one_missing_file_raises(tmp_path):
    write_fake_mnist(tmp_path, gzipped=False)
    (tmp_path / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(FileNotFoundError, match="no mnist IDX files"):
        data.load("mnist", data_root=tmp_path, labels=3)


def test_idx_files_with_more_labels_than_images_raise(tmp_path):
    write_fake_mnist(tmp_path, gzipped=False)
    write_idx(tmp_path / "train-labels-idx1-ubyte", np.zeros(7, np.uint8), gzipped=False)
    with pytest.raises(ValueError, match=r"the IDX files in .* hold different numbers of images and labels"):
        data.load("mnist", data_root=tmp_path, labels=3)


@pytest.mark.parametrize("content, message", [
    (b"\x08\x03\x00\x00", r"is not an IDX file \(bad magic number 08030000\)"),
    (bytes([0, 0, 8, 1]) + struct.pack(">i", 5) + b"\x01\x02", r"has 10 bytes; its header \(shape \(5,\)\) says 13"),
])
def test_read_idx_rejects_broken_files(tmp_path, content, message):
    (tmp_path / "broken").write_bytes(content)
    with pytest.raises(ValueError, match=message):
        data.read_idx(tmp_path / "broken")


# --- user features ------------------------------------------------------------------------------------------

def make_features(seed=0, n=60, multilabel=False):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, (n, 5)) if multilabel else np.arange(n) % 3
    return {"x": rng.normal(size=(n, 6)), "w": rng.normal(size=(n, 4)), "y": y}


def test_features_npz_single_label_round_trip(tmp_path):
    train, test = make_features(0), make_features(1, n=15)
    np.savez(tmp_path / "f.npz", **train, **{f"{k}_test": v for k, v in test.items()})
    paired = data.load("features", "noisy", data_root=tmp_path / "f.npz", labels=9, seed=0)
    assert (paired.x_dim, paired.w_dim, paired.num_classes) == (6, 4, 3)
    assert not paired.multilabel and paired.image_shape is None
    np.testing.assert_array_equal(paired.test[0].numpy(), test["x"].astype(np.float32))
    np.testing.assert_array_equal(paired.test[2].argmax(1).numpy(), test["y"])
    assert paired.labelled[2].sum(0).tolist() == [3, 3, 3]
    (xl, wl, yl), (xu, wu) = paired.labelled, paired.unlabelled
    assert rows(xl, wl, yl.argmax(1)[:, None]) <= rows(train["x"], train["w"], train["y"][:, None])
    assert rows(torch.cat([xl, xu]), torch.cat([wl, wu])) == rows(train["x"], train["w"])
    source = f"features from {tmp_path / 'f.npz'} (60 train / 15 test, x 6-d, w 4-d, single-label)"
    assert paired.description == f"{source}, pairing ignored (features are already paired), 9 labels"


def test_features_folder_multilabel_with_split(tmp_path):
    arrays = make_features(2, multilabel=True)
    split = np.zeros(60, bool)
    split[::4] = True
    for name, array in {**arrays, "split": split}.items():
        np.save(tmp_path / f"{name}.npy", array)
    paired = data.load("features", data_root=tmp_path, labels=10, seed=1)
    assert paired.multilabel and paired.num_classes == 5
    np.testing.assert_array_equal(paired.test[2].numpy(), arrays["y"][split])
    np.testing.assert_array_equal(paired.test[0].numpy(), arrays["x"][split].astype(np.float32))
    (xl, wl, yl), (xu, _) = paired.labelled, paired.unlabelled
    assert len(xl) == 10 and len(xu) == 35
    assert rows(xl, yl) <= rows(arrays["x"][~split], arrays["y"][~split])
    assert "5 tags, multi-label" in paired.description


def test_features_multilabel_subset_is_seeded(tmp_path):
    test = {f"{k}_test": v for k, v in make_features(5, n=10, multilabel=True).items()}
    np.savez(tmp_path / "f.npz", **make_features(4, multilabel=True), **test)
    first, again, other = (data.load("features", data_root=tmp_path / "f.npz", labels=10, seed=s) for s in (0, 0, 1))
    assert torch.equal(first.labelled[0], again.labelled[0]) and torch.equal(first.test[0], again.test[0])
    assert rows(first.labelled[0]) != rows(other.labelled[0])
    assert first.description.endswith("pairing ignored (features are already paired), 10 labels")


def test_features_without_test_set_hold_out_a_seeded_fifth(tmp_path):
    np.savez(tmp_path / "f.npz", **make_features(3))
    first, again = (data.load("features", data_root=tmp_path / "f.npz", labels=6, seed=7) for _ in range(2))
    assert len(first.test[0]) == 12 and len(first.labelled[0]) + len(first.unlabelled[0]) == 48
    assert torch.equal(first.test[0], again.test[0])


@pytest.mark.parametrize("change, message", [
    ({"x": np.zeros(60)}, r"x must be 2-d \(N, Dx\); got shape \(60,\)"),
    ({"w": np.zeros((59, 4))},
     r"x, w and y must have the same number of rows; got shapes \(60, 6\), \(59, 4\) and \(60,\)"),
    ({"y": np.zeros((60, 2, 2))}, r"y must be \(N,\) labels or \(N, C\) multi-hot; got shape \(60, 2, 2\)"),
    ({"y": np.full((60, 3), 2)}, r"y of shape \(60, 3\) is multi-hot, so it must hold only 0 and 1"),
    ({"y": np.full(60, 0.5)}, r"y of shape \(60,\) must hold non-negative integer class labels"),
    ({"x_test": np.zeros((5, 7)), "w_test": np.zeros((5, 4)), "y_test": np.zeros(5, int)},
     r"x_test has shape \(5, 7\) but x has \(60, 6\)"),
    ({"split": np.zeros(59, bool)}, r"split must have shape \(60,\) like x; got \(59,\)"),
])
def test_features_with_bad_shapes_raise(tmp_path, change, message):
    np.savez(tmp_path / "f.npz", **{**make_features(), **change})
    with pytest.raises(ValueError, match=message):
        data.load("features", data_root=tmp_path / "f.npz", labels=6)


@pytest.mark.parametrize("root, message", [
    (None, r"dataset 'features' needs --data-root pointing at a .npz file"),
    ("nothing.npz", r"features path .*nothing.npz does not exist"),
    (".", r"features in .* lack x, w, y \(found nothing\)"),
    ("partial_test", r"features in .* lack w_test, y_test \(found \['w', 'x', 'x_test', 'y'\]\)"),
])
def test_missing_features_raise(tmp_path, root, message):
    if root == "partial_test":
        (tmp_path / root).mkdir()
        for name, array in {**make_features(), "x_test": np.zeros((3, 6))}.items():
            np.save(tmp_path / root / f"{name}.npy", array)
    with pytest.raises(FileNotFoundError, match=message):
        data.load("features", data_root=None if root is None else tmp_path / root)


# --- batching -----------------------------------------------------------------------------------------------

def test_iterate_keeps_order_and_the_last_partial_batch():
    a, b = torch.arange(10), torch.arange(10) * 2
    batches = list(data.iterate((a, b), 4, shuffle=False))
    assert [len(x) for x, _ in batches] == [4, 4, 2]
    assert torch.equal(torch.cat([x for x, _ in batches]), a) and torch.equal(torch.cat([y for _, y in batches]), b)


def test_iterate_shuffles_reproducibly():
    a = torch.arange(10)
    first = torch.cat([x for x, in data.iterate((a,), 3, True, torch.Generator().manual_seed(0))])
    again = torch.cat([x for x, in data.iterate((a,), 3, True, torch.Generator().manual_seed(0))])
    assert torch.equal(first, again) and not torch.equal(first, a)
    assert torch.equal(first.sort().values, a)


def test_semi_supervised_batches_cover_the_unlabelled_set_once(halves):
    batches = list(data.semi_supervised_batches(halves, 128, torch.Generator().manual_seed(0)))
    assert len(batches) == math.ceil(1297 / 128)
    labelled, unlabelled = batches[0]
    assert set(labelled) == {"x", "w", "y"} and set(unlabelled) == {"x", "w"}
    assert rows(*(torch.cat([u[k] for _, u in batches]) for k in "xw")) == rows(*halves.unlabelled)
    for labelled, _ in batches:  # 100 labelled rows: each batch is one full reshuffled pass
        assert rows(labelled["x"], labelled["w"], labelled["y"]) == rows(*halves.labelled)


def test_semi_supervised_batches_cycle_through_the_labelled_set(halves):
    batches = list(data.semi_supervised_batches(halves, 64, torch.Generator().manual_seed(0), labelled_batch_size=30))
    sizes = {len(labelled["x"]) for labelled, _ in batches}
    assert sizes == {30}
    seen = [rows(labelled["x"], labelled["w"]) for labelled, _ in batches]
    assert all(len(s) == 30 for s in seen)  # no row twice within one batch
    assert set().union(*seen[:3]) <= rows(*halves.labelled[:2]) and len(set().union(*seen[:3])) == 90
    assert len(set().union(*seen)) == 100


# --- command line -------------------------------------------------------------------------------------------

def test_command_line_options():
    parser = data.add_arguments(argparse.ArgumentParser())
    args = parser.parse_args(["--pairing", "noisy", "--labels", "all", "--noise", "0.1", "--rotation", "0"])
    assert (args.dataset, args.labels, args.data_root, args.download) == ("digits", "all", None, False)
    paired = data.from_args(args)
    assert len(paired.labelled[0]) == 1397 and "noise std 0.1" in paired.description
    assert parser.parse_args([]).labels == 100 and parser.parse_args([]).rotation == math.pi / 4
    assert "mnist/fashion read IDX files from --data-root (torchvision layout or a folder of the four IDX files)" \
        in " ".join(parser.format_help().split())


def test_command_line_rejects_bad_labels(capsys):
    with pytest.raises(SystemExit):
        data.add_arguments(argparse.ArgumentParser()).parse_args(["--labels", "some"])
    assert "invalid int_or_all value: 'some'" in capsys.readouterr().err


def test_label_counts_the_training_set_cannot_give_raise():
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match=r"labels=0 must be at least 1"):
        data.labelled_indices(np.ones((10, 4)), 0, 4, rng)  # multi-hot labels
    y = np.array([0] + [1] * 20)  # one example of class 0
    with pytest.raises(ValueError, match=r"labels=10 needs 5 examples of class 0 but the training set has 1; "
                                         r"use fewer labels"):
        data.labelled_indices(y, 10, 2, rng)


def test_semi_supervised_scripts_refuse_multilabel_features(tmp_path):
    from common import training
    np.savez(tmp_path / "f.npz", **make_features(0, multilabel=True))
    parser = argparse.ArgumentParser()
    training.add_arguments(parser, "script.py")
    data.add_arguments(parser)
    args = parser.parse_args(["--dataset", "features", "--data-root", str(tmp_path / "f.npz"), "--labels", "10"])
    with pytest.raises(training.UsageError, match=r"^--dataset features: the semi-supervised models classify into "
                                                  r"one of K classes; the features given are multi-label"):
        training.load_data(args, torch.device("cpu"))
