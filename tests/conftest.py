import os

import pytest
import torch

torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _isolated_data_cache(tmp_path_factory, monkeypatch):
    """Keep generated datasets (mnist1d cache) out of the user's home during tests."""
    cache = tmp_path_factory.getbasetemp() / "data-cache"
    monkeypatch.setenv("L2DYNAMICS_DATA", os.environ.get("L2DYNAMICS_TEST_DATA", str(cache)))
