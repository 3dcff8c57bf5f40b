import pytest
import torch

from symgrad import zoo


@pytest.fixture(scope="session")
def models():
    """Built-in models, built once per session (derive + compile is cached on each)."""
    return {name: zoo.get(name) for name in zoo.names() if name != "tiny_gpt"}


def has_gpu() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return torch.cuda.is_available() or bool(mps and mps.is_available())
