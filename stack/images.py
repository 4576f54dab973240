"""Images: content-addressed local builds on the debootstrap base, or pinned registry pulls.

A local image's tag is the digest of its build context, so an unchanged context is never rebuilt and a
changed one gets a new tag, which is what makes Swarm roll the service.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

from python_on_whales import docker

from stack.components import COMPONENTS, ROOT, Image
from stack.config import Settings
from stack.progress import step

BASE_IMAGE = "sawmill/base:bookworm"
BUILD_BASE_SCRIPT = ROOT / "scripts" / "build-base.sh"
# Host settings that pip inside a build should see too (mirrors are read from the host, never hard-coded).
PASSED_BUILD_ARGS = ("PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL", "PIP_TRUSTED_HOST")
_IGNORED_PARTS = {"__pycache__", ".pytest_cache", "tests"}


@dataclass(frozen=True)
class ImageRef:
    name: str
    ref: str
    context: Path | None  # built from here when missing; None: pulled when missing

    @property
    def local_build(self) -> bool:
        return self.context is not None


def ref(image: Image, settings: Settings) -> ImageRef:
    if image.name in settings.image_overrides:
        return ImageRef(image.name, settings.image_overrides[image.name], None)
    if settings.images == "registry" and image.registry:
        return ImageRef(image.name, image.registry, None)
    return ImageRef(image.name, f"sawmill/{image.name}:{context_digest(image.context)[:12]}", image.context)


def reader(settings: Settings) -> ImageRef:
    """An image with `cat` that this node has or can get, for one-shot services that read a secret."""
    return ref(COMPONENTS[settings.components[0]].images[0], settings)


def context_digest(context: Path) -> str:
    """Digest of the files a build sends; stack templates (*.j2) live beside them but do not count."""
    digest = hashlib.sha256()
    for path in sorted(context.rglob("*")):
        relative = path.relative_to(context)
        if not path.is_file() or path.suffix in {".j2", ".pyc"} or _IGNORED_PARTS & set(relative.parts):
            continue
        digest.update(str(relative).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def build_args() -> dict[str, str]:
    args = {"BASE": BASE_IMAGE}
    args.update({key: os.environ[key] for key in PASSED_BUILD_ARGS if os.environ.get(key)})
    return args


def ensure(refs: list[ImageRef]) -> None:
    """Build or pull every image that is not on this node yet."""
    missing = [r for r in dict.fromkeys(refs) if not docker.image.exists(r.ref)]
    if any(r.local_build for r in missing):
        ensure_base()
    for image in missing:
        if image.context is not None:
            with step(f"building image {image.ref} (first build takes ~20-40 s)"):
                docker.legacy_build(image.context, tags=[image.ref], build_args=build_args())
        else:
            with step(f"pulling image {image.ref}"):
                docker.pull(image.ref, quiet=True)


def ensure_base() -> None:
    if docker.image.exists(BASE_IMAGE):
        return
    with step(f"building base image {BASE_IMAGE} with debootstrap (~30 s)"):
        subprocess.run(["bash", str(BUILD_BASE_SCRIPT), BASE_IMAGE], check=True, stdout=subprocess.DEVNULL)
