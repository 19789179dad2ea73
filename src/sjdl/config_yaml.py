"""The one YAML reader of sjdl: PyYAML's safe loader with limits against hostile documents.

Anchors and aliases are allowed (``size_test: *size``), but the document as it would be
expanded may hold at most ``MAX_NODES`` values, so a kilobyte "billion laughs" is refused at
once instead of growing without bound; recursive aliases and nesting deeper than
``MAX_DEPTH`` levels are refused too (deep nesting is otherwise a RecursionError). Config
files, ``key=value`` overrides and the config text stored in checkpoints all come here.
"""

from __future__ import annotations

from typing import Any

import yaml

MAX_DEPTH = 32  # a config is 3 levels deep; lists inside it add one
MAX_NODES = 100_000  # scalars + collections after alias expansion
MAX_CHARS = 1_000_000  # a config is a few kB


class YamlError(ValueError):
    """Not valid YAML, or YAML beyond the limits above; the message says which."""


class YamlLimitError(YamlError):
    """Valid YAML beyond the limits (expansion, depth, recursion, length): always refused."""


class _LimitedLoader(yaml.SafeLoader):
    def __init__(self, stream):
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent, index):
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise YamlLimitError(f"nested deeper than {MAX_DEPTH} levels")
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


def _expanded_size(root: yaml.Node) -> int:
    """Number of nodes of the document with every alias expanded (shared nodes counted once
    per use), computed once per distinct node; refuses recursive aliases."""
    sizes: dict[int, int] = {}
    active: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, done = stack.pop()
        key = id(node)
        if key in sizes:
            continue
        children = _children(node)
        if done:
            active.discard(key)
            sizes[key] = min(MAX_NODES + 1, 1 + sum(sizes[id(c)] for c in children))
            continue
        if key in active:
            raise YamlLimitError("a recursive alias (an anchor used inside itself)")
        active.add(key)
        stack.append((node, True))
        for c in children:
            if id(c) in active:
                raise YamlLimitError("a recursive alias (an anchor used inside itself)")
            if id(c) not in sizes:
                stack.append((c, False))
    return sizes[id(root)]


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    return []


def _duplicate_key(root: yaml.Node) -> str | None:
    """'line N: key K given twice in one mapping' for the first such key, else None: YAML
    keeps only the last value, so a second ``train:`` block silently dropped the first."""
    seen_nodes: set[int] = set()
    stack = [root]
    while stack:
        node = stack.pop()
        if id(node) in seen_nodes:
            continue
        seen_nodes.add(id(node))
        if isinstance(node, yaml.MappingNode):
            keys: set[str] = set()
            for k, _ in node.value:
                if isinstance(k, yaml.ScalarNode) and k.value != "<<":
                    if k.value in keys:
                        line = k.start_mark.line + 1
                        return f"line {line}: key {k.value!r} given twice in one mapping"
                    keys.add(k.value)
        stack.extend(_children(node))
    return None


def safe_load(text: str) -> Any:
    """Parse one YAML document (None when empty) or raise ``YamlError`` in one line."""
    if len(text) > MAX_CHARS:
        raise YamlLimitError(f"{len(text)} characters, more than the {MAX_CHARS} a config may have")
    loader = _LimitedLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        if _expanded_size(node) > MAX_NODES:
            raise YamlLimitError(
                f"its aliases expand to more than {MAX_NODES} values (a 'billion laughs' "
                "document?); write the values out instead"
            )
        twice = _duplicate_key(node)
        if twice:
            raise YamlError(f"{twice} (YAML would keep only the last one); merge them")
        return loader.construct_document(node)
    except yaml.YAMLError as e:
        raise YamlError(" ".join(str(e).split())) from None
    except RecursionError:  # pragma: no cover - MAX_DEPTH stops it first
        raise YamlLimitError(f"nested deeper than {MAX_DEPTH} levels") from None
    finally:
        loader.dispose()
