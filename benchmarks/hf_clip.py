"""A Hugging Face ``transformers`` CLIP built offline from an open_clip CLIP, for comparison.

:func:`hf_clip` converts an open_clip ``CLIP`` (OpenAI-style ViT, e.g. ``ViT-B-32-quickgelu``)
into a ``transformers.CLIPModel`` with the same weights; :func:`hf_tokenizer` builds the CLIP
tokenizer from open_clip's bundled BPE file and :func:`hf_image_processor` the
``CLIPImageProcessor`` that matches open_clip's preprocessing, so that nothing is downloaded.
:func:`check_conversion` compares the two models' embeddings.

``transformers`` is imported only when these run: ``pip install -e ".[worldwide]"``.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

import open_clip
import torch
import torch.nn.functional as F
from open_clip.tokenizer import bytes_to_unicode, default_bpe
from PIL import Image


def require_transformers() -> Any:
    """The ``transformers`` module, or exit with the command that installs it."""
    try:
        import transformers
    except ImportError as e:
        raise SystemExit(
            "benchmarks: the Hugging Face pipeline comparison needs transformers: "
            'pip install -e ".[worldwide]"'
        ) from e
    return transformers


def hf_config(architecture: str) -> Any:
    """A ``CLIPConfig`` with the shapes of open_clip's ``architecture`` (an OpenAI-style ViT)."""
    transformers = require_transformers()
    config = open_clip.get_model_config(architecture)
    vision, text = config["vision_cfg"], config["text_cfg"]
    act = "quick_gelu" if config.get("quick_gelu") else "gelu"
    return transformers.CLIPConfig(
        text_config={
            "vocab_size": text["vocab_size"],
            "hidden_size": text["width"],
            "intermediate_size": int(text["width"] * text.get("mlp_ratio", 4.0)),
            "num_hidden_layers": text["layers"],
            "num_attention_heads": text["heads"],
            "max_position_embeddings": text["context_length"],
            "hidden_act": act,
            "layer_norm_eps": 1e-5,
            "projection_dim": config["embed_dim"],
            "bos_token_id": 49406,
            "eos_token_id": 49407,  # pools at the first end-of-text token, as open_clip does
            "pad_token_id": 49407,
        },
        vision_config={
            "hidden_size": vision["width"],
            "intermediate_size": int(vision["width"] * vision.get("mlp_ratio", 4.0)),
            "num_hidden_layers": vision["layers"],
            "num_attention_heads": vision["width"] // vision.get("head_width", 64),
            "image_size": vision["image_size"],
            "patch_size": vision["patch_size"],
            "hidden_act": act,
            "layer_norm_eps": 1e-5,
            "projection_dim": config["embed_dim"],
        },
        projection_dim=config["embed_dim"],
    )


def convert_state_dict(
    state: dict[str, torch.Tensor], vision_layers: int, text_layers: int
) -> dict[str, torch.Tensor]:
    """open_clip CLIP tensor names and layouts -> ``transformers.CLIPModel``'s.

    Raises ``ValueError`` if a tensor of ``state`` (other than the causal mask buffer) is left
    unmapped.
    """
    out: dict[str, torch.Tensor] = {}
    used: set[str] = set()

    def take(name: str) -> torch.Tensor:
        used.add(name)
        return state[name]

    def copy(src: str, dst: str, suffixes: tuple[str, ...] = ("weight", "bias")) -> None:
        for suffix in suffixes:
            out[f"{dst}.{suffix}"] = take(f"{src}.{suffix}")

    def blocks(src: str, dst: str, layers: int) -> None:
        for i in range(layers):
            s, d = f"{src}.resblocks.{i}", f"{dst}.layers.{i}"
            for suffix in ("weight", "bias"):
                q, k, v = take(f"{s}.attn.in_proj_{suffix}").chunk(3)
                out[f"{d}.self_attn.q_proj.{suffix}"] = q
                out[f"{d}.self_attn.k_proj.{suffix}"] = k
                out[f"{d}.self_attn.v_proj.{suffix}"] = v
            copy(f"{s}.attn.out_proj", f"{d}.self_attn.out_proj")
            copy(f"{s}.ln_1", f"{d}.layer_norm1")
            copy(f"{s}.ln_2", f"{d}.layer_norm2")
            copy(f"{s}.mlp.c_fc", f"{d}.mlp.fc1")
            copy(f"{s}.mlp.c_proj", f"{d}.mlp.fc2")

    out["vision_model.embeddings.patch_embedding.weight"] = take("visual.conv1.weight")
    out["vision_model.embeddings.class_embedding"] = take("visual.class_embedding")
    out["vision_model.embeddings.position_embedding.weight"] = take("visual.positional_embedding")
    copy("visual.ln_pre", "vision_model.pre_layrnorm")  # sic: transformers' spelling
    blocks("visual.transformer", "vision_model.encoder", vision_layers)
    copy("visual.ln_post", "vision_model.post_layernorm")
    out["visual_projection.weight"] = take("visual.proj").T

    out["text_model.embeddings.token_embedding.weight"] = take("token_embedding.weight")
    out["text_model.embeddings.position_embedding.weight"] = take("positional_embedding")
    blocks("transformer", "text_model.encoder", text_layers)
    copy("ln_final", "text_model.final_layer_norm")
    out["text_projection.weight"] = take("text_projection").T
    out["logit_scale"] = take("logit_scale").reshape(())

    left = sorted(set(state) - used - {"attn_mask"})
    if left:
        raise ValueError(f"open_clip tensors without a transformers name: {left}")
    return {k: v.detach().clone().contiguous() for k, v in out.items()}


