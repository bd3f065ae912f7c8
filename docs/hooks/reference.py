"""MkDocs hook: pages that are generated from the code and the repository, never copied by hand.

Two markers, each alone on a line of a page:

``<!-- config-reference: MODULE:CLASS -->``
    becomes a table of every field of the dataclass ``CLASS`` and of every dataclass reachable through
    its fields (type, default, and the entry of the class docstring's ``Attributes:`` section). A field
    without an entry, or an entry without a field, fails the build, so the reference stays complete.
    A field that names one of several settings classes (``exploration.bonus``) lists their names, and
    each class's keys are shown as sitting beside that name.
``<!-- cli-reference -->``
    becomes the usage and a table of options of every ``ilvm-rl`` command, read from its parser.
``<!-- include: PATH -->``
    becomes the text of ``PATH`` (relative to ``mkdocs.yml``), e.g. ``envs/README.md``, which then
    has one home and shows on the site.

``tests/test_docs.py`` imports this file by path and checks the renderer.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import inspect
import json
import re
import types
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal, Union

from ilvm_rl.config import VARIANTS, to_dict

REFERENCE_MARKER = re.compile(r"^<!-- config-reference: ([\w.]+):(\w+) -->$", re.MULTILINE)
CLI_MARKER = "<!-- cli-reference -->"
INCLUDE_MARKER = re.compile(r"^<!-- include: (\S+) -->$", re.MULTILINE)
# an entry of a Google-style Attributes section: four spaces, a name, a colon
ENTRY = re.compile(r"^ {4}(\w+):\s?(.*)$")
# Sphinx roles (:class:`a.b.C`) and reST literals (``x``) as Markdown code
ROLE = re.compile(r":\w+:`~?(?:[\w.]+\.)?(\w+)`")
LITERAL = re.compile(r"``(.+?)``")


class UndocumentedFieldError(ValueError):
    """A dataclass whose docstring does not document exactly its fields."""


def markdown_text(text: str) -> str:
    """Docstring prose as one line of Markdown that fits in a table cell."""
    text = LITERAL.sub(r"`\1`", ROLE.sub(r"`\1`", text))
    return " ".join(text.split()).replace("|", "\\|")


def attribute_docs(cls: type) -> dict[str, str]:
    """The entries of the ``Attributes:`` section of ``cls``'s docstring, by field name.

    Raises:
        UndocumentedFieldError: the docstring has no ``Attributes:`` section.
    """
    lines = inspect.cleandoc(cls.__doc__ or "").splitlines()
    if "Attributes:" not in lines:
        raise UndocumentedFieldError(f"{qualified_name(cls)}: the docstring has no 'Attributes:' section")
    entries: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in lines[lines.index("Attributes:") + 1 :]:
        match = ENTRY.match(line)
        if match:
            current = entries.setdefault(match.group(1), [])
            current.append(match.group(2))
        elif line.startswith(" " * 8) and current is not None:
            current.append(line)
        else:  # a blank line or a new section ends it
            break
    return {name: markdown_text(" ".join(parts)) for name, parts in entries.items()}


def summary(cls: type) -> str:
    """The first paragraph of ``cls``'s docstring."""
    return markdown_text(inspect.cleandoc(cls.__doc__ or "").split("\n\n", 1)[0])


