"""DVC dependencies follow the code: every repository file a stage imports is declared in its ``deps``.

A stage's import closure is computed from the source (``ast``: every ``import`` and ``from … import``,
at module level or inside functions, of ``posfeat`` and ``stages`` modules, with the packages'
``__init__`` files), starting at the module its ``cmd`` runs. Editing any file of it then reruns the stage.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("posfeat", "stages")


def module_file(module: str) -> Path | None:
    """The repository file of a dotted module name (a module or a package's ``__init__.py``), if any."""
    base = ROOT.joinpath(*module.split("."))
    for cand in (base.with_suffix(".py"), base / "__init__.py"):
        if cand.is_file():
            return cand
    return None


def imported_modules(path: Path) -> set[str]:
    """Dotted names ``path`` imports from the repository's packages (``from a import b`` gives ``a`` and
    ``a.b``, since ``b`` may be a module)."""
    names: set[str] = set()
    package = path.relative_to(ROOT).parent.parts
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package[: len(package) - node.level + 1]
                base = ".".join((*parent, *([node.module] if node.module else [])))
            names.add(base)
            names.update(f"{base}.{a.name}" for a in node.names)
    names.update(lazy_exports(path))
    return {n for n in names if n.split(".")[0] in PACKAGES}


def lazy_exports(path: Path) -> set[str]:
    """The submodules a package ``__init__`` loads on first use (its ``_EXPORTS`` map: name → submodule)."""
    if path.name != "__init__.py":
        return set()
    package = ".".join(path.relative_to(ROOT).parent.parts)
    for node in ast.parse(path.read_text(), str(path)).body:
        target = (
            node.target
            if isinstance(node, ast.AnnAssign)
            else (node.targets[0] if isinstance(node, ast.Assign) else None)
        )
        if isinstance(target, ast.Name) and target.id == "_EXPORTS" and isinstance(node.value, ast.Dict):
            return {f"{package}.{v.value}" for v in node.value.values if isinstance(v, ast.Constant)}
    return set()


def import_closure(module: str) -> set[str]:
    """Repository files (relative paths) that running ``python -m module`` can import."""
    seen: set[Path] = set()
    todo = [module]
    while todo:
        parts = todo.pop().split(".")
        for k in range(1, len(parts) + 1):  # a module's parent packages are imported first
            f = module_file(".".join(parts[:k]))
            if f is not None and f not in seen:
                seen.add(f)
                todo.extend(imported_modules(f))
    return {f.relative_to(ROOT).as_posix() for f in seen}


def stages() -> dict[str, dict]:
    """dvc.yaml's stages (a ``foreach`` stage by its ``do`` template)."""
    spec = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    return {name: st.get("do", st) for name, st in spec.items()}


def declared(path: str, deps: list[str]) -> bool:
    return any(path == d or path.startswith(d.rstrip("/") + "/") for d in deps)


@pytest.mark.parametrize("name", sorted(stages()))
def test_every_imported_file_is_a_declared_dependency(name):
    stage = stages()[name]
    module = re.search(r"python -m ([\w.]+)", stage["cmd"]).group(1)
    missing = sorted(f for f in import_closure(module) if not declared(f, stage.get("deps", [])))
    assert not missing, f"dvc.yaml stage {name} imports these files without declaring them in deps: {missing}"


def test_the_closure_sees_lazy_and_relative_imports(tmp_path):
    closure = import_closure("stages.train_desc")
    assert {
        "stages/train_desc.py",
        "posfeat/training/loop.py",
        "posfeat/losses/line2window.py",
        "posfeat/__init__.py",
    } <= closure
    assert "posfeat/sfm/colmap.py" in import_closure("stages.photos")  # imported inside a function
    assert "posfeat/extraction/dataset.py" in import_closure("stages.extract")  # a package's lazy export
    assert "posfeat/evaluation/eth/evaluate.py" not in closure


def test_training_fingerprint_covers_the_training_closure():
    """A checkpoint resumes only when its code is unchanged: the fingerprint hashes every library file the
    training imports (:data:`posfeat.training.fingerprints.TRAINING_CODE`, folders expanded)."""
    from posfeat.training import fingerprints

    code = set()
    for rel in fingerprints.TRAINING_CODE:
        path = fingerprints.PACKAGE_DIR / rel
        code |= {f.relative_to(ROOT).as_posix() for f in (sorted(path.rglob("*.py")) if path.is_dir() else [path])}
    closure = import_closure("posfeat.training.loop")
    assert closure <= code, f"TRAINING_CODE misses {sorted(closure - code)}"
