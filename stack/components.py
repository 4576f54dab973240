"""The components of the platform, read from their own folders, and the order they deploy in.

`stack/components.toml` lists the folders; each holds a `component.py` that declares `COMPONENT`. The folders
are not Python packages (`kafka`, `airflow` are names of real libraries), so each declaration is loaded from
its file under a module name of its own.
"""

from __future__ import annotations

import importlib.util
import sys
import tomllib
from functools import cache
from pathlib import Path

from stack.component import ROOT, Component

REGISTRY_FILE = ROOT / "stack" / "components.toml"
DECLARATION = "component.py"


class ComponentsError(Exception):
    """The set of enabled components cannot be deployed (a missing requirement, a cycle)."""


@cache
def known() -> dict[str, Component]:
    """Every component, by name, in the order of stack/components.toml."""
    folders = tomllib.loads(REGISTRY_FILE.read_text())["folders"]
    found = [_load(ROOT / folder) for folder in folders]
    return {c.name: c for c in found}


def _load(folder: Path) -> Component:
    path = folder / DECLARATION
    spec = importlib.util.spec_from_file_location(f"sawmill_component_{folder.name}", path)
    assert spec is not None and spec.loader is not None, f"{path} cannot be loaded"
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # pydantic resolves the annotations of its settings models there
    spec.loader.exec_module(module)
    component = module.COMPONENT
    assert isinstance(component, Component), f"{path}: COMPONENT must be a stack.component.Component"
    assert component.folder == folder, f"{path}: COMPONENT.folder must be its own folder"
    return component


def defaults() -> list[str]:
    return [name for name, c in known().items() if c.default]


def waves(enabled: list[str]) -> list[list[str]]:
    """The enabled components in deploy waves: each wave needs only earlier ones, so a wave deploys side by
    side. Raises ComponentsError naming the components for a missing requirement or a cycle."""
    components = known()
    for name in enabled:
        missing = [dep for dep in components[name].requires if dep not in enabled]
        if missing:
            raise ComponentsError(f"{name} requires {', '.join(missing)}; add it to components")
    order = [name for name in components if name in enabled]  # ties keep the registry's order
    placed: set[str] = set()
    result = []
    while len(placed) < len(order):
        wave = [n for n in order if n not in placed and set(components[n].requires) <= placed]
        if not wave:
            stuck = [n for n in order if n not in placed]
            raise ComponentsError(f"{', '.join(stuck)} require each other in a cycle; break it in their component.py")
        result.append(wave)
        placed.update(wave)
    return result


def deploy_order(enabled: list[str]) -> list[str]:
    return [name for wave in waves(enabled) for name in wave]


def entrance(enabled: list[str]) -> Component | None:
    """The enabled component that publishes the platform's ports (at most one is allowed)."""
    found = [known()[name] for name in enabled if known()[name].entrance]
    return found[0] if found else None
