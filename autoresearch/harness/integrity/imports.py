"""Import rules: which modules train.py may import, and how it may import the harness.

Only allow-listed modules (``rules.allowed_modules``), no star or relative imports, only the allowed names of
the restricted modules (os, sys, gc, inspect, json), nothing blocked (file loaders, hubs, dispatch hooks), and
of autoresearch only ``import autoresearch.harness.<backend> as harness`` or its public names.
"""

from __future__ import annotations

import ast

from .context import RuleContext
from .rules import HARNESS_IMPORT, IMPORT, IMPORT_CATEGORIES, IMPORT_WHY, RESTRICTED


class ImportRules(RuleContext):
    """``import`` and ``from ... import`` statements."""

    def on_import(self, node: ast.Import) -> None:
        for a in node.names:
            if a.name == "autoresearch" or a.name.startswith("autoresearch."):
                if a.name == self.hm:
                    if not a.asname:
                        self.add(node, HARNESS_IMPORT,
                                 f"write `import {self.hm} as harness`: the bare form binds the whole autoresearch "
                                 "package, whose internals train.py may not reach.")
                else:
                    self._internal_import(node, a.name)
            else:
                self._module_import(node, a.name)

    def on_import_from(self, node: ast.ImportFrom) -> None:
        if node.level:
            self.add(node, IMPORT, "relative imports are not allowed in train.py: it is a standalone script that "
                                   "imports only allow-listed modules and the harness.")
            return
        mod = node.module or ""
        for a in node.names:
            if a.name == "*":
                self.add(node, IMPORT, f"`from {mod} import *` is not allowed in train.py: import the names you "
                                       "use explicitly so the check can see them.")
                continue
            if mod == self.hm:
                self._harness_name(node, a.name)
            elif mod == "autoresearch.harness" and a.name == self.backend:
                continue
            elif mod == "autoresearch" or mod.startswith("autoresearch."):
                self._internal_import(node, f"{mod}.{a.name}")
            else:
                self._module_import(node, f"{mod}.{a.name}")

    def _harness_name(self, node: ast.AST, name: str) -> None:
        public = ", ".join(sorted(self.public))
        if name.startswith("_"):
            self.add(node, HARNESS_IMPORT, f"`{name}` is private to {self.hm} (names starting with _ are harness "
                                           f"internals); import only its public names: {public}.")
        elif name not in self.public:
            self.add(node, HARNESS_IMPORT, f"`{name}` is not a public name of {self.hm}; import only its public "
                                           f"names: {public}.")
        elif name == "batches":
            self._batches(node)

    def _internal_import(self, node: ast.AST, path: str) -> None:
        for other in self.other_hms:
            if path == other or path.startswith(other + "."):
                self.add(node, HARNESS_IMPORT, f"`{path}` is the harness of another backend, but this run uses "
                                               f"{self.backend}: import `{self.hm}` (as harness) instead.")
                return
        if path in ("autoresearch.harness", "autoresearch"):
            what = f"`{path}` is the whole autoresearch package"
        else:
            what = f"`{path}` is internal to autoresearch"
        self.add(node, HARNESS_IMPORT, f"{what}: train.py may import only `import {self.hm} as harness` or public "
                                       "names from it, so the data, the clock and the score stay out of its reach.")

    def _module_import(self, node: ast.AST, path: str) -> None:
        root = path.split(".")[0]
        if root not in self.allowed:
            category = next((c for c, mods in IMPORT_CATEGORIES.items() if root in mods), None)
            why = f": it {IMPORT_WHY[category]}" if category else ""
            allowed = ", ".join(m for m in sorted(self.allowed) if m != "__future__")
            self.add(node, category or IMPORT, f"import of `{root}` is not allowed in train.py{why}; allowed "
                                               f"modules: {allowed}.")
            return
        parts = path.split(".")
        if root in RESTRICTED and len(parts) > 1 and parts[1] not in RESTRICTED[root]:
            self._restricted(node, root, parts[1])
            return
        self._blocked(node, path)
