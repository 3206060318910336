"""Each initial-state sampler against its definition in the paper (sec. 4.2-4.5)."""
import pytest
import torch

from interventions import make_sampler

B, H, K, V, CONV = 400, 3, 4, 5, 6


def template(batch=B, n_layer=2):
    """Zero states in model.py's Mamba-2 layout: per layer {"conv", "S"}."""
    return [{"conv": torch.zeros(batch, CONV, 3), "S": torch.zeros(batch, H, K, V)} for _ in range(n_layer)]


def final_states(seed, batch=B, n_layer=2, scale=1.0, shift=0.0):
    gen = torch.Generator().manual_seed(seed)
    return [{"conv": torch.randn(batch, CONV, 3, generator=gen),
             "S": (shift + scale * torch.randn(batch, H, K, V, generator=gen)).requires_grad_()}
            for _ in range(n_layer)]


def sampler(name, **kw):
    return make_sampler(name, template(), torch.Generator().manual_seed(0), **kw)


def test_zero_is_none():
    s = sampler("zero")
    s.observe(final_states(1))
    assert s.initial_states() is None


def test_random_noise_statistics():
    s = sampler("random_noise", sigma=0.3)
    states = s.initial_states()
    for layer in states:
        S = layer["S"]
        assert S.shape == (B, H, K, V)
        assert abs(S.mean().item()) < 0.01                       # 24,000 draws: SE of the mean 0.002
        assert abs(S.std().item() - 0.3) < 0.01
        assert torch.equal(layer["conv"], torch.zeros_like(layer["conv"]))   # conv history stays zero
    assert not torch.equal(states[0]["S"], s.initial_states()[0]["S"])        # fresh draws every batch


def test_fitted_noise_moving_averages():
    # Two batches of known final states: after the first, mu = Mean, var = Var (no past); after the
    # second, eqs. 5-6 with beta = 0.1: mu = 0.9 Mean_2 + 0.1 mu_1 (per layer and head).
    s = sampler("fitted_noise", beta=0.1)
    assert s.initial_states() is None                             # nothing fitted yet
    f1, f2 = final_states(1, scale=2.0, shift=1.0), final_states(2, scale=0.5, shift=-3.0)
    s.observe(f1)
    s.observe(f2)
    for l in range(2):
        for h in range(H):
            a, b = f1[l]["S"][:, h].detach().double(), f2[l]["S"][:, h].detach().double()
            mu = 0.9 * b.mean() + 0.1 * a.mean()
            var = 0.9 * b.var(unbiased=False) + 0.1 * a.var(unbiased=False)
            assert abs(s.mu[l][h].item() - mu.item()) < 1e-5
            assert abs(s.var[l][h].item() - var.item()) < 1e-5
    # samples follow N(mu_lh, var_lh), head by head; the conv history stays zero
    S = s.initial_states()[1]["S"]
    for h in range(H):
        assert abs(S[:, h].mean().item() - s.mu[1][h].item()) < 0.05
        assert abs(S[:, h].std().item() - s.var[1][h].sqrt().item()) < 0.05
    assert torch.equal(s.initial_states()[0]["conv"], torch.zeros(B, CONV, 3))


@pytest.mark.parametrize("pass_conv", [False, True])
def test_state_passing_passes_detached_states_and_zeros_a_tenth(pass_conv):
    s = sampler("state_passing", p_zero=0.1, pass_conv=pass_conv)
    assert s.initial_states() is None                             # the first batch starts from zero
    f = final_states(1)
    s.observe(f)
    states = s.initial_states()
    S, conv = states[0]["S"], states[0]["conv"]
    assert not S.requires_grad                                    # passed, but the gradient stops
    zeroed = (S.flatten(1) == 0).all(1)
    kept = ~zeroed
    assert torch.equal(S[kept], f[0]["S"].detach()[kept])          # the previous batch's final state
    if pass_conv:
        assert torch.equal(conv[kept], f[0]["conv"][kept])         # with its conv history
    else:                                                          # the paper's eq. 4: S alone
        assert (conv == 0).all() and (states[1]["conv"] == 0).all() and (S[kept] != 0).any()
    assert (conv[zeroed] == 0).all() and (states[1]["S"][zeroed] == 0).all()   # a row is zeroed whole
    rate = torch.stack([(s.initial_states()[0]["S"].flatten(1) == 0).all(1) for _ in range(20)]).float().mean()
    assert abs(rate.item() - 0.1) < 0.015                         # 8,000 rows: SE 0.0034


@pytest.mark.parametrize("pass_conv", [False, True])
def test_tbtt_continues_the_streams(pass_conv):
    s = sampler("tbtt", pass_conv=pass_conv)
    assert s.initial_states(torch.ones(B, dtype=torch.bool)) is None
    f = final_states(1)
    s.observe(f)
    reset = torch.zeros(B, dtype=torch.bool)
    reset[::7] = True
    states = s.initial_states(reset)
    for l in range(2):
        for name in ("S", "conv") if pass_conv else ("S",):
            assert torch.equal(states[l][name][~reset], f[l][name].detach()[~reset])
            assert (states[l][name][reset] == 0).all()
        if not pass_conv:
            assert (states[l]["conv"] == 0).all()
    assert not states[0]["S"].requires_grad


@pytest.mark.parametrize("name", ["random_noise", "fitted_noise", "state_passing"])
def test_state_dict_round_trip(name):
    # a resumed sampler draws exactly what the original would have drawn next
    a = sampler(name)
    a.observe(final_states(1))
    saved = a.state_dict()
    b = make_sampler(name, template(), torch.Generator().manual_seed(99))
    b.load_state_dict(saved)
    for x, y in zip(a.initial_states(), b.initial_states()):
        assert torch.equal(x["S"], y["S"]) and torch.equal(x["conv"], y["conv"])


def test_unknown_intervention():
    with pytest.raises(ValueError, match="unknown intervention 'noise'.*state_passing"):
        sampler("noise")
