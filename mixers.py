"""
The token mixers of the four architectures of the paper's fig. 1 and 10, each on the one recurrence.

(Out of model.py, which stacks these layers into a language model and loads the official
checkpoints: what each architecture computes per token is read here, in one file, side by side.)

Every mixer makes q, k, v and the log decay g from its input, runs eq. 1 (scan_kernel.py),
    S_t = diag(exp(g_t)) S_{t-1} + k_t v_t^T        o_t = S_t^T q_t
and makes its output from o. Glossary: paper (sec. 2.2) -> recurrence -> the names in this file.
    h_t      S      (Bsz, H, K, V) float32, per architecture:
                        Mamba-1: H, K, V = d_inner, d_state, 1 (every channel of x is a head)
                        Mamba-2: H, K, V = nheads, d_state, headdim
                        GLA:     H, K, V = num_heads, head_k_dim, head_v_dim
                        RWKV-6:  H, K, V = d_model / headdim, headdim, headdim
    A_t      exp(g) Mamba-1: g = dt * A, A = -exp(A_log) (d_inner, d_state): one per channel and
                             state index
                    Mamba-2: g = dt * A, A = -exp(A_log), one scalar per head;
                             dt = softplus(. + dt_bias)
                    GLA: g = logsigmoid(gk) / gate_logit_normalizer, one per key channel
                    RWKV-6: g = -exp(w), w made from the input, one per key channel
    B_t x_t  k v^T  Mamba-1, Mamba-2: k = B, v = dt * x.  GLA, RWKV-6: k, v
    C_t      q      Mamba: q = C.  GLA: q * K^-0.5.  RWKV-6: r, read from S_{t-1} (RWKV6TimeMix)
    h_{-1}   h0     the initial state: state["S"], zero unless given (the paper's sec. 4
                    interventions)
    Bsz, T, t       batch size, sequence length, position (B is Mamba's input matrix, not the batch)

The recurrent state of a layer is a dict (model.py describes the whole list):
    Mamba-1: {"conv": (Bsz, d_inner, d_conv - 1), "S": (Bsz, d_inner, d_state, 1)}
    Mamba-2: {"conv": (Bsz, conv_dim, d_conv - 1), "S": (Bsz, nheads, d_state, headdim)}
    GLA:     {"S": (Bsz, num_heads, head_k_dim, head_v_dim)}
    RWKV-6:  {"S": (Bsz, H, headdim, headdim), "att_shift": (Bsz, d_model),
              "ffn_shift": (Bsz, d_model)}
"S" is float32 and is what the interventions and the measures read; "conv" holds the short causal
conv's last d_conv - 1 inputs (oldest first), the shifts RWKV-6's previous token (its token shift).
"""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

import scan_kernel


# Both chunked scans take chunks of at most this many tokens, whatever config.chunk_size asks: the
# Triton kernels hold (C, C) tiles of scores in registers, and on 2 CPU cores the passkey
# fine-tuning of the baseline (T = 256) ran at 3,100-3,400 tokens/s in chunks of 256 (mamba_ssm's
# choice for its fused GPU kernel) and at 7,900-8,400 in chunks of 64 (train.py's log).
CHUNK_MAX = 64


def recurrence(q, k, v, g, h0, config):
    """Eq. 1 over a sequence with the configured backend:
    (o (Bsz, T, H, V), S (Bsz, H, K, V) float32). The chunk size only sets how the work is split,
    never the result (the Triton scan picks its own chunk of 16 to 64 tokens from it)."""
    chunk_size = min(config.chunk_size, CHUNK_MAX)
    backend = config.scan_backend
    if backend == "auto":   # V = 1 is Mamba-1, for which the loop is the faster PyTorch (Mamba1)
        backend = ("triton" if q.is_cuda and scan_kernel.triton_fits(q.device, q.dtype)
                   else "ref" if v.shape[-1] == 1 else "chunked")
    if backend == "ref":
        return scan_kernel.scan_ref(q, k, v, g, h0)
    if backend == "triton":
        return scan_kernel.scan(q, k, v, g, h0=h0, chunk_size=chunk_size)
    return scan_kernel.scan_chunked(q, k, v, g, h0=h0, chunk_size=chunk_size)