def hf_clip(model: open_clip.CLIP, architecture: str) -> Any:
    """A ``transformers.CLIPModel`` (fp32, eval mode) with ``model``'s weights, on its device."""
    transformers = require_transformers()
    config = hf_config(architecture)
    hf = transformers.CLIPModel(config).eval()
    state = convert_state_dict(
        model.state_dict(),
        config.vision_config.num_hidden_layers,
        config.text_config.num_hidden_layers,
    )
    missing, unexpected = hf.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.endswith("position_ids")]  # index buffers
    if missing or unexpected:
        raise ValueError(f"conversion: missing {missing}, unexpected {unexpected}")
    return hf.to(next(model.parameters()).device)


def hf_tokenizer(directory: Path, context_length: int = 77) -> Any:
    """The CLIP tokenizer (``CLIPTokenizerFast``), from open_clip's ``bpe_simple_vocab_16e6``.

    Writes ``vocab.json`` and ``merges.txt`` into ``directory`` the way open_clip's
    ``SimpleTokenizer`` reads the BPE file, with transformers' names of the two special tokens.
    """
    transformers = require_transformers()
    lines = gzip.open(default_bpe()).read().decode("utf-8").split("\n")
    merges = [tuple(line.split()) for line in lines[1 : 49152 - 256 - 2 + 1]]
    symbols = list(bytes_to_unicode().values())
    tokens = symbols + [s + "</w>" for s in symbols] + ["".join(m) for m in merges]
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(tokens)}))
    (directory / "merges.txt").write_text(
        "#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges)
    )
    return transformers.CLIPTokenizerFast.from_pretrained(
        str(directory), model_max_length=context_length
    )


def hf_image_processor(architecture: str) -> Any:
    """A ``CLIPImageProcessor`` set up like open_clip's preprocessing of ``architecture``:
    bicubic resize of the shortest side, centre crop, OpenAI mean and std."""
    transformers = require_transformers()
    size = open_clip.get_model_config(architecture)["vision_cfg"]["image_size"]
    return transformers.CLIPImageProcessor(
        size={"shortest_edge": size},
        crop_size={"height": size, "width": size},
        image_mean=list(open_clip.OPENAI_DATASET_MEAN),
        image_std=list(open_clip.OPENAI_DATASET_STD),
        resample=Image.Resampling.BICUBIC,
    )


@torch.inference_mode()
def check_conversion(
    model: open_clip.CLIP,
    preprocess: Any,
    hf: Any,
    tokenizer: Any,
    processor: Any,
    architecture: str,
    images: list[Path],
    texts: list[str],
) -> dict[str, float]:
    """Compare open_clip's and the converted model's embeddings.

    ``image_cosine`` and ``text_cosine`` (minimum over ``images`` and ``texts``) feed both
    models the same pixels and token ids; ``token_ids_equal`` is 1.0 if the transformers
    tokenizer gives open_clip's ids; ``own_preprocessing_image_cosine`` lets each library decode
    and preprocess the files itself (open_clip's transform vs ``CLIPImageProcessor``).
    """
    device = next(model.parameters()).device
    pils = [Image.open(p).convert("RGB") for p in images]
    pixels = torch.stack([preprocess(im) for im in pils]).to(device)
    open_clip_tokens = open_clip.get_tokenizer(architecture)(texts)
    encoded = tokenizer(texts, padding=True, return_tensors="pt")
    ids, mask = encoded["input_ids"], encoded["attention_mask"]
    lengths = mask.sum(1).tolist()
    same_ids = all(
        ids[i, :n].tolist() == open_clip_tokens[i, :n].tolist()
        and not open_clip_tokens[i, n:].any()
        for i, n in enumerate(lengths)
    )
    image = F.normalize(model.encode_image(pixels), dim=-1)
    text = F.normalize(model.encode_text(open_clip_tokens.to(device)), dim=-1)
    ids, mask = ids.to(device), mask.to(device)
    out = hf(pixel_values=pixels, input_ids=ids, attention_mask=mask)
    hf_pixels = processor(images=pils, return_tensors="pt")["pixel_values"].to(device)
    own = hf(pixel_values=hf_pixels, input_ids=ids, attention_mask=mask)
    return {
        "image_cosine": float((image * out.image_embeds).sum(-1).min()),
        "text_cosine": float((text * out.text_embeds).sum(-1).min()),
        "token_ids_equal": float(same_ids),
        "logit_scale_difference": float(abs(model.logit_scale.exp() - hf.logit_scale.exp())),
        "own_preprocessing_image_cosine": float((image * own.image_embeds).sum(-1).min()),
        "images": float(len(images)),
        "texts": float(len(texts)),
    }
