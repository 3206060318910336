"""
Mamba-2 and GLA language models on one recurrence, and loading of the official Mamba-2 checkpoints.

Both mixers are the diagonal linear recurrence of scan_kernel.py (paper eq. 1, in the kernel's names):
    S_t = diag(exp(g_t)) S_{t-1} + k_t v_t^T        o_t = S_t^T q_t
They differ only in how they make q, k, v, g from their input and in what they do with o afterwards
(README.md, "One recurrence, many models", has the table for these two and for Mamba-1, RWKV-6, ...).

Glossary: paper (sec. 2.2) -> recurrence -> the names in this file.
    h_t      S      (B, H, K, V) float32. Mamba-2: K, V = d_state, headdim. GLA: K, V = head_k_dim, head_v_dim
    A_t      exp(g) Mamba-2: g = dt * A, A = -exp(A_log), one scalar per head, dt = softplus(. + dt_bias)
                    GLA: g = logsigmoid(gk) / gate_logit_normalizer, one per key channel
    B_t x_t  k v^T  Mamba-2: k = B (shared by the heads of a group), v = dt * x.  GLA: k, v
    C_t      q      Mamba-2: q = C.  GLA: q * K^-0.5
    y_t      o      Mamba-2: y = o + D x, then RMSNorm(y * silu(z)).  GLA: RMSNorm(o) * silu(gate)
    h_{-1}   h0     the initial state: states[l]["S"], zero unless given (the paper's sec. 4 interventions)
    B, T, t         batch size, sequence length, position; H heads; L = n_layer layers

The recurrent state, one entry per layer, is where the paper's interventions act (sec. 4):
    states = [states_0, ..., states_{L-1}]
      Mamba-2: {"conv": (B, conv_dim, d_conv - 1)  the causal conv's last d_conv - 1 inputs (xBC, before
                        the conv), oldest first; conv_dim = d_inner + 2 * ngroups * d_state
                "S":    (B, H, d_state, headdim) float32  (mamba_ssm stores its transpose)}
      GLA:     {"S":    (B, H, head_k_dim, head_v_dim) float32}
states=None means all zero (LM.zero_states writes them out). forward returns the states after the last token,
still attached to the graph: detach them before handing them to another batch (state passing, TBTT).
"""
import dataclasses
import json
import math
import numbers
import os
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

import rundir
import scan_kernel