class RMSNorm(nn.Module):
    """x / rms(x) * weight, in float32, over groups of `group_size` channels (default: the whole
    last dim). With a gate z it is the gated norm of Mamba-2 and GLA: RMSNorm(x) * silu(z) if
    norm_before_gate, else RMSNorm(x * silu(z)). Returns the weight's dtype, as mamba_ssm's blocks
    feed their norms."""

    def __init__(self, dim, eps, group_size=None, norm_before_gate=True):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps, self.group_size, self.norm_before_gate = eps, group_size or dim, norm_before_gate

    def forward(self, x, z=None):
        x = x.float()
        if z is not None and not self.norm_before_gate:
            x = x * F.silu(z.float())
        x = x.unflatten(-1, (-1, self.group_size))
        x = ((x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)).flatten(-2)
             * self.weight.float())
        if z is not None and self.norm_before_gate:
            x = x * F.silu(z.float())
        return x.to(self.weight.dtype)


def causal_conv(conv1d, x, history):
    """silu(depthwise causal conv over time), as Mamba-1 and Mamba-2 apply it: output t sees inputs
    t - d_conv + 1 .. t, the earliest from `history`. x: (Bsz, T, D), history: (Bsz, D, d_conv - 1)
    or None (zeros) -> (Bsz, T, D) and the new history (Bsz, D, d_conv - 1)."""
    (Bsz, T, D), d_conv = x.shape, conv1d.kernel_size[0]
    x = x.transpose(1, 2)                                            # (Bsz, D, T)
    history = x.new_zeros(Bsz, D, d_conv - 1) if history is None else history.to(x.dtype)
    x = torch.cat([history, x], dim=2)                               # (Bsz, D, d_conv - 1 + T)
    # written out, not conv1d(x): the carried history takes the place of the zero padding (conv1d
    # holds the weights in mamba_ssm's layout); out_t = bias + sum_i w_i in_{t-d_conv+1+i}
    w = conv1d.weight[:, 0, :, None]                                 # (D, d_conv, 1)
    out = sum(w[:, i] * x[:, :, i:i + T] for i in range(d_conv))     # (Bsz, D, T)
    if conv1d.bias is not None:
        out = out + conv1d.bias[:, None]
    return F.silu(out).transpose(1, 2), x[:, :, T:]


def dt_bias_init(n, c):
    """softplus^-1(dt), dt log-uniform in [dt_min, dt_max] (mamba_ssm's init, Mamba-1 and -2): at
    init a channel forgets at rate exp(-dt * A) per token, i.e. remembers about 1 / (dt * A)
    tokens."""
    dt = torch.exp(torch.rand(n) * (math.log(c.dt_max) - math.log(c.dt_min)) + math.log(c.dt_min))
    dt = dt.clamp(min=c.dt_init_floor)
    return dt + torch.log(-torch.expm1(-dt))


