"""
The official checkpoints' formats, read into a ModelConfig and a state dict under LM's names:
  - Mamba-1 and Mamba-2 (state-spaces/mamba-130m ... mamba-2.8b, mamba2-130m ... mamba2-2.7b) in
    mamba_ssm's format: a directory, or a hub id, holding config.json (MambaConfig's fields, the
    layer's options in ssm_cfg) and pytorch_model.bin (mamba_ssm's names, which LM keeps);
  - RWKV-6 in BlinkDL's .pth files (BlinkDL/rwkv-6-world): only a state dict; the sizes are read
    from the tensors' shapes, as his loader does, and the names mapped onto LM's (RWKV6_NAMES).
model.LM.from_pretrained calls read() and checks every key and shape before loading. Every problem
raises with the file and the fix in its message.

Out of model.py: a reader of the model stops before the file formats, and this is the one place
that knows them.
"""
import json
import os

import torch

from model import ModelConfig


def read(name_or_path):
    """(config, state_dict, where) of an official checkpoint: an RWKV-6 .pth path, or a mamba_ssm
    directory or hub id. where names the files, for the loader's errors."""
    if name_or_path.endswith(".pth"):
        if not os.path.isfile(name_or_path):
            raise FileNotFoundError(
                f"{name_or_path} not found: pass the path of an RWKV-6 .pth file")
        state_dict = torch.load(name_or_path, map_location="cpu", weights_only=True)
        config = config_from_rwkv6(state_dict, where=name_or_path)
        return config, rwkv6_renamed(state_dict), name_or_path
    config_file, weights_file = checkpoint_files(name_or_path)
    config = config_from_mamba_ssm(_read_json(config_file), where=config_file)
    state_dict = torch.load(weights_file, map_location="cpu", weights_only=True)
    return config, state_dict, f"{weights_file} (described by {config_file})"


def is_hub_id(name):
    """True for a name that can only be a hub id, "owner/name"; False for anything path-like:
    "x" alone, "a/b/c", "./x", "/x", "~/x", or "dir/x" where dir is a local folder
    (a misspelt path)."""
    parts = name.split("/")
    return (len(parts) == 2 and all(parts) and not name.startswith((".", "~"))
            and not os.path.isdir(parts[0]))


def checkpoint_files(name_or_path):
    """The paths of config.json and pytorch_model.bin: in a local directory, or downloaded
    from the hub."""
    names = ("config.json", "pytorch_model.bin")
    if os.path.isdir(name_or_path):
        paths = [os.path.join(name_or_path, name) for name in names]
        for path in paths:
            if not os.path.isfile(path):
                raise FileNotFoundError(f"{path} not found: a checkpoint directory holds "
                                        f"{' and '.join(names)}")
        return paths
    if not is_hub_id(name_or_path):   # fail now, not after the hub's retries
        raise FileNotFoundError(f"no checkpoint directory {name_or_path!r}: pass a train.py "
                                f"out_dir, a directory holding {' and '.join(names)}, or a hub id "
                                "such as state-spaces/mamba2-130m")
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import HFValidationError, LocalEntryNotFoundError
    try:
        return [hf_hub_download(name_or_path, name) for name in names]
    except HFValidationError:
        raise FileNotFoundError(
            f"no checkpoint directory {name_or_path!r} (nor is it a hub id)") from None
    except LocalEntryNotFoundError:
        raise OSError(
            f"{name_or_path!r} is not a local directory, and it cannot be downloaded from the "
            "Hugging Face hub: no network (or HF_HUB_OFFLINE is set) and no copy in the hub cache. "
            f"On a machine with a network, download {' and '.join(names)} from "
            f"https://huggingface.co/{name_or_path} into a directory, then pass that directory: "
            "LM.from_pretrained('path/to/dir')") from None


def _read_json(path):
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{path} is not valid JSON ({e}): download it again or fix it") from None


