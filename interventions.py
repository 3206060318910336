"""
The paper's method (sec. 4): during training, choose each sequence's initial state S_{-1}.

A model trained only from S_{-1} = 0 on sequences of T tokens only ever sees the states of the first
T tokens of a document; beyond T its states leave that distribution and it fails (the unexplored
states hypothesis, sec. 3.6). Each sampler below draws S_{-1} from a distribution closer to the
states a long sequence attains (sec. 4.1-4.5, in the order of fig. 5):

    zero            S_{-1} = 0: the standard training, the baseline
    random_noise    S_{-1} ~ N(0, sigma^2), i.i.d., one sigma for all layers and heads      (4.2)
    fitted_noise    S_{-1} ~ N(mu_lh, sigma^2_lh), fitted to the final states seen so far   (4.3)
    state_passing   S_{-1} = the previous batch's final state (an unrelated sequence),
                    each row zeroed with probability p_zero = 0.1                           (4.4)
    tbtt            S_{-1} = the final state of the same stream's previous chunk (batch
                    i+1 continues batch i row by row; data.StreamSampler)                   (4.5)

Every sampler has the same small interface, used by train.py once per step:
    states = sampler.initial_states(reset)   # per-layer states for this batch, or None for zeros
    ... logits, loss, final = model(x, y, states=states) ...
    sampler.observe(final)                   # the batch's final states (detached here)
and state_dict() / load_state_dict() so that a resumed run continues exactly. `reset` (B,) bool
marks rows whose stream starts afresh (TBTT only; the other samplers ignore it).
Evaluation always starts from zero: the interventions are for training only (sec. 4.2).

What a state is. The states are model.py's layout (its docstring has every architecture's shapes):
a list with one dict per layer, every entry a tensor whose first dimension is the batch's rows.
    "S"     (B, H, K, V) float32, the matrix state h of eq. 1 in every architecture: what the
            paper's interventions choose
    "conv"  Mamba-1 and -2: (B, channels, d_conv - 1), the last inputs of the short causal
            convolution (GLA has S alone; RWKV-6 has "att_shift" and "ffn_shift" (B, d_model),
            its token shift)
LM.zero_states(B) writes out the all-zero states (the model knows the shapes); a sampler is built
on them (its `template`). states=None stands for all zero. What happens to the conv history under
each sampler:
    zero, random_noise, fitted_noise: zero. The paper's noise models the SSM state h of eq. 4; the
        conv history is three tokens of local input, and "no previous token" is what the start of
        every document looks like.
    state_passing, tbtt: zero by default, as in the paper: eq. 4 and fig. 14 hand on the SSM state
        h alone. With pass_conv=True (train.py --pass_conv=True) it is passed along with S; for TBTT
        the next chunk is then exactly the continuation of one long sequence (only the gradient is
        cut at the chunk boundary), where by default its first d_conv - 1 tokens see no earlier
        input through the conv. At T = 16 those are 3 of the 16 training positions, so the choice
        matters.
Every other entry of a layer's state that is not "S" is such a short local history (the conv's last
inputs; RWKV's token shift) and is treated the same way.

What is done to states, here and in train.py (the helpers just below):
    rows(states, r)              the states of rows r, a slice (one micro-batch's)
    joined(micro_states)         the micro-batches' states joined along the rows, detached
    detached(states)             cut from the graph: a passed state carries no gradient back
    kept_rows(states, keep)      the rows where keep (B,) is False set to zero, whole
    moved(obj, device)           a sampler's state_dict on another device (CPU to save it)
    nbytes(states)               their size in bytes (train.py's estimate of a checkpoint's)
and, to resume a run on another number of processes, sampler_state (at the end of this file).
"""
import torch
import torch.distributed as dist

INTERVENTIONS = ("zero", "random_noise", "fitted_noise", "state_passing", "tbtt")


def rows(states, r):
    """Rows r (a slice) of the per-layer states (dicts of (rows, ...) tensors); None stays None."""
    return None if states is None else [{k: s[r] for k, s in layer.items()} for layer in states]


def joined(micro_states):
    """The micro-batches' per-layer states joined along the rows, detached."""
    return [{k: torch.cat([ms[i][k] for ms in micro_states]).detach() for k in layer}
            for i, layer in enumerate(micro_states[0])]


def detached(states):
    """The states cut from the autograd graph (the same values): a passed state carries no gradient
    back into the batch that made it (TBTT's truncation, sec. 4.5)."""
    return [{name: s.detach() for name, s in layer.items()} for layer in states]