class Mamba1(nn.Module):
    """The Mamba-1 mixer (Gu & Dao, 2023) as mamba_ssm's Mamba module, its selective scan done by
    eq. 1.

    On the recurrence: the decay exp(dt_t[d] A[d, n]) depends on the channel d of x and on the state
    index n, and every channel has its own state of d_state entries, read by the C_t that all
    channels share. So every channel is a head of K = d_state, V = 1:
        q_t[d] = C_t,  k_t[d] = B_t,  v_t[d] = dt_t[d] x_t[d],  g_t[d, n] = dt_t[d] A[d, n]
    What it costs: q, k and g are handed to the scan at (Bsz, T, d_inner, d_state), d_state times
    the size of x (mamba_ssm's fused kernel never writes them out); and with V = 1 the chunked
    algorithm has no value width to share its scores over: a chunk of C tokens costs about
    C * d_state per token and channel where the loop costs d_state. Hence, on the CPU, "auto" runs
    the loop, scan_ref (recurrence): on 2 cores a training step of the 0.9M baseline's shape (128 x
    16 tokens) took 0.90 s with it against 3.08 s chunked (bench.py; chunks of 4, ModelConfig's
    default for Mamba-1; 7.1 s at 16), and 8 x 2048 tokens of evaluation 0.9 s against 5.3 s. The
    Triton scan pads V to a tile of 16 columns, 15 of them masked."""

    def __init__(self, config):
        super().__init__()
        c = self.config = config
        self.in_proj = nn.Linear(c.d_model, 2 * c.d_inner, bias=c.bias)     # x, z (the gate)
        self.conv1d = nn.Conv1d(c.d_inner, c.d_inner, c.d_conv, groups=c.d_inner, bias=c.conv_bias)
        self.x_proj = nn.Linear(c.d_inner, c.dt_rank + 2 * c.d_state,       # dt (low rank), B, C
                                bias=False)
        self.dt_proj = nn.Linear(c.dt_rank, c.d_inner, bias=True)
        nn.init.uniform_(self.dt_proj.weight, -c.dt_rank ** -0.5, c.dt_rank ** -0.5)
        with torch.no_grad():
            self.dt_proj.bias.copy_(dt_bias_init(c.d_inner, c))
        # S4D-real: A[d, n] = -(n + 1), the same for every channel at init
        A = torch.arange(1, c.d_state + 1, dtype=torch.float32).repeat(c.d_inner, 1)
        self.A_log = nn.Parameter(A.log())                                  # (d_inner, d_state)
        self.D = nn.Parameter(torch.ones(c.d_inner))
        self.out_proj = nn.Linear(c.d_inner, c.d_model, bias=c.bias)

    def zero_state(self, batch_size, device):
        c = self.config
        return {"conv": torch.zeros(batch_size, c.d_inner, c.d_conv - 1, device=device),
                "S": torch.zeros(batch_size, c.d_inner, c.d_state, 1, device=device)}

    def forward(self, u, state=None):
        """u: (Bsz, T, d_model), state: this layer's dict or None -> (Bsz, T, d_model), the state
        after u."""
        c = self.config
        x, z = self.in_proj(u).chunk(2, dim=-1)                  # (Bsz, T, d_inner) each
        x, conv_state = causal_conv(self.conv1d, x, None if state is None else state["conv"])
        dt, B, C = self.x_proj(x).split([c.dt_rank, c.d_state, c.d_state], dim=-1)
        dt = F.softplus(self.dt_proj(dt).float())                # (Bsz, T, d_inner), > 0
        A = -torch.exp(self.A_log.float())                       # (d_inner, d_state), < 0
        g = dt[..., None] * A                                    # (Bsz, T, d_inner, d_state)
        # shared by the channels
        q, k = C[:, :, None].expand(g.shape), B[:, :, None].expand(g.shape)
        v = (dt * x)[..., None]                                  # (Bsz, T, d_inner, 1)
        y, S = recurrence(q, k, v, g, None if state is None else state["S"], c)
        y = (y[..., 0] + self.D * x) * F.silu(z)                 # the skip D x_t, then the gate
        return self.out_proj(y), {"conv": conv_state, "S": S}


class Mamba2(nn.Module):
    """The Mamba-2 mixer (Dao & Gu, 2024) as in mamba_ssm's Mamba2 module, with the SSD scan done
    by eq. 1."""

    def __init__(self, config):
        super().__init__()
        c = self.config = config
        self.conv_dim = c.d_inner + 2 * c.ngroups * c.d_state
        # one projection makes, in this order: z (the output gate), xBC (the conv's input:
        # x, B, C), dt
        self.in_proj = nn.Linear(c.d_model, c.d_inner + self.conv_dim + c.nheads, bias=c.bias)
        # depthwise causal conv over time; its left padding is the history carried in state["conv"]
        self.conv1d = nn.Conv1d(self.conv_dim, self.conv_dim, c.d_conv, groups=self.conv_dim,
                                bias=c.conv_bias)
        self.dt_bias = nn.Parameter(dt_bias_init(c.nheads, c))
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
        """u: (Bsz, T, d_model), state: this layer's dict or None -> (Bsz, T, d_model), the state
        after u."""
        c = self.config
        z, xBC, dt = self.in_proj(u).split([c.d_inner, self.conv_dim, c.nheads], dim=-1)
        xBC, conv_state = causal_conv(self.conv1d, xBC, None if state is None else state["conv"])
        x, B, C = xBC.split([c.d_inner, c.ngroups * c.d_state, c.ngroups * c.d_state], dim=-1)
        x = x.unflatten(-1, (c.nheads, c.headdim))               # (Bsz, T, nheads, headdim)

        # the SSM (eq. 1) in the recurrence's names: A_t = exp(g_t), B_t x_t = k_t v_t^T, C_t = q_t
        dt = (F.softplus(dt.float() + self.dt_bias.float())
              .clamp(*c.dt_limit))                               # (Bsz, T, nheads), > 0
        A = -torch.exp(self.A_log.float())                       # (nheads,), < 0
        g = dt * A                                               # (Bsz, T, nheads): log decay
        per_group = c.nheads // c.ngroups                        # the heads of a group share B, C
        k = (B.unflatten(-1, (c.ngroups, c.d_state))
             .repeat_interleave(per_group, dim=2))               # (Bsz, T, nheads, d_state)
        q = (C.unflatten(-1, (c.ngroups, c.d_state))
             .repeat_interleave(per_group, dim=2))               # (Bsz, T, nheads, d_state)
        v = x * dt[..., None]                                    # (Bsz, T, nheads, headdim)
        S0 = None if state is None else state["S"]               # (Bsz, nheads, d_state, headdim)
        y, S = recurrence(q, k, v, g, S0, c)                     # y: (Bsz, T, nheads, headdim)

        D = self.D.view(c.nheads, c.headdim) if c.D_has_hdim else self.D[:, None]
        y = (y + D * x).flatten(-2)                              # the skip D x_t: (Bsz, T, d_inner)
        y = self.norm(y, z) if c.rmsnorm else y * F.silu(z)
        return self.out_proj(y), {"conv": conv_state, "S": S}


