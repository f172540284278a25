"""The layout keeps its shape: ``docs/DESIGN.md`` section 2's import rules, checked on the code.

An AST walk over ``swarm/``, ``agents/`` (``swarm.agents``) and ``protocols/``
(``swarm.protocols``) collects every import: at module level, inside functions,
under ``TYPE_CHECKING``, relative ones and ``importlib.import_module("...")``
with a literal name. A circle hidden in a function is still a circle in the
design, so all of them count. The tests check

- the layering: a part imports only parts on a lower layer (and ``swarm.errors``);
- no import circle between two modules of swarm;
- no module reads another module's private (``_name``) names;
- inheritance at most two levels deep among swarm's classes;
- ``ls swarm/`` and the layers agree with the tables of DESIGN section 2.

``LAYERS`` below is the one copy of the rule the tests enforce; DESIGN.md
section 2 shows the same table, and ``test_design_shows_these_layers`` keeps
the two equal.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DESIGN = REPO / "docs" / "DESIGN.md"

# Where each import name's files live (pyproject's package-dir).
ROOTS = {
    "swarm": REPO / "swarm",
    "swarm.agents": REPO / "agents",
    "swarm.protocols": REPO / "protocols",
}

# The parts of swarm, lowest layer first. A part may import its own modules,
# any part on a lower layer, and `swarm.errors` (which every part may raise).
# `swarm` itself (swarm/__init__.py, swarm/__main__.py) is the facade a user
# imports: it sits on top, and no part imports it.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("swarm.errors", "swarm.registry", "swarm.durable", "swarm.settings"),
    ("swarm.wire", "swarm.sandbox"),
    ("swarm.knowledge", "swarm.skills", "swarm.models"),
    ("swarm.transport",),
    ("swarm.adapters",),
    ("swarm.serving", "swarm.matching", "swarm.lineage"),
    ("swarm.agents",),
    ("swarm.protocols",),
    ("swarm.config",),
    ("swarm.runtime",),
    ("swarm.cli",),
    ("swarm",),
)
EVERYONE_MAY_IMPORT = "swarm.errors"
LAYER = {part: level for level, parts in enumerate(LAYERS) for part in parts}

# Classes whose depth is not counted: the one flat hierarchy of errors (its
# families, `SwarmError -> AdapterError -> AdapterShapeError`, are what callers
# catch by; STYLE.md "Errors"). Everywhere else, a swarm class that inherits from
# a swarm class that inherits from a swarm class is one level too deep.
DEPTH_EXEMPT_MODULES = {"swarm.errors"}
MAX_DEPTH = 2


# --------------------------------------------------------------------------- the walk


@dataclass(frozen=True)
class Import:
    """One import statement's edge: ``source`` reads ``target`` (a swarm module)."""

    source: str
    target: str
    where: str  # path:line
    text: str  # the statement as written


@dataclass
class Module:
    name: str
    path: Path
    tree: ast.Module
    is_package: bool
    imports: list[Import] = field(default_factory=list)


