"""
Language models of four architectures on one recurrence (Mamba-1, Mamba-2, GLA, RWKV-6; the paper's
fig. 1 and 10), and loading them: from this project's runs, or from the official checkpoints, whose
file formats checkpoints.py reads.

The mixers, what each architecture computes per token, are mixers.py; this file stacks them into a
language model (config, residual blocks, embedding and head, generation) and loads it: the
split falls where a reader who wants one architecture's equations stops, and one who wants to train
or load a model starts. All four mixers run the diagonal linear recurrence of scan_kernel.py (paper
eq. 1, in the kernel's names):
    S_t = diag(exp(g_t)) S_{t-1} + k_t v_t^T        o_t = S_t^T q_t
(README.md, "The models and the official checkpoints", has the table; mixers.py the glossary, per
architecture.)

The recurrent state, one dict per layer, is where the paper's interventions act (sec. 4):
    states = [states_0, ..., states_{L-1}]     L = n_layer; Bsz = the batch size
      "S":     (Bsz, H, K, V) float32, the matrix state h of eq. 1, in every architecture: the
               interventions (interventions.py) and the state statistics (evaluate.py) read this key
      Mamba-1: "conv" (Bsz, d_inner, d_conv - 1), the short causal conv's last inputs, oldest first;
               S: H, K, V = d_inner, d_state, 1
      Mamba-2: "conv" (Bsz, conv_dim, d_conv - 1), conv_dim = d_inner + 2 * ngroups * d_state
               (x, B, C before the conv);
               S: H, K, V = nheads, d_state, headdim (mamba_ssm stores its transpose)
      GLA:     S only: H, K, V = num_heads, head_k_dim, head_v_dim
      RWKV-6:  "att_shift", "ffn_shift" (Bsz, d_model): the last token's input to the time mix and
               to the channel mix (their token shift);
               S: H, K, V = d_model / headdim, headdim, headdim
states=None means all zero (LM.zero_states writes them out). forward returns the states after the
last token, still attached to the graph: detach them before handing them to another batch (state
passing, TBTT).
"""
import dataclasses
import math
import numbers
import os
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

import rundir
from mixers import GLA, RMSNorm, RWKV6Block, Mamba1, Mamba2

ARCHS = ("mamba1", "mamba2", "gla", "rwkv6")


