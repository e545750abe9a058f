from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.image.buildah import Container, Image


@pytest.fixture(scope="session")
def image() -> Image:
    """The image `make image` built (scripts/image.sh)."""
    return Image.built()


@pytest.fixture(scope="session")
def container(image: Image) -> Iterator[Container]:
    """One working container for the session: a vfs container is a full copy of the
    image, seconds to make; the checks only read, or write under names of their own."""
    made = image.new_container()
    yield made
    made.remove()
