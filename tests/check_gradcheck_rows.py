#!/usr/bin/python3
"""Fails when an op the library records has no row in the gradcheck table.

Every name the library passes to `record` / `record_into` or to the recording helpers
(`record_elementwise`, `record_symmetric`, `record_linalg`, `record_packed`) in graph/, ops/,
models/ and optim/
must be the first word of a row of tests/test_gradcheck_ops.cpp, whose rows run gradcheck
and gradgradcheck in float64: no op ships without its gradient check. A name passed on by a
helper (`Var gather_op(const char* name, ...)` calling `record(name, ...)`) is taken from the
helper's call sites (the first string literal of each call).
Usage: tests/check_gradcheck_rows.py [REPO_ROOT]
"""
import pathlib
import re
import sys

root = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else pathlib.Path(__file__).parent.parent)
sources = {p: p.read_text(encoding="utf-8")
           for layer in ("graph", "ops", "models", "optim")
           for p in sorted((root / layer).rglob("*.cpp"))}

LITERAL = re.compile(r'\brecord(?:_into|_elementwise|_symmetric|_linalg|_packed)?\(\s*"(\w+)"')
FORWARDED = re.compile(r'\brecord(?:_into|_elementwise|_symmetric|_linalg|_packed)?\(\s*([a-z_]\w*)\s*,')
recorded = {}  # name -> where
for path, text in sources.items():
    for m in LITERAL.finditer(text):
        recorded.setdefault(m.group(1), f"{path.relative_to(root)}:{text.count(chr(10), 0, m.start()) + 1}")
    for m in FORWARDED.finditer(text):
        # The helper that forwards its `const char* <ident>` parameter; its callers' literals.
        ident = m.group(1)
        helpers = re.findall(r'^\w[\w:<>]* (\w+)\([^)]*\bconst char\* ' + ident + r'\b',
                             text[:m.start()], re.M)
        if not helpers:
            print(f"{path.relative_to(root)}: record({ident}, ...) with a name this check cannot follow")
            sys.exit(1)
        helper = helpers[-1]
        for t in sources.values():
            for c in re.finditer(r'\b' + helper + r'\([^;"]*"(\w+)"', t):
                recorded.setdefault(c.group(1), f"{path.relative_to(root)} (via {helper})")

table = (root / "tests/test_gradcheck_ops.cpp").read_text(encoding="utf-8")
# A row opens a line with {"name ...", (one Case of a run_cases list).
rows = {name.split()[0] for name in re.findall(r'^\s*\{"([^"]+)",', table, re.M)}
missing = sorted(set(recorded) - rows)
for name in missing:
    print(f"op '{name}' ({recorded[name]}) has no row in tests/test_gradcheck_ops.cpp "
          f"(a row named '{name} ...')")
print(f"check_gradcheck_rows: {len(recorded)} recorded op names, {len(missing)} without a row")
sys.exit(1 if missing or not recorded else 0)