@dataclass
class ModelConfig:
    arch: str = "mamba2"               # "mamba2" or "gla"
    vocab_size: int = 50277            # GPT-NeoX's tokenizer, as the official Mamba-2 checkpoints
    pad_vocab_size_multiple: int = 8   # the embedding has vocab_size rounded up to this (the checkpoints: 16)
    d_model: int = 768
    n_layer: int = 24
    tie_embeddings: bool = True        # lm_head shares the embedding matrix
    residual_in_fp32: bool = True      # the residual stream stays float32 even when the weights are not
    norm_eps: float = None             # None: 1e-5 for Mamba-2 (mamba_ssm), 1e-6 for GLA (fla)
    d_intermediate: int = 0            # Mamba-2's gated MLP after each mixer; 0 = none (the official LMs)
    scan_backend: str = "auto"         # "triton", "chunked", "ref"; "auto": triton on CUDA, chunked otherwise
    chunk_size: int = None             # a power of two; None: 256 for Mamba-2 (mamba_ssm), 64 for GLA (fla)
    # Mamba-2, defaults of mamba_ssm's Mamba2 module (a checkpoint's ssm_cfg overrides them)
    d_state: int = 128
    d_conv: int = 4
    expand: int = 2
    headdim: int = 64
    ngroups: int = 1
    A_init_range: tuple = (1, 16)
    dt_min: float = 0.001              # dt starts log-uniform in [dt_min, dt_max]: slower decays make the
                                       # failure larger (README.md, "What makes the failure larger")
    dt_max: float = 0.1
    dt_init_floor: float = 1e-4
    dt_limit: tuple = (0.0, float("inf"))
    D_has_hdim: bool = False           # D per channel instead of per head
    rmsnorm: bool = True               # the gated RMSNorm before out_proj (False: y * silu(z))
    norm_before_gate: bool = False
    bias: bool = False                 # bias in in_proj and out_proj
    conv_bias: bool = True
    # GLA, defaults of fla's GatedLinearAttention layer and GLA model
    num_heads: int = 4
    expand_k: float = 0.5
    expand_v: float = 1.0
    gate_low_rank_dim: int = 16
    gate_logit_normalizer: float = 16
    hidden_ratio: float = 4            # the SwiGLU MLP's width, before fla rounds it up to a multiple of 256

    def __post_init__(self):
        for f in dataclasses.fields(self):   # a config.json or ckpt.pt may hold anything
            value = getattr(self, f.name)
            if not (value is None and f.default is None or _has_type(value, f.type)):
                raise ValueError(f"{f.name} = {value!r}: must be of type {f.type.__name__}")
        positive = ("vocab_size", "pad_vocab_size_multiple", "d_model", "n_layer", "d_state", "d_conv",
                    "expand", "headdim", "ngroups", "num_heads", "chunk_size", "norm_eps")
        for name in positive:
            if getattr(self, name) is not None and getattr(self, name) <= 0:
                raise ValueError(f"{name} = {getattr(self, name)}: must be > 0")
        if self.arch not in ("mamba2", "gla"):
            raise ValueError(f"unknown arch {self.arch!r}: expected 'mamba2' or 'gla'")
        if self.scan_backend not in ("auto", "triton", "chunked", "ref"):
            raise ValueError(f"unknown scan_backend {self.scan_backend!r}: "
                             "expected 'auto', 'triton', 'chunked' or 'ref'")
        mamba = self.arch == "mamba2"
        self.norm_eps = self.norm_eps or (1e-5 if mamba else 1e-6)
        self.chunk_size = self.chunk_size or (256 if mamba else 64)
        self.A_init_range, self.dt_limit = tuple(self.A_init_range), tuple(self.dt_limit)
        if mamba and (self.d_inner % self.headdim or self.nheads % self.ngroups):
            raise ValueError(f"expand * d_model = {self.d_inner} must split into heads of headdim "
                             f"{self.headdim}, and the {self.nheads} heads into ngroups = {self.ngroups}")
        if not mamba and (int(self.d_model * self.expand_k) % self.num_heads
                          or int(self.d_model * self.expand_v) % self.num_heads):
            raise ValueError(f"the key and value widths must split into num_heads = {self.num_heads}")

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
        """The gated MLP's hidden width, 0 for none: mamba_ssm rounds d_intermediate up to a multiple of
        128; fla's GLA MLP is 2/3 * hidden_ratio * d_model rounded up to a multiple of 256."""
        if self.arch == "mamba2":
            return -(-self.d_intermediate // 128) * 128
        return -(-int(self.d_model * self.hidden_ratio * 2 / 3) // 256) * 256


def _has_type(value, kind):
    """isinstance, except that a bool is no int, any integer (numpy's too) is an int and a float, and a
    list of numbers is a tuple."""
    if kind is tuple:
        return isinstance(value, (tuple, list)) and all(_has_type(v, float) for v in value)
    if isinstance(value, bool):
        return kind is bool
    return isinstance(value, {int: numbers.Integral, float: numbers.Real}.get(kind, kind))


def recurrence(q, k, v, g, h0, config):
    """Eq. 1 over a sequence with the configured backend: (o (B, T, H, V), S (B, H, K, V) float32).
    The chunk size only sets how the work is split, never the result; the Triton kernel takes up to 128."""
    backend = config.scan_backend
    if backend == "auto":
        backend = "triton" if q.is_cuda and scan_kernel.triton_fits(q.device, q.dtype) else "chunked"
    if backend == "ref":
        return scan_kernel.scan_ref(q, k, v, g, h0)
    if backend == "triton":
        return scan_kernel.scan(q, k, v, g, h0=h0, chunk_size=min(config.chunk_size, 128))
    return scan_kernel.scan_chunked(q, k, v, g, h0=h0, chunk_size=config.chunk_size)


class RMSNorm(nn.Module):
    """x / rms(x) * weight, in float32, over groups of `group_size` channels (default: the whole last dim).
    With a gate z it is the gated norm of Mamba-2 and GLA: RMSNorm(x) * silu(z) if norm_before_gate, else
    RMSNorm(x * silu(z)). Returns the weight's dtype, as mamba_ssm's blocks feed their norms."""

    def __init__(self, dim, eps, group_size=None, norm_before_gate=True):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps, self.group_size, self.norm_before_gate = eps, group_size or dim, norm_before_gate

    def forward(self, x, z=None):
        x = x.float()
        if z is not None and not self.norm_before_gate:
            x = x * F.silu(z.float())
        x = x.unflatten(-1, (-1, self.group_size))
        x = (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)).flatten(-2) * self.weight.float()
        if z is not None and self.norm_before_gate:
            x = x * F.silu(z.float())
        return x.to(self.weight.dtype)


class Mamba2(nn.Module):
    """The Mamba-2 mixer (Dao & Gu, 2024) as in mamba_ssm's Mamba2 module, with the SSD scan done by eq. 1."""

    def __init__(self, config):
        super().__init__()
        c = self.config = config
        self.conv_dim = c.d_inner + 2 * c.ngroups * c.d_state
        # one projection makes, in this order: z (the output gate), xBC (the conv's input: x, B, C), dt
        self.in_proj = nn.Linear(c.d_model, c.d_inner + self.conv_dim + c.nheads, bias=c.bias)
        # depthwise causal conv over time; its left padding is the history carried in states["conv"]
        self.conv1d = nn.Conv1d(self.conv_dim, self.conv_dim, c.d_conv, groups=self.conv_dim,
                                bias=c.conv_bias)
        # dt_bias = softplus^-1(dt), dt log-uniform in [dt_min, dt_max]: at init each head forgets at rate
        # exp(-dt * A) per token, i.e. remembers about 1 / (dt * A) tokens
        dt = torch.exp(torch.rand(c.nheads) * (math.log(c.dt_max) - math.log(c.dt_min)) + math.log(c.dt_min))
        dt = dt.clamp(min=c.dt_init_floor)
        self.dt_bias = nn.Parameter(dt + torch.log(-torch.expm1(-dt)))
        self.A_log = nn.Parameter(torch.empty(c.nheads).uniform_(*c.A_init_range).log())
        self.D = nn.Parameter(torch.ones(c.d_inner if c.D_has_hdim else c.nheads))
        if c.rmsnorm:   # normalised per group of heads, as the groups can be split across devices
            self.norm = RMSNorm(c.d_inner, c.norm_eps, c.d_inner // c.ngroups, c.norm_before_gate)
        self.out_proj = nn.Linear(c.d_inner, c.d_model, bias=c.bias)

    def zero_state(self, batch_size, device):
        c = self.config
        return {"conv": torch.zeros(batch_size, self.conv_dim, c.d_conv - 1, device=device),
                "S": torch.zeros(batch_size, c.nheads, c.d_state, c.headdim, device=device)}

    def forward(self, u, state=None):
        """u: (B, T, d_model), state: this layer's dict or None -> (B, T, d_model), the state after u."""
        c = self.config
        z, xBC, dt = self.in_proj(u).split([c.d_inner, self.conv_dim, c.nheads], dim=-1)
        xBC, conv_state = self.causal_conv(xBC, state)                   # (B, T, conv_dim)
        x, B, C = xBC.split([c.d_inner, c.ngroups * c.d_state, c.ngroups * c.d_state], dim=-1)
        x = x.unflatten(-1, (c.nheads, c.headdim))                       # (B, T, nheads, headdim)

        # the SSM (eq. 1) in the recurrence's names: A_t = exp(g_t), B_t x_t = k_t v_t^T, C_t = q_t
        dt = F.softplus(dt.float() + self.dt_bias.float()).clamp(*c.dt_limit)   # (B, T, nheads), > 0
        A = -torch.exp(self.A_log.float())                               # (nheads,), < 0
        g = dt * A                                                       # (B, T, nheads): log of the decay
        heads_per_group = c.nheads // c.ngroups                          # the heads of a group share B, C
        k = B.unflatten(-1, (c.ngroups, c.d_state)).repeat_interleave(heads_per_group, dim=2)  # (B, T, nheads, d_state)
        q = C.unflatten(-1, (c.ngroups, c.d_state)).repeat_interleave(heads_per_group, dim=2)  # (B, T, nheads, d_state)
        v = x * dt[..., None]                                            # (B, T, nheads, headdim)
        S0 = None if state is None else state["S"]                       # (B, nheads, d_state, headdim)
        y, S = recurrence(q, k, v, g, S0, c)                             # y: (B, T, nheads, headdim)

        D = self.D.view(c.nheads, c.headdim) if c.D_has_hdim else self.D[:, None]
        y = (y + D * x).flatten(-2)                                      # the skip D x_t: (B, T, d_inner)
        y = self.norm(y, z) if c.rmsnorm else y * F.silu(z)
        return self.out_proj(y), {"conv": conv_state, "S": S}

    def causal_conv(self, xBC, state):
        """silu(depthwise causal conv over time): output t sees inputs t - d_conv + 1 .. t, the earliest from
        the state. xBC: (B, T, conv_dim) -> (B, T, conv_dim) and the new conv state (B, conv_dim, d_conv - 1)."""
        c, T = self.config, xBC.shape[1]
        xBC = xBC.transpose(1, 2)                                        # (B, conv_dim, T)
        history = (xBC.new_zeros(len(xBC), self.conv_dim, c.d_conv - 1) if state is None
                   else state["conv"].to(xBC.dtype))
        xBC = torch.cat([history, xBC], dim=2)                           # (B, conv_dim, d_conv - 1 + T)
        # written out, not self.conv1d(xBC): the carried history takes the place of the zero padding
        # (self.conv1d holds the weights in mamba_ssm's layout); out_t = bias + sum_i w_i in_{t-d_conv+1+i}
        w = self.conv1d.weight[:, 0, :, None]                            # (conv_dim, d_conv, 1)
        out = sum(w[:, i] * xBC[:, :, i:i + T] for i in range(c.d_conv))  # (B, conv_dim, T)
        if self.conv1d.bias is not None:
            out = out + self.conv1d.bias[:, None]
        return F.silu(out).transpose(1, 2), xBC[:, :, T:]


class GLA(nn.Module):
    """Gated Linear Attention (Yang et al., 2024) as in fla's GatedLinearAttention layer with its defaults
    (no short conv, swish output gate, fused per-head RMSNorm)."""

    def __init__(self, config):
        super().__init__()
        c = self.config = config
        key_dim, value_dim = int(c.d_model * c.expand_k), int(c.d_model * c.expand_v)
        self.q_proj = nn.Linear(c.d_model, key_dim, bias=False)
        self.k_proj = nn.Linear(c.d_model, key_dim, bias=False)
        self.v_proj = nn.Linear(c.d_model, value_dim, bias=False)
        self.g_proj = nn.Linear(c.d_model, value_dim, bias=False)                    # the output gate
        self.gk_proj = nn.Sequential(nn.Linear(c.d_model, c.gate_low_rank_dim, bias=False),   # low-rank
                                     nn.Linear(c.gate_low_rank_dim, key_dim, bias=True))      # forget gate
        self.o_proj = nn.Linear(value_dim, c.d_model, bias=False)
        self.g_norm = RMSNorm(value_dim // c.num_heads, c.norm_eps, norm_before_gate=True)

    def zero_state(self, batch_size, device):
        c = self.config
        K, V = self.q_proj.out_features // c.num_heads, self.v_proj.out_features // c.num_heads
        return {"S": torch.zeros(batch_size, c.num_heads, K, V, device=device)}

    def forward(self, x, state=None):
        """x: (B, T, d_model), state: this layer's dict or None -> (B, T, d_model), the state after x."""
        c = self.config
        heads = lambda t: t.unflatten(-1, (c.num_heads, -1))            # (B, T, H * d) -> (B, T, H, d)
        q, k, v = heads(self.q_proj(x)), heads(self.k_proj(x)), heads(self.v_proj(x))
        # the forget gate in log space: g = logsigmoid(.) / 16 keeps exp(g) close to 1 (long memory)
        g = heads(F.logsigmoid(self.gk_proj(x).float()) / c.gate_logit_normalizer)
        o, S = recurrence(q * q.shape[-1] ** -0.5, k, v, g, None if state is None else state["S"], c)
        o = self.g_norm(o, heads(self.g_proj(x)))                                # per head, times swish(gate)
        return self.o_proj(o.flatten(-2)), {"S": S}


class MLP(nn.Module):
    """The gated (SwiGLU) MLP: fc2(a * silu(b)) with a, b = fc1(x). mamba_ssm's GatedMLP; fla's GLA MLP is
    the same function with fc1 split into up_proj (a) and gate_proj (b)."""

    def __init__(self, d_model, width):
        super().__init__()
        self.fc1 = nn.Linear(d_model, 2 * width, bias=False)
        self.fc2 = nn.Linear(width, d_model, bias=False)

    def forward(self, x):
        a, b = self.fc1(x).chunk(2, dim=-1)
        return self.fc2(a * F.silu(b))


class Block(nn.Module):
    """Pre-norm residual block: x + mixer(norm(x)), then x + mlp(norm2(x)) when there is an MLP."""

    def __init__(self, config):
        super().__init__()
        self.norm = RMSNorm(config.d_model, config.norm_eps)
        self.mixer = Mamba2(config) if config.arch == "mamba2" else GLA(config)
        if config.mlp_width:
            self.norm2 = RMSNorm(config.d_model, config.norm_eps)
            self.mlp = MLP(config.d_model, config.mlp_width)

    def forward(self, x, state=None):
        mixed, state = self.mixer(self.norm(x), state)
        x = x + mixed
        if hasattr(self, "mlp"):
            x = x + self.mlp(self.norm2(x))
        return x, state


class LM(nn.Module):
    """Embedding, n_layer blocks, final norm, lm_head; module names follow mamba_ssm's MambaLMHeadModel."""

    def __init__(self, config):
        super().__init__()
        self.config = config
        self.backbone = nn.ModuleDict(dict(
            embedding=nn.Embedding(config.padded_vocab_size, config.d_model),
            layers=nn.ModuleList([Block(config) for _ in range(config.n_layer)]),
            norm_f=RMSNorm(config.d_model, config.norm_eps),
        ))
        self.lm_head = nn.Linear(config.d_model, config.padded_vocab_size, bias=False)
        self._init_weights()
        if config.tie_embeddings:
            self.lm_head.weight = self.backbone.embedding.weight
        print(f"number of parameters: {sum(p.numel() for p in self.parameters()) / 1e6:.2f}M")

    def _init_weights(self):
        """mamba_ssm's init for Mamba-2 (PyTorch's default for the linear layers, then out_proj and fc2 scaled
        by 1/sqrt(number of residual branches), as GPT-2); fla's for GLA (N(0, 0.02)). Biases zero, embedding
        N(0, 0.02); the mixers initialise their own dt_bias, A_log and D."""
        c = self.config
        for module in self.modules():
            if isinstance(module, nn.Linear):
                if c.arch == "gla":
                    nn.init.normal_(module.weight, std=0.02)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
        nn.init.normal_(self.backbone.embedding.weight, std=0.02)
        if c.arch == "mamba2":
            scale = math.sqrt((2 if c.mlp_width else 1) * c.n_layer)
            with torch.no_grad():
                for block in self.backbone.layers:
                    block.mixer.out_proj.weight /= scale
                    if c.mlp_width:
                        block.mlp.fc2.weight /= scale

    def zero_states(self, batch_size, device=None):
        """The all-zero recurrent states, in the layout described at the top of this file."""
        device = device or self.lm_head.weight.device
        return [block.mixer.zero_state(batch_size, device) for block in self.backbone.layers]

    def forward(self, idx, targets=None, states=None, last_only=False):
        """idx: (B, T) token ids; targets: (B, T) or None (-1 is ignored); states: per-layer list or None.
        Returns logits (B, T, padded_vocab_size), the mean cross-entropy or None, the states after idx.
        last_only: logits (B, 1, padded_vocab_size) of the last position only (then targets: (B, 1)), for
        whoever needs just the next token (generate, effrem.py): with a 50k vocabulary the projection at
        every position costs about as much as the rest of a small model."""
        if states is not None and len(states) != self.config.n_layer:
            raise ValueError(f"states has {len(states)} entries, the model has {self.config.n_layer} layers")
        V = self.config.vocab_size
        if idx.numel() and (idx.min() < 0 or idx.max() >= V):   # the embedding would fail, or read padding
            raise ValueError(f"token ids must lie in [0, vocab_size = {V}), got ids in [{int(idx.min())}, "
                             f"{int(idx.max())}]: encode with the tokenizer the model was trained with")
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
        """Continue idx (B, T) by max_new_tokens tokens, greedily if temperature == 0. The prompt is read
        once; after that each token costs one step of the recurrence, whatever the length so far."""
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

    # ------------------------------------------------------------------------------------------------
    # The official Mamba-2 checkpoints (state-spaces/mamba2-130m ... mamba2-2.7b), in mamba_ssm's format

    @classmethod
    def from_pretrained(cls, name_or_path):
        """Load a model: a directory written by train.py (its ckpt.pt), or a mamba_ssm checkpoint: a local
        directory holding config.json and pytorch_model.bin, or a hub id such as "state-spaces/mamba2-130m"
        (downloaded with huggingface_hub). Everything is checked before any weight is assigned; every
        problem raises with the fix in its message."""
        ckpt_file = os.path.join(name_or_path, "ckpt.pt")
        if os.path.isfile(ckpt_file):   # one of this project's training runs
            ckpt = rundir.read_checkpoint(ckpt_file)   # damaged or not a checkpoint: the path and the fix
            try:
                config = ModelConfig(**ckpt["model_config"])
            except (TypeError, ValueError) as e:
                raise ValueError(f"{ckpt_file}: its model_config does not describe a model: {e}") from None
            model = cls(config)
            model.load_state_dict(ckpt["model"])
            return model
        config_file, weights_file = checkpoint_files(name_or_path)
        config = config_from_mamba_ssm(_read_json(config_file), where=config_file)
        state_dict = torch.load(weights_file, map_location="cpu", weights_only=True)
        model = cls(config)
        expected = model.state_dict()
        missing = sorted(set(expected) - set(state_dict))
        unexpected = sorted(set(state_dict) - set(expected))
        mismatched = [f"{k}: {tuple(state_dict[k].shape)} in the file, {tuple(v.shape)} in the model"
                      for k, v in expected.items() if k in state_dict and state_dict[k].shape != v.shape]
        problems = [f"{what}:\n  " + "\n  ".join(keys) for what, keys in (("missing keys", missing),
                    ("unexpected keys", unexpected), ("shape mismatches", mismatched)) if keys]
        if problems:
            raise ValueError(f"{weights_file} does not fit the model described by {config_file}\n"
                             + "\n".join(problems))
        model.load_state_dict(state_dict)   # tied: lm_head.weight is written into the embedding too
        return model


def is_hub_id(name):
    """True for a name that can only be a hub id, "owner/name"; False for anything path-like: "x" alone,
    "a/b/c", "./x", "/x", "~/x", or "dir/x" where dir is a local folder (a misspelt path)."""
    parts = name.split("/")
    return (len(parts) == 2 and all(parts) and not name.startswith((".", "~"))
            and not os.path.isdir(parts[0]))


def checkpoint_files(name_or_path):
    """The paths of config.json and pytorch_model.bin: in a local directory, or downloaded from the hub."""
    names = ("config.json", "pytorch_model.bin")
    if os.path.isdir(name_or_path):
        paths = [os.path.join(name_or_path, name) for name in names]
        for path in paths:
            if not os.path.isfile(path):
                raise FileNotFoundError(f"{path} not found: a checkpoint directory holds "
                                        f"{' and '.join(names)}")
        return paths
    if not is_hub_id(name_or_path):   # fail now, not after the hub's retries
        raise FileNotFoundError(f"no checkpoint directory {name_or_path!r}: pass a train.py out_dir, a "
                                f"directory holding {' and '.join(names)}, or a hub id such as "
                                f"state-spaces/mamba2-130m")
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import HFValidationError, LocalEntryNotFoundError
    try:
        return [hf_hub_download(name_or_path, name) for name in names]
    except HFValidationError:
        raise FileNotFoundError(f"no checkpoint directory {name_or_path!r} (nor is it a hub id)") from None
    except LocalEntryNotFoundError:
        raise OSError(
            f"{name_or_path!r} is not a local directory, and it cannot be downloaded from the Hugging "
            f"Face hub: no network (or HF_HUB_OFFLINE is set) and no copy in the hub cache. On a machine "
            f"with a network, download {' and '.join(names)} from https://huggingface.co/{name_or_path} "
            f"into a directory, then pass that directory: LM.from_pretrained('path/to/dir')") from None


def _read_json(path):
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{path} is not valid JSON ({e}): download it again or fix it") from None


def config_from_mamba_ssm(cfg, where="config.json"):
    """A ModelConfig from mamba_ssm's config.json: MambaConfig's fields, ssm_cfg overriding Mamba2's."""
    if not isinstance(cfg, dict) or not isinstance(cfg.get("ssm_cfg", {}), dict):
        raise ValueError(f"{where}: expected a JSON object with an object ssm_cfg, as mamba_ssm writes")
    cfg = dict(cfg)
    ssm_cfg = dict(cfg.pop("ssm_cfg", {}))
    # what mamba_ssm accepts but does not change the computation: kernel choices and init-only options
    for key in ("fused_add_norm", "attn_cfg"):
        cfg.pop(key, None)
    for key in ("use_mem_eff_path", "conv_init"):
        ssm_cfg.pop(key, None)
    if cfg.pop("attn_layer_idx", []):
        raise ValueError(f"{where}: attn_layer_idx is not empty; hybrids with attention are not supported")
    if not cfg.pop("rms_norm", True):
        raise ValueError(f"{where}: rms_norm is false (LayerNorm); only RMSNorm models are supported")
    layer = ssm_cfg.pop("layer", "Mamba1")   # mamba_ssm's default is Mamba1
    if layer != "Mamba2":
        raise ValueError(f"{where}: ssm_cfg.layer is {layer!r}; only Mamba2 checkpoints are supported")
    top = ("d_model", "n_layer", "vocab_size", "d_intermediate", "pad_vocab_size_multiple",
           "tie_embeddings", "residual_in_fp32")
    ssm = ("d_state", "d_conv", "expand", "headdim", "ngroups", "A_init_range", "dt_min", "dt_max",
           "dt_init_floor", "dt_limit", "D_has_hdim", "rmsnorm", "norm_before_gate", "bias", "conv_bias",
           "chunk_size")
    d_ssm = ssm_cfg.pop("d_ssm", None)
    unknown = sorted(set(cfg) - set(top)) + [f"ssm_cfg.{k}" for k in sorted(set(ssm_cfg) - set(ssm))]
    if unknown:
        raise ValueError(f"{where}: unknown keys {', '.join(unknown)}")
    try:
        config = ModelConfig(arch="mamba2", **cfg, **ssm_cfg)
    except ValueError as e:
        raise ValueError(f"{where}: {e}") from None
    if d_ssm not in (None, config.d_inner):
        raise ValueError(f"{where}: ssm_cfg.d_ssm = {d_ssm} != expand * d_model = {config.d_inner}; "
                         "a partial SSM width is not supported")
    return config