def qualified_name(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def anchor(cls: type) -> str:
    """The id MkDocs gives a ``## ClassName`` heading."""
    return cls.__name__.lower()


def nested_dataclasses(annotation: Any) -> Iterator[type]:
    """The dataclasses an annotation names, through unions and containers."""
    if dataclasses.is_dataclass(annotation) and isinstance(annotation, type):
        yield annotation
    for argument in typing.get_args(annotation):
        yield from nested_dataclasses(argument)


def type_text(annotation: Any) -> str:
    """An annotation in the words of a settings file: ``list of int``, ``'ppo' or 'a2c'``, a link."""
    origin = typing.get_origin(annotation)
    if origin is Literal:
        return " or ".join(f"`{value}`" for value in typing.get_args(annotation))
    if origin in (Union, types.UnionType):
        return " or ".join(type_text(argument) for argument in typing.get_args(annotation))
    if origin is tuple:
        return f"list of {type_text(typing.get_args(annotation)[0])}"
    if origin is dict:
        return "mapping"
    if annotation is type(None):
        return "null"
    if dataclasses.is_dataclass(annotation) and isinstance(annotation, type):
        return f"[{annotation.__name__}](#{anchor(annotation)})"
    return "any" if annotation is Any else str(getattr(annotation, "__name__", annotation))


def variants_text(field: dataclasses.Field[Any]) -> str:
    """The names a variant field accepts, each linked to its settings class."""
    return " or ".join(f"`{name}` ([{cls.__name__}](#{anchor(cls)}))" for name, cls in field.metadata[VARIANTS].items())


def changed_keys(value: Any) -> list[str]:
    """The keys of a settings object where it differs from its class's own defaults, as ``key: value``."""
    own, plain = to_dict(type(value)()), to_dict(value)
    return [f"`{key}: {json.dumps(plain[key])}`" for key in plain if plain[key] != own[key]]


def default_text(field: dataclasses.Field[Any]) -> str:
    """A field's default as a settings file writes it; for a nested dataclass, the keys where it
    differs from that class's own defaults; for a variant field, the name of its default variant
    and those keys."""
    if VARIANTS in field.metadata:
        default = field.default_factory()  # type: ignore[misc]
        name = next(name for name, cls in field.metadata[VARIANTS].items() if type(default) is cls)
        changed = changed_keys(default)
        return f"`{name}`" + (f" with {', '.join(changed)}" if changed else "")
    if field.default is not dataclasses.MISSING:
        value = field.default
    elif field.default_factory is not dataclasses.MISSING:
        value = field.default_factory()
    else:
        return "required"
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return ", ".join(changed_keys(value)) or f"{type(value).__name__}'s defaults"
    if isinstance(value, str) and value:
        return f"`{value}`"
    return f"`{json.dumps(to_dict(value))}`"


def class_section(cls: type, paths: list[str], beside: list[str] | None = None) -> str:
    """The reference of one dataclass: heading, summary, where its keys go, and a table of fields.

    Args:
        paths: the dotted keys under which the class's keys go (``""`` for the top level).
        beside: for a variant, ``key: name`` pairs that choose it; its keys go beside that key.

    Raises:
        UndocumentedFieldError: a field without a docstring entry, or an entry that names no field.
    """
    docs = attribute_docs(cls)
    hints = typing.get_type_hints(cls)
    fields = dataclasses.fields(cls)  # type: ignore[arg-type]
    names = [field.name for field in fields]
    undocumented = [name for name in names if name not in docs]
    if undocumented:
        raise UndocumentedFieldError(
            f"{qualified_name(cls)}: field(s) {', '.join(undocumented)} have no entry in the docstring's "
            "'Attributes:' section; document each field there"
        )
    stale = [name for name in docs if name not in names]
    if stale:
        raise UndocumentedFieldError(
            f"{qualified_name(cls)}: the docstring documents {', '.join(stale)}, which are not fields"
        )
    where = "Top-level keys." if paths == [""] else "Keys under " + ", ".join(f"`{p}`" for p in paths) + "."
    if beside:
        where = where.removesuffix(".") + ", beside " + ", ".join(f"`{pair}`" for pair in beside) + "."
    rows = [
        f"| `{field.name}` | {variants_text(field) if VARIANTS in field.metadata else type_text(hints[field.name])} "
        f"| {default_text(field)} | {docs[field.name]} |"
        for field in fields
    ]
    header = ["| key | type | default | meaning |", "| --- | --- | --- | --- |"]
    return "\n".join(
        [f"### {cls.__name__}", "", summary(cls), "", f"{where} Class `{qualified_name(cls)}`.", "", *header, *rows]
    )


def config_reference(root: type, seen: set[type] | None = None) -> str:
    """The reference of ``root`` and of every dataclass reachable through its fields, breadth first.

    Args:
        root: a dataclass whose docstring documents each field under ``Attributes:``.
        seen: classes already rendered on the page (updated), so that two roots share nested classes.

    Raises:
        UndocumentedFieldError: some class's docstring does not document exactly its fields.
    """
    seen = set() if seen is None else seen
    paths: dict[type, list[str]] = {root: [""]}
    beside: dict[type, list[str]] = {}
    order: list[type] = [root]
    for cls in order:  # grows while it is walked: breadth first
        hints = typing.get_type_hints(cls)
        for field in dataclasses.fields(cls):  # type: ignore[arg-type]
            # items of a list of settings (a suite's tasks) are named like ``tasks[i]``
            key = f"{field.name}[i]" if typing.get_origin(hints[field.name]) is tuple else field.name
            variants = field.metadata.get(VARIANTS, {})
            for nested in variants.values() or nested_dataclasses(hints[field.name]):
                # a variant's keys sit beside the field that names it, in the same mapping
                path = paths[cls][0] if variants else ".".join(part for part in (paths[cls][0], key) if part)
                if nested not in paths:
                    paths[nested] = []
                    order.append(nested)
                if path not in paths[nested]:
                    paths[nested].append(path)
            for name, nested in variants.items():
                beside.setdefault(nested, []).append(f"{field.name}: {name}")
    sections = [class_section(cls, paths[cls], beside.get(cls)) for cls in order if cls not in seen]
    seen.update(order)
    return "\n\n".join(sections)


def load_class(module: str, name: str) -> type:
    cls = getattr(importlib.import_module(module), name, None)
    if not (isinstance(cls, type) and dataclasses.is_dataclass(cls)):
        raise UndocumentedFieldError(f"config-reference: {module}:{name} is not a dataclass")
    return cls


def option_row(action: argparse.Action) -> str:
    """One table row: the flag (or positional name) with its value, its default and its help."""
    name = ", ".join(f"`{flag}`" for flag in action.option_strings) or f"`{action.metavar or action.dest}`"
    if action.choices is not None and not isinstance(action, argparse._SubParsersAction):
        value = " \\| ".join(str(choice) for choice in action.choices)
    elif action.nargs != 0 and action.option_strings:
        value = str(action.metavar or action.dest.upper())
    else:
        value = ""
    if action.required:
        default = "required"
    elif action.default in (None, argparse.SUPPRESS, []) or action.nargs == 0 or "default:" in (action.help or ""):
        default = ""  # nothing to show, or the help says it (a default of this machine's cores would mislead)
    else:
        default = f"`{action.default}`"
    meaning = markdown_text(action.help or "").replace("<", "&lt;")  # <!-- bench:NAME --> would vanish
    return f"| {name} | {f'`{value}`' if value else ''} | {default} | {meaning} |"


def cli_reference(parser: argparse.ArgumentParser) -> str:
    """Usage and options of every subcommand of ``parser``, as Markdown sections."""
    (commands,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    helps = {choice.dest: choice.help or "" for choice in commands._choices_actions}
    sections = []
    for name, command in commands.choices.items():
        rows = [option_row(a) for a in command._actions if not isinstance(a, argparse._HelpAction)]
        usage = " ".join(command.format_usage().removeprefix("usage:").split())
        table = ["| option | value | default | meaning |", "| --- | --- | --- | --- |", *rows] if rows else []
        sections.append(
            "\n".join([f"## ilvm-rl {name}", "", f"{markdown_text(helps[name])}.", "", "```", usage, "```", "", *table])
        )
    return "\n\n".join(sections)


def render_page(markdown: str, root: Path) -> str:
    """Replace the page's markers with what they stand for.

    Args:
        markdown: the page's source.
        root: the folder of ``mkdocs.yml``, against which include paths are read.
    """
    seen: set[type] = set()
    markdown = REFERENCE_MARKER.sub(lambda m: config_reference(load_class(m.group(1), m.group(2)), seen), markdown)
    if CLI_MARKER in markdown:
        from ilvm_rl.cli import build_parser  # the CLI imports the whole package: only where asked

        markdown = markdown.replace(CLI_MARKER, cli_reference(build_parser()))
    return INCLUDE_MARKER.sub(lambda m: (root / m.group(1)).read_text(), markdown)


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    """MkDocs' hook: called with each page's Markdown before it is converted."""
    return render_page(markdown, Path(config.config_file_path).parent)