def _module_name(root_name: str, root: Path, path: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join([root_name, *parts])


def _load() -> dict[str, Module]:
    modules: dict[str, Module] = {}
    for root_name, root in ROOTS.items():
        for path in sorted(root.rglob("*.py")):
            if "__pycache__" in path.parts:
                continue
            if root_name == "swarm" and path.relative_to(root).parts[0] in ("agents", "protocols"):
                continue  # not a part of the package-dir mapping
            name = _module_name(root_name, root, path)
            tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
            modules[name] = Module(name, path, tree, path.name == "__init__.py")
    for module in modules.values():
        module.imports = list(_imports(module, modules))
    return modules


def _rel(path: Path) -> str:
    return str(path.relative_to(REPO))


def _resolve_relative(module: Module, level: int, name: str | None) -> str:
    package = module.name if module.is_package else module.name.rpartition(".")[0]
    for _ in range(level - 1):
        package = package.rpartition(".")[0]
    return f"{package}.{name}" if name else package


def _is_swarm(name: str) -> bool:
    return name == "swarm" or name.startswith("swarm.")


def _imports(module: Module, modules: dict[str, Module]) -> Iterator[Import]:
    """Every swarm module that ``module`` imports, wherever the statement stands.

    ``from P import n`` reads ``P.n`` when that is a module (as ``import P.n``
    would), otherwise ``P``; ``import a.b`` reads ``a.b``. The parents a
    statement initialises on the way are not counted: a package's modules
    importing each other through their own package would otherwise always be
    a circle.
    """
    for node in ast.walk(module.tree):
        where = f"{_rel(module.path)}:{getattr(node, 'lineno', 0)}"
        if isinstance(node, ast.Import):
            for alias in node.names:
                if _is_swarm(alias.name):
                    yield Import(module.name, alias.name, where, ast.unparse(node))
        elif isinstance(node, ast.ImportFrom):
            base = (_resolve_relative(module, node.level, node.module) if node.level
                    else node.module or "")
            if not _is_swarm(base):
                continue
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                target = sub if sub in modules else base
                yield Import(module.name, target, where, ast.unparse(node))
        elif (isinstance(node, ast.Call) and _called_name(node.func) == "import_module"
              and node.args and isinstance(node.args[0], ast.Constant)
              and isinstance(node.args[0].value, str) and _is_swarm(node.args[0].value)):
            yield Import(module.name, node.args[0].value, where, ast.unparse(node))


def _called_name(func: ast.expr) -> str:
    if isinstance(func, ast.Name):
        return func.id
    if isinstance(func, ast.Attribute):
        return func.attr
    return ""


def _part(name: str) -> str:
    """The part a module belongs to: the longest entry of ``LAYERS`` it lies in."""
    best = ""
    for part in LAYER:
        if (name == part or name.startswith(part + ".")) and len(part) > len(best):
            best = part
    if best == "swarm" and name not in ("swarm", "swarm.__main__"):
        return name.split(".")[0] + "." + name.split(".")[1]  # a part the table lacks
    return best


MODULES = _load()


# --------------------------------------------------------------------------- layering


def _layer_problems() -> list[str]:
    problems = []
    for module in MODULES.values():
        source = _part(module.name)
        if source not in LAYER:
            problems.append(f"{_rel(module.path)}: module {module.name} belongs to no part of "
                            f"LAYERS ({source} is not in the table)")
            continue
        for imp in module.imports:
            target = _part(imp.target)
            if target in (source, EVERYONE_MAY_IMPORT):
                continue
            if target not in LAYER:
                problems.append(f"{imp.where}: `{imp.text}` imports {imp.target}, which is no part")
            elif LAYER[target] >= LAYER[source]:
                problems.append(
                    f"{imp.where}: `{imp.text}`: {source} (layer {LAYER[source]}) may not import "
                    f"{target} (layer {LAYER[target]}); a part imports only lower layers")
    return problems


def test_each_part_imports_only_lower_layers() -> None:
    problems = _layer_problems()
    assert not problems, f"{len(problems)} imports break the layering:\n" + "\n".join(problems)


# --------------------------------------------------------------------------- circles


def _strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's components of ``graph`` with more than one node (iterative: no recursion limit)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is None:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        top = stack.pop()
                        on_stack.discard(top)
                        component.append(top)
                        if top == node:
                            break
                    if len(component) > 1:
                        found.append(sorted(component))
            elif child not in index:
                index[child] = low[child] = counter
                counter += 1
                stack.append(child)
                on_stack.add(child)
                work.append((child, iter(sorted(graph[child]))))
            elif child in on_stack:
                low[node] = min(low[node], index[child])
    return found


def _cycle_in(component: list[str], graph: dict[str, set[str]]) -> list[str]:
    """One circle through the component's first module (breadth first: a shortest one)."""
    members = set(component)
    start = component[0]
    paths = {start: [start]}
    queue = [start]
    while queue:
        node = queue.pop(0)
        for child in sorted(graph[node] & members):
            if child == start:
                return [*paths[node], start]
            if child not in paths:
                paths[child] = [*paths[node], child]
                queue.append(child)
    raise AssertionError(f"no circle in component {component}")


def test_no_import_circles() -> None:
    graph: dict[str, set[str]] = {name: set() for name in MODULES}
    first: dict[tuple[str, str], Import] = {}
    for module in MODULES.values():
        for imp in module.imports:
            if imp.target in MODULES and imp.target != module.name:
                graph[module.name].add(imp.target)
                first.setdefault((module.name, imp.target), imp)
    problems = []
    for component in _strongly_connected(graph):
        cycle = _cycle_in(component, graph)
        edges = [first[a, b] for a, b in zip(cycle, cycle[1:], strict=False)]
        steps = [f"    {edge.where}: `{edge.text}`" for edge in edges]
        problems.append(f"circle {' -> '.join(cycle)} (component of {len(component)}: "
                        f"{', '.join(component)}):\n" + "\n".join(steps))
    assert not problems, f"{len(problems)} import circles:\n" + "\n".join(problems)


# --------------------------------------------------------------------------- private names


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _module_aliases(module: Module) -> dict[str, str]:
    """Local names bound to swarm modules: ``import swarm.a.b as m``, ``from swarm.a import b``."""
    aliases = {}
    for node in ast.walk(module.tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if _is_swarm(alias.name):
                    if alias.asname:
                        aliases[alias.asname] = alias.name
                    else:
                        aliases[alias.name.split(".")[0]] = alias.name.split(".")[0]
        elif isinstance(node, ast.ImportFrom):
            base = (_resolve_relative(module, node.level, node.module) if node.level
                    else node.module or "")
            for alias in node.names:
                if f"{base}.{alias.name}" in MODULES:
                    aliases[alias.asname or alias.name] = f"{base}.{alias.name}"
    return aliases


def _dotted(node: ast.expr) -> list[str] | None:
    names = []
    while isinstance(node, ast.Attribute):
        names.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return None
    return [node.id, *reversed(names)]


def _private_problems() -> list[str]:
    problems = []
    for module in MODULES.values():
        for imp_node in ast.walk(module.tree):
            if not isinstance(imp_node, ast.ImportFrom):
                continue
            base = (_resolve_relative(module, imp_node.level, imp_node.module) if imp_node.level
                    else imp_node.module or "")
            if not _is_swarm(base):
                continue
            for alias in imp_node.names:
                own_package = module.name.rpartition(".")[0] == base  # a private sibling module
                if _private(alias.name) and not (f"{base}.{alias.name}" in MODULES and own_package):
                    problems.append(f"{_rel(module.path)}:{imp_node.lineno}: "
                                    f"`{ast.unparse(imp_node)}` imports {base}'s private "
                                    f"name {alias.name}")
        aliases = _module_aliases(module)
        for node in ast.walk(module.tree):
            if not isinstance(node, ast.Attribute) or not _private(node.attr):
                continue
            chain = _dotted(node.value)
            if not chain or chain[0] not in aliases:
                continue
            # The longest prefix of the chain that names a swarm module.
            target = aliases[chain[0]]
            for name in chain[1:]:
                if f"{target}.{name}" not in MODULES:
                    break
                target = f"{target}.{name}"
            else:
                if target != module.name:
                    problems.append(f"{_rel(module.path)}:{node.lineno}: `{ast.unparse(node)}` "
                                    f"reads {target}'s private name {node.attr}")
    return problems


def test_no_module_reads_another_modules_private_names() -> None:
    problems = _private_problems()
    assert not problems, (f"{len(problems)} reads of private names:\n" + "\n".join(problems))


def _class_owned(node: ast.ClassDef) -> set[str]:
    """The private names a class defines: its body's names and what its methods set on ``self``."""
    owned = set()
    for item in node.body:
        if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            owned.add(item.name)
        elif isinstance(item, ast.Assign):
            owned.update(t.id for t in item.targets if isinstance(t, ast.Name))
        elif isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name):
            owned.add(item.target.id)
    for sub in ast.walk(node):
        if (isinstance(sub, ast.Attribute) and isinstance(sub.ctx, ast.Store)
                and isinstance(sub.value, ast.Name) and sub.value.id in ("self", "cls")):
            owned.add(sub.attr)
    return {name for name in owned if _private(name)}


def _module_owned(module: Module) -> set[str]:
    owned = set()
    for node in ast.walk(module.tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            owned.add(node.name)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            owned.add(node.id)
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
            owned.add(node.attr)
    return {name for name in owned if _private(name)}


def _ancestors(key: ClassKey) -> set[ClassKey]:
    found: set[ClassKey] = set()
    todo = [key]
    while todo:
        for base in _swarm_bases(todo.pop()):
            if base not in found:
                found.add(base)
                todo.append(base)
    return found


def _private_attribute_problems() -> list[str]:
    """Private attributes reached across modules: on another module's objects, or inherited.

    An object's type is not known to an AST walk, so ``x._name`` counts as
    another module's private name when this module defines no ``_name`` and
    another swarm module does. A class that reaches its base's private names
    (``self._name`` set or read where a base class in another module owns it)
    is reaching into that module too.
    """
    module_owned = {name: _module_owned(module) for name, module in MODULES.items()}
    owners: dict[str, set[str]] = {}
    for name, owned in module_owned.items():
        for private in owned:
            owners.setdefault(private, set()).add(name)
    problems = []
    for module in MODULES.values():
        for node in ast.walk(module.tree):
            if (isinstance(node, ast.Attribute) and _private(node.attr)
                    and not (isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"))
                    and node.attr not in module_owned[module.name] and node.attr in owners):
                problems.append(
                    f"{_rel(module.path)}:{node.lineno}: `{ast.unparse(node)}` reaches a private "
                    f"name defined in {', '.join(sorted(owners[node.attr]))}")
    for key, (node, module) in sorted(CLASSES.items()):
        inherited: dict[str, ClassKey] = {}
        for base in _ancestors(key):
            if base[0] != module.name:
                for private in _class_owned(CLASSES[base][0]):
                    inherited.setdefault(private, base)
        uses: list[tuple[str, int]] = [
            (sub.attr, sub.lineno) for sub in ast.walk(node)
            if isinstance(sub, ast.Attribute) and isinstance(sub.value, ast.Name)
            and sub.value.id in ("self", "cls")]
        uses += [(item.name, item.lineno) for item in node.body  # overriding a private method
                 if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef))]
        for used, line in uses:
            if used in inherited:
                owner = inherited[used]
                problems.append(
                    f"{_rel(module.path)}:{line}: {node.name} uses {used}, a private name "
                    f"of its base {owner[0]}.{owner[1]}")
    return sorted(set(problems), key=_by_place)


def _by_place(problem: str) -> tuple[str, int]:
    path, line, _ = problem.split(":", 2)
    return path, int(line)


def test_no_class_reaches_into_another_modules_private_attributes() -> None:
    problems = _private_attribute_problems()
    assert not problems, (f"{len(problems)} private attributes reached across modules:\n"
                          + "\n".join(problems))


# --------------------------------------------------------------------------- inheritance


ClassKey = tuple[str, str]  # (module, class name)


def _classes() -> dict[ClassKey, tuple[ast.ClassDef, Module]]:
    found = {}
    for module in MODULES.values():
        for node in ast.walk(module.tree):
            if isinstance(node, ast.ClassDef):
                found[module.name, node.name] = (node, module)
    return found


def _bindings(module: Module) -> dict[str, tuple[str, str]]:
    """Names bound by ``from M import x as y``: ``y -> (M, x)`` (M absolute, swarm or not)."""
    bound = {}
    for node in ast.walk(module.tree):
        if isinstance(node, ast.ImportFrom):
            base = (_resolve_relative(module, node.level, node.module) if node.level
                    else node.module or "")
            for alias in node.names:
                bound[alias.asname or alias.name] = (base, alias.name)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                bound[alias.asname or alias.name.split(".")[0]] = (
                    (alias.name, "") if alias.asname else (alias.name.split(".")[0], ""))
    return bound


CLASSES = _classes()
BINDINGS = {name: _bindings(module) for name, module in MODULES.items()}


def _resolve_class(module: str, name: str, seen: frozenset[ClassKey] = frozenset()) -> ClassKey:
    """Where the class ``name`` as seen from ``module`` is defined (following re-exports).

    A class outside swarm comes back as ``(its module, name)`` too, for example
    ``("typing", "Protocol")``.
    """
    if (module, name) in CLASSES or (module, name) in seen or module not in MODULES:
        return module, name
    if name in BINDINGS[module]:
        base, original = BINDINGS[module][name]
        if original:
            if f"{base}.{original}" in MODULES:
                return f"{base}.{original}", ""
            return _resolve_class(base, original, seen | {(module, name)})
        return base, ""
    return module, name


def _base_key(module: str, expr: ast.expr) -> ClassKey | None:
    chain = _dotted(expr.value if isinstance(expr, ast.Subscript) else expr)
    if not chain:
        return None
    owner, name = _resolve_class(module, chain[0])
    for attr in chain[1:]:  # module.Class: resolve the module first
        if name:
            return None
        target = f"{owner}.{attr}" if owner else attr
        if target in MODULES:
            owner, name = target, ""
        else:
            owner, name = _resolve_class(owner, attr)
    return owner, name


def _is_interface(key: ClassKey) -> bool:
    """A swarm class that lists ``typing.Protocol`` among its bases: an interface, not a level."""
    node, module = CLASSES[key]
    protocols = {("typing", "Protocol"), ("typing_extensions", "Protocol")}
    return any(_base_key(module.name, base) in protocols for base in node.bases)


def _swarm_bases(key: ClassKey) -> list[ClassKey]:
    node, module = CLASSES[key]
    bases = [_base_key(module.name, b) for b in node.bases]
    return [b for b in bases if b is not None and b in CLASSES and not _is_interface(b)]


Depths = dict[ClassKey, tuple[int, list[ClassKey]]]


def _depth(key: ClassKey, memo: Depths) -> tuple[int, list[ClassKey]]:
    """Levels of swarm classes from ``key`` up (1 = no swarm base), and the deepest chain."""
    if key not in memo:
        memo[key] = (1, [key])  # a guard against cycles in the name resolution
        best = (1, [key])
        for base in _swarm_bases(key):
            depth, chain = _depth(base, memo)
            if depth + 1 > best[0]:
                best = (depth + 1, [key, *chain])
        memo[key] = best
    return memo[key]


def test_inheritance_at_most_two_levels() -> None:
    memo: Depths = {}
    problems = []
    for key, (node, module) in sorted(CLASSES.items()):
        if module.name in DEPTH_EXEMPT_MODULES:
            continue
        depth, chain = _depth(key, memo)
        if depth > MAX_DEPTH:
            names = " -> ".join(f"{m}.{c}" for m, c in chain)
            problems.append(f"{_rel(module.path)}:{node.lineno}: class {node.name} is {depth} "
                            f"levels deep ({names}); at most {MAX_DEPTH}: compose instead")
    problems.sort(key=_by_place)
    assert not problems, f"{len(problems)} classes inherit too deep:\n" + "\n".join(problems)


def test_the_inheritance_check_sees_bases_across_modules() -> None:
    """The depth check is not vacuous: it follows re-exports and finds known two-level classes."""
    memo: Depths = {}
    # ConfigError(SwarmError): two levels, SwarmError found through `from swarm.errors import`.
    assert _depth(("swarm.errors", "ConfigError"), memo)[0] == 2
    two_level = [key for key in CLASSES if key[0] != "swarm.errors" and _depth(key, memo)[0] == 2]
    assert len(two_level) >= 5, two_level


# --------------------------------------------------------------------------- the design's tables


def _design_section_2() -> str:
    text = DESIGN.read_text(encoding="utf-8")
    match = re.search(r"^## 2\..*?(?=^## 3\.)", text, flags=re.S | re.M)
    assert match, "docs/DESIGN.md has no section 2"
    return match.group(0)


def _design_layers() -> tuple[tuple[str, ...], ...]:
    """The rows of section 2's layer table: ``| 0 | `swarm.errors`, ... | ... |``."""
    rows = re.findall(r"^\|\s*(\d+)\s*\|([^|]*)\|", _design_section_2(), flags=re.M)
    assert rows, "docs/DESIGN.md section 2 has no layer table (rows `| 0 | `swarm.errors`, ... |`)"
    rows.sort(key=lambda row: int(row[0]))
    return tuple(tuple(re.findall(r"`([\w.]+)`", cell)) for _, cell in rows)


def test_design_shows_these_layers() -> None:
    assert _design_layers() == LAYERS, (
        "docs/DESIGN.md section 2's layer table and tests/test_layout.py's LAYERS differ: "
        f"design {_design_layers()}, test {LAYERS}")


def test_ls_swarm_reads_like_the_design() -> None:
    """Every folder and module of ``swarm/`` (and agents/, protocols/) has a row in section 2."""
    section = _design_section_2()
    listed = set(re.findall(r"`((?:swarm|agents|protocols)/[\w./]*)`", section))
    present = {"agents/", "protocols/"}
    for entry in (REPO / "swarm").iterdir():
        if entry.is_dir() and (entry / "__init__.py").exists():
            present.add(f"swarm/{entry.name}/")
        elif entry.suffix == ".py" and entry.name not in ("__init__.py", "__main__.py"):
            present.add(f"swarm/{entry.name}")
    missing = sorted(present - listed)
    assert not missing, f"docs/DESIGN.md section 2 does not show {missing} in its table of parts"
    parts = {p for p in LAYER if p != "swarm"}
    for part in parts:
        folder = part.split(".", 1)[1]
        assert (f"swarm/{folder}/" in present or f"swarm/{folder}.py" in present
                or f"{folder}/" in present), f"LAYERS names {part}, which does not exist"


def test_the_walk_sees_every_kind_of_import() -> None:
    """The walk is not vacuous: imports in functions, under TYPE_CHECKING, relative ones count."""
    facade = {imp.target for imp in MODULES["swarm"].imports}
    assert {"swarm.errors", "swarm.config.schema", "swarm.runtime.run"} <= facade, facade
    assert "swarm.agents" in MODULES and "swarm.protocols.knexa" in MODULES
    probe = Module("swarm.transport.probe", REPO / "swarm/transport/probe.py", ast.parse(
        "from typing import TYPE_CHECKING\n"
        "from . import socket\n"
        "from .. import errors\n"
        "import swarm.wire.codec as codec\n"
        "if TYPE_CHECKING:\n"
        "    from swarm.config.schema import SwarmConfig\n"
        "def f():\n"
        "    from swarm.runtime import host\n"
        "    importlib.import_module('swarm.cli.main')\n"), is_package=False)
    targets = {imp.target for imp in _imports(probe, MODULES)}
    assert targets == {"swarm.transport.socket", "swarm.errors", "swarm.wire.codec",
                       "swarm.config.schema", "swarm.runtime.host", "swarm.cli.main"}, targets


def test_the_circle_search_finds_a_circle_and_names_it() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a", "d"}, "d": set(), "e": {"e"}}
    assert _strongly_connected(graph) == [["a", "b", "c"]]
    assert _cycle_in(["a", "b", "c"], graph) == ["a", "b", "c", "a"]