def kept_rows(states, keep):
    """states with the rows where keep (B,) is False set to zero (S and conv history alike)."""
    kept = []
    for layer in states:
        kept_layer = {}
        for name, s in layer.items():
            row_mask = keep.view(-1, *[1] * (s.dim() - 1)).to(s.dtype)   # (B, 1, ..., 1)
            kept_layer[name] = s * row_mask
        kept.append(kept_layer)
    return kept


def moved(obj, device):
    """obj (dicts and lists of tensors) with its floating-point tensors on device (the samplers'
    states); the generators' states are byte tensors and stay on the CPU, where torch.Generator
    wants them."""
    if isinstance(obj, dict):
        return {k: moved(v, device) for k, v in obj.items()}
    if isinstance(obj, list):
        return [moved(v, device) for v in obj]
    return obj.to(device) if torch.is_tensor(obj) and obj.is_floating_point() else obj


def nbytes(states):
    """The bytes the states take (a sampler that passes them saves them with the checkpoint)."""
    return sum(s.numel() * s.element_size() for layer in states for s in layer.values())


class Sampler:
    """The shared interface. `template`: the model's zero states for a batch (LM.zero_states), which
    fixes the shapes and the device; `generator`: a torch.Generator on that device."""

    def __init__(self, template, generator):
        self.template, self.generator = template, generator

    def initial_states(self, reset=None):
        return None

    def observe(self, final_states):
        pass

    def state_dict(self):
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, d):
        self.generator.set_state(d["generator"])

    def _randn_like(self, x):
        return torch.randn(x.shape, generator=self.generator, device=x.device, dtype=x.dtype)


class Zero(Sampler):
    """S_{-1} = 0 (eq. 1a as usually trained)."""


class RandomNoise(Sampler):
    """Sec. 4.2: every entry of S_{-1} i.i.d. N(0, sigma^2). sigma must be tuned per model (app. F):
    too small does nothing, too large hurts."""

    def __init__(self, template, generator, sigma):
        super().__init__(template, generator)
        self.sigma = sigma

    def initial_states(self, reset=None):
        states = []
        for layer in self.template:
            state = {name: torch.zeros_like(s) for name, s in layer.items()}   # conv history: zero
            state["S"] = self.sigma * self._randn_like(layer["S"])             # (B, H, K, V)
            states.append(state)
        return states


class FittedNoise(Sampler):
    """Sec. 4.3: per layer l and head h, moving averages of the mean and the variance of the final
    states, taken over the batch and the state's K and V dimensions (eqs. 5-6):
        mu_lh      <- (1 - beta) Mean(S_T[l, :, h]) + beta mu_lh
        sigma^2_lh <- (1 - beta) Var(S_T[l, :, h])  + beta sigma^2_lh
    and S_{-1}[l, :, h] is drawn i.i.d. from N(mu_lh, sigma^2_lh). Before the first batch has been
    seen there is nothing fitted yet, and S_{-1} = 0. Under DDP (train.py under torchrun) Mean and
    Var are over the rows of every process (an all-reduce), so every process draws from the same
    Gaussian, the one a single process would fit to the whole batch."""

    def __init__(self, template, generator, beta=0.1):
        super().__init__(template, generator)
        self.beta, self.mu, self.var = beta, None, None

    def observe(self, final_states):
        S = [layer["S"].detach() for layer in final_states]             # per layer (B, H, K, V)
        mean = [s.mean(dim=(0, 2, 3)) for s in S]                        # per layer (H,)
        var = [s.var(dim=(0, 2, 3), unbiased=False) for s in S]
        if dist.is_available() and dist.is_initialized():
            mean, var = _all_processes(mean, var)
        if self.mu is None:                                              # the first batch: no past
            self.mu, self.var = mean, var
        else:
            b = self.beta
            self.mu = [(1 - b) * m + b * mu for m, mu in zip(mean, self.mu)]
            self.var = [(1 - b) * v + b * old for v, old in zip(var, self.var)]

    def initial_states(self, reset=None):
        if self.mu is None:
            return None
        states = []
        for layer, mu, var in zip(self.template, self.mu, self.var):
            state = {name: torch.zeros_like(s) for name, s in layer.items()}   # conv history: zero
            mu_lh, sigma_lh = mu[:, None, None], var.sqrt()[:, None, None]     # (H, 1, 1)
            state["S"] = mu_lh + sigma_lh * self._randn_like(layer["S"])       # (B, H, K, V)
            states.append(state)
        return states

    def state_dict(self):
        return super().state_dict() | {"mu": self.mu, "var": self.var}

    def load_state_dict(self, d):
        super().load_state_dict(d)
        self.mu, self.var = d["mu"], d["var"]