def config_from_mamba_ssm(cfg, where="config.json"):
    """A ModelConfig from mamba_ssm's config.json: MambaConfig's fields, ssm_cfg overriding the
    defaults of its layer, Mamba1 (mamba_ssm's default) or Mamba2."""
    if not isinstance(cfg, dict) or not isinstance(cfg.get("ssm_cfg", {}), dict):
        raise ValueError(
            f"{where}: expected a JSON object with an object ssm_cfg, as mamba_ssm writes")
    cfg = dict(cfg)
    ssm_cfg = dict(cfg.pop("ssm_cfg", {}))
    layer = ssm_cfg.pop("layer", "Mamba1")
    if layer not in ("Mamba1", "Mamba2"):
        raise ValueError(f"{where}: ssm_cfg.layer is {layer!r}; expected Mamba1 or Mamba2")
    # what mamba_ssm accepts but does not change the computation:
    # kernel choices and init-only options
    for key in ("fused_add_norm", "attn_cfg"):
        cfg.pop(key, None)
    for key in ("use_mem_eff_path", "conv_init", "use_fast_path", "dt_init", "dt_scale"):
        ssm_cfg.pop(key, None)
    if ssm_cfg.get("dt_rank") == "auto":
        del ssm_cfg["dt_rank"]
    if cfg.pop("attn_layer_idx", []):
        raise ValueError(
            f"{where}: attn_layer_idx is not empty; hybrids with attention are not supported")
    if not cfg.pop("rms_norm", True):
        raise ValueError(
            f"{where}: rms_norm is false (LayerNorm); only RMSNorm models are supported")
    top = ("d_model", "n_layer", "vocab_size", "d_intermediate", "pad_vocab_size_multiple",
           "tie_embeddings", "residual_in_fp32")
    ssm = ("d_state", "d_conv", "expand", "dt_min", "dt_max", "dt_init_floor", "bias", "conv_bias")
    ssm += ("dt_rank",) if layer == "Mamba1" else (
        "headdim", "ngroups", "A_init_range", "dt_limit", "D_has_hdim", "rmsnorm",
        "norm_before_gate", "chunk_size")
    d_ssm = ssm_cfg.pop("d_ssm", None) if layer == "Mamba2" else None
    unknown = (sorted(set(cfg) - set(top))
               + [f"ssm_cfg.{k}" for k in sorted(set(ssm_cfg) - set(ssm))])
    if unknown:
        raise ValueError(f"{where}: unknown keys {', '.join(unknown)} (for a {layer} model)")
    try:
        config = ModelConfig(arch=layer.lower(), **cfg, **ssm_cfg)
    except ValueError as e:
        raise ValueError(f"{where}: {e}") from None
    if d_ssm not in (None, config.d_inner):
        raise ValueError(f"{where}: ssm_cfg.d_ssm = {d_ssm} != expand * d_model = "
                         f"{config.d_inner}; a partial SSM width is not supported")
    return config


# BlinkDL's names -> LM's (mamba_ssm's); inside a block the names are his (mixers.RWKV6Block)
RWKV6_NAMES = {"emb.": "backbone.embedding.", "blocks.": "backbone.layers.",
               "ln_out.": "backbone.norm_f.", "head.": "lm_head."}


def rwkv6_renamed(state_dict):
    """An RWKV-6 state dict under LM's names (RWKV6_NAMES); a key it does not know is kept as
    it is."""
    def rename(key):
        prefix = next((p for p in RWKV6_NAMES if key.startswith(p)), None)
        return key if prefix is None else RWKV6_NAMES[prefix] + key[len(prefix):]
    return {rename(k): v for k, v in state_dict.items()}


def config_from_rwkv6(state_dict, where):
    """A ModelConfig from the shapes of an RWKV-6 state dict, as BlinkDL's loader reads them: the
    vocabulary and width from emb.weight, the layers from the block numbers, heads from
    time_faaaa (H, head_size), the low ranks from time_maa_w2 and time_decay_w1, the channel mix's
    width from ffn.key."""
    if not isinstance(state_dict, dict) or not all(torch.is_tensor(v) for v in state_dict.values()):
        raise ValueError(
            f"{where}: expected a state dict of tensors, as BlinkDL's RWKV-6 .pth files hold")
    try:
        vocab_size, d_model = state_dict["emb.weight"].shape
        n_layer = 1 + max(int(k.split(".")[1]) for k in state_dict if k.startswith("blocks."))
        H, headdim = state_dict["blocks.0.att.time_faaaa"].shape
        maa_rank = state_dict["blocks.0.att.time_maa_w2"].shape[1]
        decay_rank = state_dict["blocks.0.att.time_decay_w1"].shape[1]
        dim_ffn = state_dict["blocks.0.ffn.key.weight"].shape[0]
    except (KeyError, ValueError) as e:
        raise ValueError(f"{where}: not an RWKV-6 (x060) state dict: no {e} of the expected shape; "
                         f"RWKV-4, -5 and -7 files are not supported") from None
    if H * headdim != d_model:
        raise ValueError(
            f"{where}: time_faaaa is ({H}, {headdim}), {H * headdim} channels, the embedding "
            f"{d_model}: an attention width other than d_model is not supported")
    try:
        return ModelConfig(arch="rwkv6", vocab_size=vocab_size, pad_vocab_size_multiple=1,
                           d_model=d_model, n_layer=n_layer, headdim=headdim, maa_rank=maa_rank,
                           decay_rank=decay_rank, dim_ffn=dim_ffn, tie_embeddings=False,
                           residual_in_fp32=True)
    except ValueError as e:
        raise ValueError(f"{where}: {e}") from None
