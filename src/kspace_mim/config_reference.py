"""The configuration reference, generated from the shipped configs:
``python -m kspace_mim.config_reference [OUT.md]``.

Every config group (a folder of ``conf/``), every option in it (a YAML file) and every key
with its default and its meaning: the comment on the key's line, else the comment lines
just above it, else the argument of the option's ``_target_`` it sets. The option's
leading comment block is its description. Written by hand: OmegaConf and PyYAML drop
comments, and the comments are where the configs explain themselves.
"""

from __future__ import annotations

import argparse
import re
from dataclasses import dataclass, field
from pathlib import Path

from kspace_mim.config import CONFIG_DIR

# `key: value  # comment` at any indentation; the value may be empty (a mapping follows).
KEY = re.compile(
    r"^(?P<indent> *)(?P<key>[A-Za-z_][\w.@/-]*):(?P<value>[^#]*?)\s*(?:#\s?(?P<note>.*))?$"
)
# The configs read first: what `python -m kspace_mim.<command>` composes.
PRIMARY = ("train", "reconstruct", "evaluate")


@dataclass
class Key:
    """One key of an option: dotted path, default as written, meaning."""

    path: str
    default: str
    meaning: str


@dataclass
class Option:
    """One YAML file: its group, name, description and keys."""

    group: str
    name: str
    description: str
    keys: list[Key] = field(default_factory=list)
    target: str | None = None
    is_global: bool = False  # `# @package _global_`: its keys are full paths

    def qualified(self, key: Key) -> str:
        """The key's full path in the composed config (``data.batch_size``)."""
        if self.is_global or not self.group:
            return key.path
        return f"{self.group.replace('/', '.')}.{key.path}"


def parse_option(path: Path, root: Path = CONFIG_DIR) -> Option:
    """Read one YAML file of ``root`` with its comments."""
    group = path.parent.relative_to(root).as_posix()
    option = Option(group="" if group == "." else group, name=path.stem, description="")
    lines = path.read_text().splitlines()
    # The leading comment block (not Hydra's `# @package` line) describes the option.
    body_start = next((i for i, line in enumerate(lines) if not line.startswith("#")), len(lines))
    header = [line.lstrip("#").strip() for line in lines[:body_start]]
    option.description = " ".join(h for h in header if h and not h.startswith("@package"))
    option.is_global = "@package _global_" in header

    parents: list[tuple[int, str]] = []  # (indent, key) of the mappings we are inside
    pending: list[str] = []  # comment lines above the next key
    items: dict[str, list[str]] = {}  # list entries (the defaults list) by their key
    for line in lines[body_start:]:
        stripped = line.strip()
        if not stripped:
            pending = []
            continue
        if stripped.startswith("#"):
            pending.append(stripped.lstrip("#").strip())
            continue
        if stripped.startswith("- ") and parents:
            entry = stripped[2:].split(" #")[0].strip()
            items.setdefault(".".join(k for _, k in parents), []).append(entry)
            pending = []
            continue
        match = KEY.match(line)
        if match is None:
            pending = []
            continue
        indent = len(match["indent"])
        while parents and parents[-1][0] >= indent:
            parents.pop()
        dotted = ".".join([*(k for _, k in parents), match["key"]])
        value = match["value"].strip()
        meaning = (match["note"] or " ".join(pending)).strip()
        pending = []
        if dotted == "_target_":
            option.target = value
        if value:
            option.keys.append(Key(dotted, value, meaning))
        else:  # a mapping or a list follows
            parents.append((indent, match["key"]))
            option.keys.append(Key(dotted, "", meaning))
    for key in option.keys:
        if key.path in items:
            key.default = "[" + ", ".join(items[key.path]) + "]"
    # A mapping without a comment of its own says nothing its keys do not.
    option.keys = [k for k in option.keys if k.default or k.meaning]
    return option


