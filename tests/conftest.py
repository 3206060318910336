# The Triton kernels run on the CPU through Triton's interpreter. Triton reads this variable when a
# kernel is decorated, i.e. when scan_kernel is imported, so it must be set before any test module
# imports the project.
import os
import sys

os.environ.setdefault("TRITON_INTERPRET", "1")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import pytest  # noqa: E402  (after the variable: torch may import triton)
import torch  # noqa: E402


@pytest.fixture(scope="module")
def one_thread():
    """Tiny models gain nothing from threads, and on busy cores two threads wait on each other
    (docs/measuring.md). A module opts in with pytestmark = pytest.mark.usefixtures("one_thread")."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def tiny_lm(seed=0, **kw):
    """A small random Mamba-2 (or, with arch="gla", GLA) in eval mode, for the measurement tests."""
    from model import LM, ModelConfig
    torch.manual_seed(seed)
    cfg = dict(arch="mamba2", vocab_size=50, d_model=32, n_layer=2, d_state=16, headdim=16, chunk_size=8,
               scan_backend="chunked") | kw
    return LM(ModelConfig(**cfg)).eval()


def write_world_vocab(path, tokens):
    """RWKV's world vocabulary file, in its own format: `<id> <repr of a str, or of bytes that are
    not UTF-8> <length in bytes>`, ids from 1 in order. tokens: bytes objects. Returns path."""
    lines = []
    for i, token in enumerate(tokens, 1):
        try:
            literal = repr(token.decode("utf-8"))
        except UnicodeDecodeError:
            literal = repr(token)
        lines.append(f"{i} {literal} {len(token)}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path