class GLA(nn.Module):
    """Gated Linear Attention (Yang et al., 2024) as in fla's GatedLinearAttention layer with its
    defaults (no short conv, swish output gate, fused per-head RMSNorm)."""

    def __init__(self, config):
        super().__init__()
        c = self.config = config
        key_dim, value_dim = int(c.d_model * c.expand_k), int(c.d_model * c.expand_v)
        self.q_proj = nn.Linear(c.d_model, key_dim, bias=False)
        self.k_proj = nn.Linear(c.d_model, key_dim, bias=False)
        self.v_proj = nn.Linear(c.d_model, value_dim, bias=False)
        self.g_proj = nn.Linear(c.d_model, value_dim, bias=False)        # the output gate
        self.gk_proj = nn.Sequential(                                    # low-rank forget gate
            nn.Linear(c.d_model, c.gate_low_rank_dim, bias=False),
            nn.Linear(c.gate_low_rank_dim, key_dim, bias=True))
        self.o_proj = nn.Linear(value_dim, c.d_model, bias=False)
        self.g_norm = RMSNorm(value_dim // c.num_heads, c.norm_eps, norm_before_gate=True)

    def zero_state(self, batch_size, device):
        c = self.config
        K, V = self.q_proj.out_features // c.num_heads, self.v_proj.out_features // c.num_heads
        return {"S": torch.zeros(batch_size, c.num_heads, K, V, device=device)}

    def forward(self, x, state=None):
        """x: (Bsz, T, d_model), state: this layer's dict or None -> (Bsz, T, d_model), the state
        after x."""
        c = self.config
        heads = lambda t: t.unflatten(-1, (c.num_heads, -1))    # (Bsz, T, H * d) -> (Bsz, T, H, d)
        q, k, v = heads(self.q_proj(x)), heads(self.k_proj(x)), heads(self.v_proj(x))
        # the forget gate in log space: g = logsigmoid(.) / 16 keeps exp(g) close to 1 (long memory)
        g = heads(F.logsigmoid(self.gk_proj(x).float()) / c.gate_logit_normalizer)
        o, S = recurrence(q * q.shape[-1] ** -0.5, k, v, g,
                          None if state is None else state["S"], c)
        o = self.g_norm(o, heads(self.g_proj(x)))               # per head, times swish(gate)
        return self.o_proj(o.flatten(-2)), {"S": S}


# ------------------------------------------------------------------------------------------------
# RWKV-6 (Finch; Peng et al., 2024), as BlinkDL's RWKV-LM (RWKV_Tmix_x060, RWKV_CMix_x060, Block),
# with its parameter names and shapes, so that the official .pth files load as they are.

def shifted(x, prev):
    """The token shift: x_{t-1} at t, `prev` (Bsz, C) or zeros at t = 0. x: (Bsz, T, C)."""
    prev = x.new_zeros(x.shape[0], 1, x.shape[2]) if prev is None else prev[:, None].to(x.dtype)
    return torch.cat([prev, x[:, :-1]], dim=1)


def orthogonal(linear, gain):
    """BlinkDL's init of the matrices: orthogonal, or zero for gain 0 (the branches start as
    identity)."""
    if gain:
        nn.init.orthogonal_(linear.weight, gain=gain)
    else:
        nn.init.zeros_(linear.weight)


class RWKV6TimeMix(nn.Module):
    """RWKV-6's time mix: the token shift interpolated with data-dependent weights (the low-rank
    time_maa_w1/w2), r, k, v, a silu gate, a decay per key channel
    w_t = exp(-exp(time_decay + low-rank of the input)), the bonus u (time_faaaa) for the current
    token, GroupNorm per head. Per head:
        S_t = diag(w_t) S_{t-1} + k_t v_t^T        o_t = r_t^T (S_{t-1} + diag(u) k_t v_t^T)

    On the recurrence: the output reads the state *before* the update, plus the bonus. The scan
    reads after it; fed the inputs one step late, k'_t, v'_t, g'_t = k_{t-1}, v_{t-1}, g_{t-1} with
    k'_0 = 0 and g'_0 = 0 (no decay), its state S'_t is RWKV's S_{t-1}, so q = r gives
    r_t^T S_{t-1} exactly. The bonus (r_t . (u * k_t)) v_t is added outside, and the final state
    S_{T-1} is one more update of the scan's last state S'_{T-1} = S_{T-2}. Both cost
    O(T H K + H K V): nothing next to the scan."""

    def __init__(self, config, layer_id):
        super().__init__()
        c, C = config, config.d_model
        H, K = C // c.headdim, c.headdim
        # BlinkDL's layer ratios
        r01, r10 = layer_id / max(c.n_layer - 1, 1), 1 - layer_id / c.n_layer
        ddd = (torch.arange(C) / C).view(1, 1, C)
        self.time_maa_x = nn.Parameter(1 - ddd ** r10)
        self.time_maa_w = nn.Parameter(1 - ddd ** r10)
        self.time_maa_k = nn.Parameter(1 - ddd ** r10)
        self.time_maa_v = nn.Parameter(1 - (ddd ** r10 + 0.3 * r01))
        self.time_maa_r = nn.Parameter(1 - ddd ** (0.5 * r10))
        self.time_maa_g = nn.Parameter(1 - ddd ** (0.5 * r10))
        self.time_maa_w1 = nn.Parameter(torch.zeros(C, 5 * c.maa_rank))           # w, k, v, r, g
        self.time_maa_w2 = nn.Parameter(torch.empty(5, c.maa_rank, C).uniform_(-0.01, 0.01))
        n = torch.arange(C) / (C - 1)
        # slow to fast
        self.time_decay = nn.Parameter((-6 + 5 * n ** (0.7 + 1.3 * r01)).view(1, 1, C))
        self.time_decay_w1 = nn.Parameter(torch.zeros(C, c.decay_rank))
        self.time_decay_w2 = nn.Parameter(torch.empty(c.decay_rank, C).uniform_(-0.01, 0.01))
        zigzag = ((torch.arange(C) + 1) % 3 - 1) * 0.1
        self.time_faaaa = nn.Parameter((r01 * (1 - n) + zigzag).view(H, K))        # the bonus u
        self.receptance, self.key, self.value, self.gate, self.output = (
            nn.Linear(C, C, bias=False) for _ in range(5))
        for linear, gain in ((self.receptance, 1), (self.key, 0.1), (self.value, 1),
                             (self.gate, 0.1), (self.output, 0)):
            orthogonal(linear, gain)
        # eps: BlinkDL's head_size_divisor 8, squared
        self.ln_x = nn.GroupNorm(H, C, eps=1e-5 * 8 ** 2)
        with torch.no_grad():
            self.ln_x.weight.fill_(((1 + layer_id) / c.n_layer) ** 0.7)
        self.config = c

    def forward(self, x, state=None):
        """x: (Bsz, T, C), ln1's output -> (Bsz, T, C), the state S (Bsz, H, K, V) after x, x's
        last row."""
        H, K = self.time_faaaa.shape
        heads = lambda t: t.unflatten(-1, (H, K))                 # (Bsz, T, C) -> (Bsz, T, H, K)
        xx = shifted(x, None if state is None else state["att_shift"]) - x
        xxx = torch.tanh((x + xx * self.time_maa_x) @ self.time_maa_w1).unflatten(-1, (5, -1))
        # 5 x (Bsz, T, C)
        mw, mk, mv, mr, mg = torch.einsum("btir,irc->ibtc", xxx, self.time_maa_w2)
        r = heads(self.receptance(x + xx * (self.time_maa_r + mr)))
        k = heads(self.key(x + xx * (self.time_maa_k + mk)))
        v = heads(self.value(x + xx * (self.time_maa_v + mv)))
        gate = F.silu(self.gate(x + xx * (self.time_maa_g + mg)))
        xw = x + xx * (self.time_maa_w + mw)
        w = self.time_decay + torch.tanh(xw @ self.time_decay_w1) @ self.time_decay_w2
        g = heads(-torch.exp(w.float()))                          # log decay, (Bsz, T, H, K)

        # t_{t-1}; 0 at t = 0
        late = lambda t: torch.cat([torch.zeros_like(t[:, :1]), t[:, :-1]], dim=1)
        S0 = None if state is None else state["S"]
        o, S = recurrence(r, late(k), late(v), late(g), S0, self.config)  # o_t = r_t^T S_{t-1}
        u = self.time_faaaa.float()
        # the bonus for the current token
        o = o + (r * u * k).sum(-1, keepdim=True) * v
        S = g[:, -1].exp()[..., None] * S + (k[:, -1, :, :, None] * v[:, -1, :, None, :]).float()
        o = self.ln_x(o.flatten(-2).flatten(0, 1)).view(x.shape)         # GroupNorm: per head
        return self.output(o * gate), S, x[:, -1]


class RWKV6ChannelMix(nn.Module):
    """RWKV-6's channel mix: token shift, squared ReLU, sigmoid receptance. x: (Bsz, T, C), ln2's
    output."""

    def __init__(self, config, layer_id):
        super().__init__()
        C = config.d_model
        ddd = (torch.arange(C) / C).view(1, 1, C)
        self.time_maa_k = nn.Parameter(1 - ddd ** (1 - layer_id / config.n_layer))
        self.time_maa_r = nn.Parameter(1 - ddd ** (1 - layer_id / config.n_layer))
        self.key = nn.Linear(C, config.dim_ffn, bias=False)
        self.receptance = nn.Linear(C, C, bias=False)
        self.value = nn.Linear(config.dim_ffn, C, bias=False)
        orthogonal(self.key, math.sqrt(config.dim_ffn / C))
        orthogonal(self.receptance, 0)
        orthogonal(self.value, 0)

    def forward(self, x, prev=None):
        xx = shifted(x, prev) - x
        k = torch.relu(self.key(x + xx * self.time_maa_k)) ** 2
        return torch.sigmoid(self.receptance(x + xx * self.time_maa_r)) * self.value(k), x[:, -1]


class RWKV6Block(nn.Module):
    """RWKV-6's residual block: x + att(ln1(x)), then x + ffn(ln2(x)); the first block normalises
    the embedding first (ln0). Its own block, not model.Block: both of its halves carry a state."""

    def __init__(self, config, layer_id):
        super().__init__()
        C, eps = config.d_model, config.norm_eps
        if layer_id == 0:
            self.ln0 = nn.LayerNorm(C, eps=eps)
        self.ln1, self.ln2 = nn.LayerNorm(C, eps=eps), nn.LayerNorm(C, eps=eps)
        self.att, self.ffn = RWKV6TimeMix(config, layer_id), RWKV6ChannelMix(config, layer_id)
        self.config = config

    def zero_state(self, batch_size, device):
        c = self.config
        H = c.d_model // c.headdim
        return {"S": torch.zeros(batch_size, H, c.headdim, c.headdim, device=device),
                "att_shift": torch.zeros(batch_size, c.d_model, device=device),
                "ffn_shift": torch.zeros(batch_size, c.d_model, device=device)}

    def forward(self, x, state=None):
        """x: (Bsz, T, C), state: this layer's dict or None -> (Bsz, T, C), the state after x."""
        if hasattr(self, "ln0"):
            x = self.ln0(x)
        mixed, S, att_shift = self.att(self.ln1(x), state)
        x = x + mixed
        mixed, ffn_shift = self.ffn(self.ln2(x), None if state is None else state["ffn_shift"])
        return x + mixed, {"S": S, "att_shift": att_shift.float(), "ffn_shift": ffn_shift.float()}
