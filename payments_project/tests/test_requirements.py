"""
requirements.txt alone (what `make run` and the Dockerfile install) brings everything the
production set imports. The dev tools pull in more, so a gap there hides in the test run:
kombu's Redis transport needs `packaging`, which kombu declares only under its `redis`
extra, and without it every task the web process queued was lost to the sweeps.
"""

import ast
import importlib.util
import sys
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]

# Modules the production set loads that the test run may never import on its own: the
# broker transport (the tests run Celery eagerly) and the servers.
PRODUCTION_MODULES = [
    "kombu.transport.redis",
    "celery.backends.redis",
    "gunicorn.workers.gthread",
    "prometheus_client.multiprocess",
    "psycopg",
    "weasyprint",
]


def _runtime_distributions() -> set[str]:
    """Every distribution requirements.txt installs, with the extras it asks for."""
    lines = (ROOT / "requirements.txt").read_text().splitlines()
    todo = [Requirement(line) for line in lines if line.strip() and not line.startswith("#")]
    seen: set[tuple[str, frozenset]] = set()
    names: set[str] = set()
    while todo:
        requirement = todo.pop()
        name, extras = canonicalize_name(requirement.name), frozenset(requirement.extras)
        if (name, extras) in seen:
            continue
        seen.add((name, extras))
        names.add(name)
        for line in metadata.distribution(requirement.name).requires or []:
            child = Requirement(line)
            marker = child.marker
            if marker is None or any(marker.evaluate({"extra": e}) for e in extras | {""}):
                todo.append(child)
    return names


def _top_level_imports(module: str) -> set[str]:
    """Top-level packages `module` imports unconditionally (not under `try` or `if`)."""
    tree = ast.parse(Path(importlib.util.find_spec(module).origin).read_text())
    found = set()
    for node in tree.body:
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found - set(sys.stdlib_module_names) - {"__future__"}


@pytest.mark.parametrize("module", PRODUCTION_MODULES)
def test_what_the_production_set_imports_is_in_requirements_txt(module):
    runtime = _runtime_distributions()
    providers = metadata.packages_distributions()

    missing = {
        package: providers.get(package)
        for package in _top_level_imports(module)
        if not {canonicalize_name(d) for d in providers.get(package, [])} & runtime
    }

    assert missing == {}, f"{module} imports these, which requirements.txt does not install"