def options(root: Path = CONFIG_DIR) -> list[Option]:
    """Every YAML under ``root``: primary configs first, then the groups alphabetically.

    A key that no comment explains takes the meaning the same key has in another option
    of its group or under the same full path elsewhere (``trainer=gpu``'s ``precision`` is
    ``trainer=default``'s argument; ``recipe=fastmri_varnet``'s ``data.batch_size`` is the data
    group's ``batch_size``); a ``defaults`` list is what the option builds on.
    """
    found = [parse_option(p, root) for p in sorted(root.rglob("*.yaml"))]
    meanings: dict[str, str] = {}
    for option in found:
        for key in option.keys:
            meaning = key.meaning or _implied(option, key)
            if meaning:
                meanings.setdefault(option.qualified(key), meaning)
    for option in found:
        for key in option.keys:
            if not key.meaning:
                key.meaning = _implied(option, key) or meanings.get(option.qualified(key), "")
    rank = {name: i for i, name in enumerate(PRIMARY)}
    return sorted(found, key=lambda o: (o.group != "", rank.get(o.name, 99), o.group, o.name))


def _implied(option: Option, key: Key) -> str:
    """What a key means by its place alone: a defaults list, a ``_target_``, an argument
    of a nested ``_target_``, a swept parameter."""
    if key.path == "defaults":
        return "what this option builds on (Hydra's defaults list, in order)"
    if key.path.endswith("_target_"):
        return "the class or function this entry builds"
    if key.path.startswith("hydra.sweeper.params."):
        return f"the values searched for `{key.path.removeprefix('hydra.sweeper.params.')}`"
    parent = key.path.rpartition(".")[0]
    targets = {k.path: k.default for k in option.keys if k.path.endswith("._target_")}
    if f"{parent}._target_" in targets:
        return f"argument of `{targets[parent + '._target_']}`"
    return f"argument of `{option.target}`" if option.target and "." not in key.path else ""


def groups(root: Path = CONFIG_DIR) -> list[str]:
    """The config groups (folders holding YAML files), e.g. ``model``, ``hydra/launcher``."""
    return sorted({o.group for o in options(root) if o.group})


def _text(text: str) -> str:
    """Comment text as Markdown: brackets stay brackets (not link references)."""
    return text.replace("[", "\\[").replace("]", "\\]")


def _cell(text: str) -> str:
    return _text(text).replace("|", "\\|").replace("\n", " ")


def markdown(root: Path = CONFIG_DIR) -> str:
    """The reference page: one section per group, one table per option."""
    all_options = options(root)
    out = [
        "# Configuration reference",
        "",
        "Generated from the configs inside the package (`src/kspace_mim/conf/`) by",
        "`python -m kspace_mim.config_reference docs/reference/configuration.md`; do not edit.",
        "Choose an option with `group=option` on the command line, set a key with",
        "`key=value` (a group's keys live under the group's name, e.g. `data.batch_size=8`;",
        "`# @package _global_` options such as `model`, `recipe` and `experiment` set keys",
        "anywhere).",
        "",
        "Groups: " + ", ".join(f"[`{g}`](#{g.replace('/', '')})" for g in groups(root)) + ".",
        "",
    ]
    current = None
    for option in all_options:
        if option.group != current:
            current = option.group
            title = f"`{current}`" if current else "Primary configs"
            anchor = current.replace("/", "") if current else "primary-configs"
            out += [f"## {title} {{#{anchor}}}", ""]
        name = f"{option.group}={option.name}" if option.group else f"{option.name}.yaml"
        out += [f"### `{name}`", ""]
        if option.description:
            out += [_text(option.description), ""]
        rows = [k for k in option.keys if k.path != "_target_"]
        if option.target:
            out += [f"Builds `{option.target}`.", ""]
        if rows:
            out += ["| key | default | meaning |", "|---|---|---|"]
            for key in rows:
                # a code span: brackets stay literal there, only the table's pipe escapes
                default = "`" + key.default.replace("|", "\\|") + "`" if key.default else ""
                out.append(f"| `{key.path}` | {default} | {_cell(key.meaning)} |")
            out.append("")
    return "\n".join(out).rstrip() + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m kspace_mim.config_reference", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("out", nargs="?", type=Path, help="Markdown file (default: stdout)")
    args = parser.parse_args(argv)
    text = markdown()
    if args.out is None:
        print(text, end="")
    else:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
        print(f"wrote {args.out} ({len(options())} options in {len(groups())} groups)")


if __name__ == "__main__":
    main()