@dataclass
class ModelConfig:
    arch: str = "mamba2"               # "mamba1", "mamba2", "gla" or "rwkv6"
    vocab_size: int = 50277            # GPT-NeoX's tokenizer, as the official Mamba checkpoints
    pad_vocab_size_multiple: int = 8   # the embedding has vocab_size rounded up to this
                                       # (the checkpoints: 16)
    d_model: int = 768
    n_layer: int = 24
    tie_embeddings: bool = None        # lm_head shares the embedding matrix;
                                       # None: all but RWKV-6 do
    residual_in_fp32: bool = True      # the residual stream stays float32
                                       # even when the weights are not
    norm_eps: float = None             # None: 1e-6 for GLA (fla), 1e-5 for the others
    d_intermediate: int = 0            # Mamba's gated MLP after each mixer;
                                       # 0 = none (the official LMs)
    scan_backend: str = "auto"         # "triton", "chunked", "ref"; "auto": triton on CUDA, else
                                       # chunked (Mamba-1: ref, mixers.Mamba1 says why)
    chunk_size: int = None             # a power of two, at most mixers.CHUNK_MAX = 64 used; None:
                                       # 4 Mamba-1 (mixers.Mamba1 says why), 64 the others
    # Mamba-1 and Mamba-2, defaults of mamba_ssm's Mamba and Mamba2 modules (a checkpoint's ssm_cfg
    # overrides them)
    d_state: int = None                # None: 16 for Mamba-1, 128 for Mamba-2
    d_conv: int = 4
    expand: int = 2
    dt_min: float = 0.001              # dt starts log-uniform in [dt_min, dt_max]: slower decays
                                       # make the failure larger (docs/experiments.md,
                                       # "What made the failure larger")
    dt_max: float = 0.1
    dt_init_floor: float = 1e-4
    bias: bool = False                 # bias in in_proj and out_proj
    conv_bias: bool = True
    dt_rank: int = None                # Mamba-1: dt's low rank; None: ceil(d_model / 16)
                                       # (mamba_ssm's "auto")
    headdim: int = 64                  # Mamba-2's head width, and RWKV-6's (its head_size, K = V)
    ngroups: int = 1                   # Mamba-2 from here on
    A_init_range: tuple = (1, 16)
    dt_limit: tuple = (0.0, float("inf"))
    D_has_hdim: bool = False           # D per channel instead of per head
    rmsnorm: bool = True               # the gated RMSNorm before out_proj (False: y * silu(z))
    norm_before_gate: bool = False
    # GLA, defaults of fla's GatedLinearAttention layer and GLA model
    num_heads: int = 4
    expand_k: float = 0.5
    expand_v: float = 1.0
    gate_low_rank_dim: int = 16
    gate_logit_normalizer: float = 16
    hidden_ratio: float = 4            # the SwiGLU MLP's width, before fla rounds it up
                                       # to a multiple of 256
    # RWKV-6, BlinkDL's sizes below 4096 channels
    maa_rank: int = 32                 # the low rank of the data-dependent token shift
                                       # (time_maa_w1/w2)
    decay_rank: int = 64               # the low rank of the data-dependent decay (time_decay_w1/w2)
    dim_ffn: int = None                # the channel mix's width; None: 3.5 d_model,
                                       # down to a multiple of 32

    def __post_init__(self):
        for f in dataclasses.fields(self):   # a config.json or ckpt.pt may hold anything
            value = getattr(self, f.name)
            if not (value is None and f.default is None or _has_type(value, f.type)):
                raise ValueError(f"{f.name} = {value!r}: must be of type {f.type.__name__}")
        positive = ("vocab_size", "pad_vocab_size_multiple", "d_model", "n_layer", "d_state",
                    "d_conv", "expand", "headdim", "ngroups", "num_heads", "chunk_size", "norm_eps",
                    "dt_rank", "maa_rank", "decay_rank", "dim_ffn")
        for name in positive:
            if getattr(self, name) is not None and getattr(self, name) <= 0:
                raise ValueError(f"{name} = {getattr(self, name)}: must be > 0")
        if self.arch not in ARCHS:
            raise ValueError(f"unknown arch {self.arch!r}: expected one of {', '.join(ARCHS)}")
        if self.scan_backend not in ("auto", "triton", "chunked", "ref"):
            raise ValueError(f"unknown scan_backend {self.scan_backend!r}: "
                             "expected 'auto', 'triton', 'chunked' or 'ref'")
        arch = self.arch
        defaults = dict(norm_eps=1e-6 if arch == "gla" else 1e-5,
                        chunk_size=dict(mamba1=4, mamba2=64, gla=64, rwkv6=64)[arch],
                        d_state=16 if arch == "mamba1" else 128, tie_embeddings=arch != "rwkv6",
                        dt_rank=math.ceil(self.d_model / 16),
                        dim_ffn=int(self.d_model * 3.5) // 32 * 32)
        for name, value in defaults.items():
            if getattr(self, name) is None:
                setattr(self, name, value)
        self.A_init_range, self.dt_limit = tuple(self.A_init_range), tuple(self.dt_limit)
        if arch == "mamba2" and (self.d_inner % self.headdim or self.nheads % self.ngroups):
            raise ValueError(f"expand * d_model = {self.d_inner} must split into heads of headdim "
                             f"{self.headdim}, and the {self.nheads} heads into ngroups = "
                             f"{self.ngroups}")
        if arch == "gla" and (int(self.d_model * self.expand_k) % self.num_heads
                              or int(self.d_model * self.expand_v) % self.num_heads):
            raise ValueError(
                f"the key and value widths must split into num_heads = {self.num_heads}")
        if arch == "rwkv6" and self.d_model % self.headdim:
            raise ValueError(
                f"d_model = {self.d_model} must split into heads of headdim = {self.headdim}")

    @property
    def d_inner(self):
        return self.expand * self.d_model

    @property
    def nheads(self):
        return self.d_inner // self.headdim

    @property
    def padded_vocab_size(self):
        return -(-self.vocab_size // self.pad_vocab_size_multiple) * self.pad_vocab_size_multiple

    @property
    def mlp_width(self):
        """The gated MLP's hidden width, 0 for none: mamba_ssm rounds d_intermediate up to a
        multiple of 128; fla's GLA MLP is 2/3 * hidden_ratio * d_model rounded up to a multiple of
        256. (RWKV-6's channel mix is part of its own block.)"""
        if self.arch in ("mamba1", "mamba2"):
            return -(-self.d_intermediate // 128) * 128
        return -(-int(self.d_model * self.hidden_ratio * 2 / 3) // 256) * 256


def _has_type(value, kind):
    """isinstance, except that a bool is no int, any integer (numpy's too) is an int and a float,
    and a list of numbers is a tuple."""
    if kind is tuple:
        return isinstance(value, (tuple, list)) and all(_has_type(v, float) for v in value)
    if isinstance(value, bool):
        return kind is bool
    return isinstance(value, {int: numbers.Integral, float: numbers.Real}.get(kind, kind))


class MLP(nn.Module):
    """The gated (SwiGLU) MLP: fc2(a * silu(b)) with a, b = fc1(x). mamba_ssm's GatedMLP; fla's GLA
    MLP is the same function with fc1 split into up_proj (a) and gate_proj (b)."""

    def __init__(self, d_model, width):
        super().__init__()
        self.fc1 = nn.Linear(d_model, 2 * width, bias=False)
        self.fc2 = nn.Linear(width, d_model, bias=False)

    def forward(self, x):
        a, b = self.fc1(x).chunk(2, dim=-1)
        return self.fc2(a * F.silu(b))


class Block(nn.Module):
    """Pre-norm residual block of Mamba-1, Mamba-2 and GLA: x + mixer(norm(x)), then
    x + mlp(norm2(x)) when there is an MLP. (RWKV-6 has its own, mixers.RWKV6Block.)"""

    def __init__(self, config):
        super().__init__()
        self.norm = RMSNorm(config.d_model, config.norm_eps)
        self.mixer = dict(mamba1=Mamba1, mamba2=Mamba2, gla=GLA)[config.arch](config)
        if config.mlp_width:
            self.norm2 = RMSNorm(config.d_model, config.norm_eps)
            self.mlp = MLP(config.d_model, config.mlp_width)

    def zero_state(self, batch_size, device):
        return self.mixer.zero_state(batch_size, device)

    def forward(self, x, state=None):
        mixed, state = self.mixer(self.norm(x), state)
        x = x + mixed
        if hasattr(self, "mlp"):
            x = x + self.mlp(self.norm2(x))
        return x, state


class LM(nn.Module):
    """Embedding, n_layer blocks, final norm, lm_head; module names follow mamba_ssm's
    MambaLMHeadModel (RWKV-6's official names are mapped onto them when loading:
    checkpoints.RWKV6_NAMES)."""

    def __init__(self, config):
        super().__init__()
        self.config = config
        rwkv = config.arch == "rwkv6"
        self.backbone = nn.ModuleDict(dict(
            embedding=nn.Embedding(config.padded_vocab_size, config.d_model),
            layers=nn.ModuleList([RWKV6Block(config, i) if rwkv else Block(config)
                                  for i in range(config.n_layer)]),
            norm_f=(nn.LayerNorm if rwkv else RMSNorm)(config.d_model, eps=config.norm_eps),
        ))
        self.lm_head = nn.Linear(config.d_model, config.padded_vocab_size, bias=False)
        self._init_weights()
        if config.tie_embeddings:
            self.lm_head.weight = self.backbone.embedding.weight
        print(f"number of parameters: {sum(p.numel() for p in self.parameters()) / 1e6:.2f}M")

    def _init_weights(self):
        """mamba_ssm's init for Mamba-1 and -2 (PyTorch's default for the linear layers, then
        out_proj and fc2 scaled by 1/sqrt(number of residual branches), as GPT-2); fla's for GLA
        (N(0, 0.02)). Biases zero, embedding N(0, 0.02); the mixers initialise their own dt_bias
        (Mamba-1: dt_proj.bias), A_log and D. RWKV-6: BlinkDL's, a tiny embedding and an
        orthogonal head (its blocks init themselves)."""
        c, emb = self.config, self.backbone.embedding.weight
        if c.arch == "rwkv6":
            nn.init.uniform_(emb, -1e-4, 1e-4)
            nn.init.orthogonal_(self.lm_head.weight,
                                gain=0.5 * math.sqrt(max(1, len(emb) / c.d_model)))
            return
        for name, module in self.named_modules():
            if isinstance(module, nn.Linear):
                if c.arch == "gla":
                    nn.init.normal_(module.weight, std=0.02)
                # dt_proj.bias: dt's init
                if module.bias is not None and not name.endswith("dt_proj"):
                    nn.init.zeros_(module.bias)
        nn.init.normal_(emb, std=0.02)
        if c.arch in ("mamba1", "mamba2"):
            scale = math.sqrt((2 if c.mlp_width else 1) * c.n_layer)
            with torch.no_grad():
                for block in self.backbone.layers:
                    block.mixer.out_proj.weight /= scale
                    if c.mlp_width:
                        block.mlp.fc2.weight /= scale

    def zero_states(self, batch_size, device=None):
        """The all-zero recurrent states, in the layout described at the top of this file."""
        device = device or self.lm_head.weight.device
        return [block.zero_state(batch_size, device) for block in self.backbone.layers]

    def forward(self, idx, targets=None, states=None, last_only=False):
        """idx: (Bsz, T) token ids; targets: (Bsz, T) or None (-1 is ignored); states: per-layer
        list or None. Returns logits (Bsz, T, padded_vocab_size), the mean cross-entropy or None,
        the states after idx. last_only: logits (Bsz, 1, padded_vocab_size) of the last position
        only (targets (Bsz, 1)), for whoever needs just the next token (generate, effrem.py): with
        a 50k vocabulary the projection at every position costs about as much as the rest of a
        small model."""
        if states is not None and len(states) != self.config.n_layer:
            raise ValueError(f"states has {len(states)} entries, the model has "
                             f"{self.config.n_layer} layers")
        V = self.config.vocab_size
        # the embedding would fail, or read padding
        if idx.numel() and (idx.min() < 0 or idx.max() >= V):
            raise ValueError(f"token ids must lie in [0, vocab_size = {V}), got ids in "
                             f"[{int(idx.min())}, {int(idx.max())}]: encode with the tokenizer the "
                             "model was trained with")
        x = self.backbone.embedding(idx)
        if self.config.residual_in_fp32:
            x = x.float()
        new_states = []
        for i, block in enumerate(self.backbone.layers):
            x, state = block(x, None if states is None else states[i])
            new_states.append(state)
        if last_only:
            x = x[:, -1:]
        logits = self.lm_head(self.backbone.norm_f(x))
        loss = None
        if targets is not None:
            loss = F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten(), ignore_index=-1)
        return logits, loss, new_states

    @torch.no_grad()
    def generate(self, idx, max_new_tokens, temperature=0.0, top_k=None):
        """Continue idx (Bsz, T) by max_new_tokens tokens, greedily if temperature == 0.
        The prompt is read once; after that each token costs one step of the recurrence, whatever
        the length so far."""
        new, states = idx, None
        for _ in range(max_new_tokens):
            logits, _, states = self(new, states=states, last_only=True)
            logits = logits[:, -1, :self.config.vocab_size].float()      # never the padding rows
            if temperature == 0:
                new = logits.argmax(dim=-1, keepdim=True)
            else:
                logits = logits / temperature
                if top_k is not None:
                    v, _ = torch.topk(logits, min(top_k, logits.size(-1)))
                    logits[logits < v[:, [-1]]] = -float("inf")
                new = torch.multinomial(F.softmax(logits, dim=-1), num_samples=1)
            idx = torch.cat((idx, new), dim=1)
        return idx

    # ----------------------------------------------------------------------------------------------
    # Loading: this project's runs here, the official checkpoints' formats in checkpoints.py

    @classmethod
    def from_pretrained(cls, name_or_path):
        """Load a model: a directory written by train.py (its ckpt.pt); a mamba_ssm checkpoint,
        Mamba-1 or Mamba-2: a local directory holding config.json and pytorch_model.bin, or a hub id
        such as "state-spaces/mamba-130m" (downloaded with huggingface_hub); or the path of an
        official RWKV-6 .pth file (BlinkDL/rwkv-6-world; its tokenizer: data.get_tokenizer with
        the path of RWKV's world vocabulary). Everything is checked before any weight is assigned;
        every problem raises with the fix in its message."""
        ckpt_file = os.path.join(name_or_path, "ckpt.pt")
        if os.path.isfile(ckpt_file):   # one of this project's training runs
            # damaged or not a checkpoint: the path and the fix
            ckpt = rundir.read_checkpoint(ckpt_file)
            try:
                config = ModelConfig(**ckpt["model_config"])
            except (TypeError, ValueError) as e:
                raise ValueError(
                    f"{ckpt_file}: its model_config does not describe a model: {e}") from None
            model = cls(config)
            model.load_state_dict(ckpt["model"])
            return model
        # checkpoints.py reads the official formats; it needs ModelConfig from this file, so it is
        # imported here, not at the top
        import checkpoints
        config, state_dict, where = checkpoints.read(name_or_path)
        return cls(config)._load_checked(state_dict, where)

    def _load_checked(self, state_dict, where):
        """Load state_dict after checking every key and shape, all problems in one error."""
        expected = self.state_dict()
        missing = sorted(set(expected) - set(state_dict))
        unexpected = sorted(set(state_dict) - set(expected))
        mismatched = [
            f"{k}: {tuple(state_dict[k].shape)} in the file, {tuple(v.shape)} in the model"
            for k, v in expected.items() if k in state_dict and state_dict[k].shape != v.shape]
        problems = [f"{what}:\n  " + "\n  ".join(keys) for what, keys in (("missing keys", missing),
                    ("unexpected keys", unexpected), ("shape mismatches", mismatched)) if keys]
        if problems:
            raise ValueError(f"{where} does not fit the model it describes\n" + "\n".join(problems))
        self.load_state_dict(state_dict)   # tied: lm_head.weight is written into the embedding too
        return self
