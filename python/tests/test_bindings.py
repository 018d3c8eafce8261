"""The Python bindings (python/bindings, installed by scripts/python-bindings.sh): parity with `pwlu run` and with
PyTorch on the zoo's models, every input type of `classify`, errors for bad files and arrays, and many threads on
one model."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import pwlu

REPO = Path(__file__).resolve().parents[2]
MODELS = REPO / "models"
LITE0 = MODELS / "efficientnet_lite0.safetensors"
COFFEE = MODELS / "photos" / "coffee.png"
PWLU_CLI = REPO / "target" / "release" / "pwlu"
# Where the zoo wrote PyTorch's logits beside each model, on its crops of the photos.
PARITY_MODELS = ["efficientnet_lite0", "mobilenet_v2", "resnet18"]


@pytest.fixture(scope="module", params=["auto", "cpu"])
def lite0(request) -> pwlu.Model:
    return pwlu.Model(LITE0, backend=request.param, threads=2)


def normalised_crop(parity: dict, crop: str) -> np.ndarray:
    """The zoo's crop as the model's input: scaled to [0, 1], normalised as the file says, NCHW."""
    pre = parity["preprocess"]
    rgb = np.asarray(Image.open(MODELS / crop).convert("RGB"), dtype=np.float32) / 255.0
    x = (rgb - np.array(pre["mean"], np.float32)) / np.array(pre["std"], np.float32)
    return np.ascontiguousarray(x.transpose(2, 0, 1)[None])


@pytest.mark.parametrize("name", PARITY_MODELS)
def test_run_and_classify_match_pytorch(name):
    parity = json.loads((MODELS / f"{name}.parity.json").read_text())
    model = pwlu.Model(MODELS / f"{name}.safetensors", backend="cpu")
    for entry in parity["inputs"]:
        expected = np.array(entry["logits"], np.float32)
        got = model.run(normalised_crop(parity, entry["crop"]))[0]
        assert np.abs(got - expected).max() <= 1e-3 * max(1.0, np.abs(expected).max())
        # The whole path from the photo: decoding and the model's own preprocessing.
        top = model.classify(MODELS / "photos" / entry["photo"], top=5)
        assert [c.index for c in top] == entry["top5"]


def test_winograd_can_be_turned_off():
    parity = json.loads((MODELS / "resnet18.parity.json").read_text())
    crop = normalised_crop(parity, parity["inputs"][0]["crop"])
    fast = pwlu.Model(MODELS / "resnet18.safetensors", backend="cpu", threads=2)
    direct = pwlu.Model(MODELS / "resnet18.safetensors", backend="cpu", threads=2, winograd=False)
    assert direct.info["device"].endswith(", no Winograd)") and "Winograd" not in fast.info["device"]
    a, b = fast.run(crop), direct.run(crop)
    # Close, and not the same bits: the two paths round differently.
    assert np.abs(a - b).max() <= 1e-4 * max(1.0, np.abs(b).max()) and not np.array_equal(a, b)


def test_run_matches_the_cli_bit_for_bit(tmp_path, lite0):
    x = np.sin(0.001 * np.arange(2 * 3 * 224 * 224, dtype=np.float32)).reshape(2, 3, 224, 224)
    np.save(tmp_path / "x.npy", x)
    backend = lite0.info["backend"]
    subprocess.run(
        [str(PWLU_CLI), "run", str(LITE0), "--input", str(tmp_path / "x.npy"), "--output", str(tmp_path / "y.npy"),
         "--backend", "cpu" if backend == "cpu" else "auto", "--threads", "2"],
        check=True,
        capture_output=True,
    )
    np.testing.assert_array_equal(lite0.run(x), np.load(tmp_path / "y.npy"))


def test_classify_takes_paths_bytes_pil_images_and_arrays(lite0):
    from_path = lite0.classify(COFFEE)
    assert from_path[0].label == "espresso" and len(from_path) == 5
    pil = Image.open(COFFEE)
    for image in [str(COFFEE), COFFEE.read_bytes(), pil, pil.convert("RGBA"), np.asarray(pil.convert("RGB"))]:
        top = lite0.classify(image)
        assert [c.index for c in top] == [c.index for c in from_path]
        assert [c.prob for c in top] == pytest.approx([c.prob for c in from_path], abs=1e-6)
    # Any strides: a view with negative steps is the flipped image.
    flipped = np.asarray(pil.convert("RGB"))[:, ::-1]
    assert lite0.classify(flipped)[0].label == lite0.classify(np.ascontiguousarray(flipped))[0].label
    # A list gives one list per image, in order.
    many = lite0.classify([COFFEE, COFFEE.read_bytes()], top=3)
    assert len(many) == 2 and all(len(top) == 3 and top[0].label == "espresso" for top in many)
    assert sum(c.prob for c in lite0.classify(COFFEE, top=1000)) == pytest.approx(1.0, abs=1e-4)


def test_info_labels_and_devices_describe_the_model(lite0):
    info = lite0.info
    assert info["name"] == "efficientnet_lite0" and info["input"] == [3, 224, 224]
    assert info["classes"] == len(lite0.labels) == 1000 and lite0.labels[967] == "espresso"
    assert info["backend"] in ("gpu", "cpu") and info["reason"] and info["device"]
    assert info["flops"] > 0 and info["pwlu_sites"] > 0
    devices = pwlu.devices()
    assert devices["models_run_on"]["backend"] in ("gpu", "cpu")
    assert all({"index", "name", "backend", "device_type"} <= set(a) for a in devices["adapters"])


def test_pwlu_then_pytorchs_triton_in_one_process():
    # Mesa's GL driver (llvmpipe) brings its own LLVM, and importing Triton (torch._dynamo) after it crashed the
    # process: `auto` and `devices()` must not start OpenGL.
    code = (
        "import pwlu; pwlu.devices(); pwlu.Model(%r).run(__import__('numpy').zeros((1, 3, 224, 224), 'float32'));"
        " import torch._dynamo; print('ok')" % str(LITE0)
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-2000:]


def kind_of(excinfo) -> str:
    return excinfo.value.kind


def test_bad_files_are_errors_of_kind_io_or_model(tmp_path):
    with pytest.raises(pwlu.PwluError) as missing:
        pwlu.Model(tmp_path / "missing.safetensors", backend="cpu")
    assert kind_of(missing) == "io" and "missing.safetensors" in str(missing.value)
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json}")
    with pytest.raises(pwlu.PwluError) as bad:
        pwlu.Model(garbage, backend="cpu")
    assert kind_of(bad) == "model"
    with pytest.raises(pwlu.PwluError) as unknown:
        pwlu.Model(LITE0, backend="tpu")
    assert kind_of(unknown) == "adapter" and "tpu" in str(unknown.value)


def test_bad_arrays_and_images_are_input_errors(lite0):
    cases = [
        (np.zeros((1, 3, 224, 224), np.float64), "float32"),
        (np.zeros((3, 224, 224), np.float32), "dimensions"),
        (np.zeros((1, 3, 100, 100), np.float32), "224"),
        ([[1.0]], "numpy"),
    ]
    for x, message in cases:
        with pytest.raises(pwlu.PwluError) as error:
            lite0.run(x)
        assert kind_of(error) == "input" and message in str(error.value), str(error.value)
    for image, message in [
        (np.zeros((8, 8, 3), np.float32), "uint8"),
        (np.zeros((8, 8), np.uint8), "[height, width, 3]"),
        (b"not an image", "image format"),
        (3.5, "file path"),
    ]:
        with pytest.raises(pwlu.PwluError) as error:
            lite0.classify(image)
        assert kind_of(error) == "input" and message in str(error.value), str(error.value)


def test_non_contiguous_arrays_are_read_correctly(lite0):
    x = np.random.default_rng(0).standard_normal((2, 224, 224, 3), dtype=np.float32)
    transposed = x.transpose(0, 3, 1, 2)  # NCHW view of NHWC data: not C-contiguous
    assert not transposed.flags["C_CONTIGUOUS"]
    np.testing.assert_array_equal(lite0.run(transposed), lite0.run(np.ascontiguousarray(transposed)))


def test_many_threads_share_one_model(lite0):
    rng = np.random.default_rng(1)
    inputs = [rng.standard_normal((1, 3, 224, 224), dtype=np.float32) for _ in range(4)]
    expected = [lite0.run(x) for x in inputs]
    failures = []

    def work(i: int) -> None:
        for _ in range(3):
            got = lite0.run(inputs[i % 4])
            if not np.array_equal(got, expected[i % 4]):
                failures.append(i)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not failures


def test_photo_bytes_from_memory(lite0):
    buffer = io.BytesIO()
    Image.open(COFFEE).convert("RGB").save(buffer, format="JPEG", quality=95)
    assert lite0.classify(buffer.getvalue())[0].label == "espresso"


def test_pwlu_torch_checks_an_export_through_the_bindings(tmp_path):
    import torch
    from torch import nn

    from pwlu_torch import check, convert, export

    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 8, 3, stride=2, groups=8),
        nn.Hardswish(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 5),
    ).eval()
    x = torch.randn(2, 3, 16, 16)
    converted, _ = convert(model, x)
    export(converted, str(tmp_path / "small.safetensors"), x)
    result = check(converted, tmp_path / "small.safetensors", x, backend="cpu")
    assert result.backend == "cpu"
    assert result.relative <= 1e-4, result
    # It can fail: the same file against a module whose weights moved.
    import copy

    moved = copy.deepcopy(converted)
    with torch.no_grad():
        next(moved.parameters()).add_(0.1)
    assert check(moved, tmp_path / "small.safetensors", x, backend="cpu").relative > 1e-3