def _all_processes(mean, var):
    """Per layer, the mean and variance (H,) over the rows of all processes, from each process's
    own: the average of the first and second moments (every process holds as many rows)."""
    pairs = [torch.stack([m, v + m ** 2]) for m, v in zip(mean, var)]   # per layer (2, H)
    moments = torch.stack(pairs)                                        # (n_layer, 2, H)
    dist.all_reduce(moments)
    moments /= dist.get_world_size()
    return [m[0] for m in moments], [m[1] - m[0] ** 2 for m in moments]


class PassedStates(Sampler):
    """What state passing and TBTT share: they keep the last batch's final states, detached, to
    start the next batch from (and save them with the checkpoint). Under DDP each process keeps
    those of its own rows, which are its rows again at the next step. pass_conv: keep the local
    histories (every entry but "S") too; False zeroes them, the paper's choice."""

    def __init__(self, template, generator, pass_conv=False):
        super().__init__(template, generator)
        self.final, self.pass_conv = None, pass_conv

    def observe(self, final_states):
        self.final = [{name: s if self.pass_conv or name == "S" else torch.zeros_like(s)
                       for name, s in layer.items()} for layer in detached(final_states)]

    def state_dict(self):
        return super().state_dict() | {"final": self.final}

    def load_state_dict(self, d):
        super().load_state_dict(d)
        self.final = d["final"]


class StatePassing(PassedStates):
    """Sec. 4.4: S_{-1} is the final state of the previous batch: sequences drawn at random, so it
    is the state after an unrelated sequence, a sample of the attainable states. Each row is zeroed
    with probability p_zero so that the model still sees sequences with no prior context."""

    def __init__(self, template, generator, p_zero=0.1, pass_conv=False):
        super().__init__(template, generator, pass_conv)
        self.p_zero = p_zero

    def initial_states(self, reset=None):
        if self.final is None:
            return None
        B = self.final[0]["S"].shape[0]
        draws = torch.rand(B, generator=self.generator, device=self.final[0]["S"].device)
        keep = draws >= self.p_zero
        return kept_rows(self.final, keep)


class TBTT(PassedStates):
    """Sec. 4.5: truncated backpropagation through time. The data sampler (data.StreamSampler) makes
    row b of batch i+1 continue row b of batch i, so the final state of batch i is the exact state
    at the start of batch i+1; the gradient stops at the boundary (observe detaches). Rows whose
    stream starts afresh (`reset`) begin from zero."""

    def initial_states(self, reset=None):
        if self.final is None:
            return None
        if reset is None:
            raise ValueError("tbtt needs the data sampler's reset flags: use data.StreamSampler")
        return kept_rows(self.final, ~reset.to(self.final[0]["S"].device))


def make_sampler(name, template, generator, sigma=0.1, p_zero=0.1, beta=0.1, pass_conv=False):
    """The sampler called `name`, with its parameters (the others are ignored)."""
    if name == "zero":
        return Zero(template, generator)
    if name == "random_noise":
        return RandomNoise(template, generator, sigma)
    if name == "fitted_noise":
        return FittedNoise(template, generator, beta)
    if name == "state_passing":
        return StatePassing(template, generator, p_zero, pass_conv)
    if name == "tbtt":
        return TBTT(template, generator, pass_conv)
    raise ValueError(f"unknown intervention {name!r}: expected one of {', '.join(INTERVENTIONS)}")


def sampler_state(saved, rank, world, local, generator):
    """This process's sampler state (rank of world), from those of the len(saved) processes that
    wrote the checkpoint (train.py saves every process's). On another number of processes, the
    passed states of every row of the step are split anew (this process's rows: the slice local),
    and the random draws start afresh from generator's state."""
    if len(saved) == world:
        return saved[rank]
    print(f"resuming a run of {len(saved)} processes on {world}: the model, optimiser, step, "
          f"batches, TBTT streams, fitted statistics and passed states are kept; the samplers' "
          f"random draws start afresh, so the losses differ from those of an uninterrupted run")
    mine = saved[0] | {"generator": generator.get_state()}   # fitted noise's mu, var: alike in all
    if mine.get("final") is not None:
        mine["final"] = rows(joined([s["final"] for s in saved]), local)
    return mine
