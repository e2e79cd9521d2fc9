"""No import cycles among the project's modules, whatever their depth.

``lint-imports`` (pyproject.toml, contract ``acyclic``) finds cycles between the siblings of
each package; this finds any cycle of modules, a package's ``__init__`` and its own modules
included. The graph (grimp's, as ``lint-imports`` builds it) holds every import: at module
level, in a function, under ``TYPE_CHECKING``. An import put in a function to dodge a cycle is
still a cycle.
"""

from __future__ import annotations

import grimp

PACKAGES = ("services", "shared", "bench", "tests")


def strongly_connected(graph: grimp.ImportGraph) -> list[list[str]]:
    """The graph's cycles: its strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in sorted(graph.modules):
        if root in index:
            continue
        # iterative depth-first search: (module, its successors not yet visited)
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        work = [(root, iter(sorted(graph.find_modules_directly_imported_by(root))))]
        while work:
            module, successors = work[-1]
            for successor in successors:
                if successor not in index:
                    index[successor] = low[successor] = len(index)
                    stack.append(successor)
                    on_stack.add(successor)
                    imported = graph.find_modules_directly_imported_by(successor)
                    work.append((successor, iter(sorted(imported))))
                    break
                if successor in on_stack:
                    low[module] = min(low[module], index[successor])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[module])
                if low[module] == index[module]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == module:
                            break
                    if len(component) > 1:
                        found.append(sorted(component))
    return found


def test_the_finder_sees_a_cycle() -> None:
    graph = grimp.ImportGraph()
    for importer, imported in (("a.x", "a.y"), ("a.y", "a.z"), ("a.z", "a.x"), ("a.z", "a.w")):
        graph.add_import(importer=importer, imported=imported)
    assert strongly_connected(graph) == [["a.x", "a.y", "a.z"]]


def test_no_module_is_in_an_import_cycle() -> None:
    graph = grimp.build_graph(*PACKAGES, cache_dir=None)
    cycles = strongly_connected(graph)
    detail = [
        f"{importer} -> {imported} (line {line['line_number']})"
        for cycle in cycles for importer in cycle for imported in cycle
        for line in graph.get_import_details(importer=importer, imported=imported)
    ]
    assert cycles == [], detail
