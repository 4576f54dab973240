"""Images: content-addressed local builds on the debootstrap base, or pinned registry pulls.

A local image's tag is the digest of its build context, so an unchanged context is never rebuilt and a
changed one gets a new tag, which is what makes Swarm roll the service.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from stack import components
from stack.component import ROOT, Image
from stack.config import Settings
from stack.progress import step
from stack.swarm import Swarm

BASE_IMAGE = "sawmill/base:bookworm"
BUILD_BASE_SCRIPT = ROOT / "scripts" / "build-base.sh"
# Host settings that pip inside a build should see too (mirrors are read from the host, never hard-coded).
PASSED_BUILD_ARGS = ("PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL", "PIP_TRUSTED_HOST")
_IGNORED_PARTS = {"__pycache__", ".pytest_cache", "tests"}
_IGNORED_FILES = {"component.py"}  # the declaration the engine reads: not part of what the image runs


@dataclass(frozen=True)
class ImageRef:
    name: str
    ref: str | None  # None: this image cannot be had in this mode (see `missing_from`)
    context: Path | None  # built from here when missing; None: pulled when missing
    includes: tuple[Path, ...] = ()  # copied into the build context beside `context`'s files
    base: str = BASE_IMAGE  # what the Dockerfile's `FROM ${BASE}` is
    prepare: tuple[str, ...] = ()
    missing_from: str | None = None  # the registry image that would be needed instead
    parent: ImageRef | None = None  # the local image `base` names, built before this one

    @property
    def local_build(self) -> bool:
        return self.context is not None


def ref(image: Image, settings: Settings) -> ImageRef:
    if image.name in settings.image_overrides:
        return ImageRef(image.name, settings.image_overrides[image.name], None)
    base = BASE_IMAGE
    if settings.images == "registry" and image.registry:
        if not image.extends_registry:
            return ImageRef(image.name, image.registry, None)
        base = image.registry
    if image.context is None:
        return ImageRef(image.name, None, None, missing_from=image.registry)
    parent = ref(image.parent, settings) if image.parent else None
    if parent is not None:
        assert parent.ref is not None, f"{image.name} is built FROM {parent.name}, which has no local build"
        base = parent.ref  # its tag is its content digest, so a change there changes this image's tag too
    tag = build_digest(image.context, image.includes, base, image.generated)[:12]
    return ImageRef(
        image.name, f"sawmill/{image.name}:{tag}", image.context, image.includes, base, image.prepare, parent=parent
    )


def reader(settings: Settings) -> ImageRef:
    """An image with `cat` that this node has or can get, for one-shot services that read a secret."""
    first = next(c for name in settings.components if (c := components.known()[name]).images)
    return ref(first.images[0], settings)


def context_digest(context: Path, generated: tuple[str, ...] = ()) -> str:
    """Digest of the files a build sends; stack templates (*.j2) and generated folders do not count."""
    digest = hashlib.sha256()
    ignored = _IGNORED_PARTS | set(generated)
    for path in sorted(context.rglob("*")):
        relative = path.relative_to(context)
        if (
            not path.is_file()
            or path.suffix in {".j2", ".pyc"}
            or path.name in _IGNORED_FILES
            or ignored & set(relative.parts)
        ):
            continue
        digest.update(str(relative).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def build_digest(
    context: Path, includes: tuple[Path, ...] = (), base: str = BASE_IMAGE, generated: tuple[str, ...] = ()
) -> str:
    """Digest of everything a build depends on: its context, the included folders, and its base image."""
    if not includes and base == BASE_IMAGE:
        return context_digest(context, generated)
    digest = hashlib.sha256(context_digest(context, generated).encode() + b"\0" + base.encode())
    for folder in includes:
        content = hashlib.sha256(folder.read_bytes()).hexdigest() if folder.is_file() else context_digest(folder)
        digest.update(b"\0" + folder.name.encode() + b"\0" + content.encode())
    return digest.hexdigest()


@contextlib.contextmanager
def build_context(image: ImageRef) -> Iterator[Path]:
    """The folder a build sends: the image's own, or a temporary copy of it with the included folders beside."""
    assert image.context is not None
    if not image.includes:
        yield image.context
        return
    skipped = shutil.ignore_patterns(*_IGNORED_PARTS, "*.pyc", "*.j2")
    with tempfile.TemporaryDirectory(prefix=f"sawmill-build-{image.name}-") as temp:
        root = Path(temp) / image.name
        shutil.copytree(image.context, root, ignore=skipped)
        for folder in image.includes:
            if folder.is_file():
                shutil.copy2(folder, root / folder.name)
            else:
                shutil.copytree(folder, root / folder.name, ignore=skipped)
        yield root


def build_args(base: str = BASE_IMAGE) -> dict[str, str]:
    args = {"BASE": base}
    args.update({key: os.environ[key] for key in PASSED_BUILD_ARGS if os.environ.get(key)})
    return args


def with_parents(refs: list[ImageRef]) -> list[ImageRef]:
    """The images and the local images they are built FROM, each parent before its children, once."""
    ordered: list[ImageRef] = []
    for image in refs:
        lineage = []
        while image is not None:
            lineage.append(image)
            image = image.parent
        ordered += reversed(lineage)
    return list(dict.fromkeys(ordered))


def ensure(swarm: Swarm, refs: list[ImageRef]) -> None:
    """Build or pull every image that is not on this node yet (parents first)."""
    missing = [r for r in with_parents(refs) if r.ref is not None and not swarm.image_exists(r.ref)]
    if any(r.local_build and r.base == BASE_IMAGE for r in missing):
        ensure_base(swarm)
    for image in missing:
        assert image.ref is not None
        if image.context is not None:
            if image.prepare:
                with step(f"preparing the build of {image.name}: {' '.join(image.prepare)}"):
                    subprocess.run(image.prepare, cwd=image.context, check=True)
            with step(f"building image {image.ref}", "first build takes ~20-40 s"), build_context(image) as context:
                swarm.build(image.ref, context, build_args(image.base))
        else:
            with step(f"pulling image {image.ref}"):
                swarm.pull(image.ref)


def ensure_base(swarm: Swarm) -> None:
    if swarm.image_exists(BASE_IMAGE):
        return
    with step(f"building base image {BASE_IMAGE} with debootstrap", "~30 s"):
        subprocess.run(["bash", str(BUILD_BASE_SCRIPT), BASE_IMAGE], check=True, stdout=subprocess.DEVNULL)
