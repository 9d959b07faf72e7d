"""Fixtures of the solo-learn tests: a small image folder, made once per module."""

from pathlib import Path

import pytest
from helpers.images import make_image_folder


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory) -> Path:
    return make_image_folder(tmp_path_factory.mktemp("images") / "train")
