"""The docs: the generated references, the README's promises and its runnable snippets."""

import dataclasses
import importlib.util
import re
import shlex
import sys
from pathlib import Path
from types import ModuleType
from typing import Literal

import pytest

from ilvm_rl.bench.suite import Suite
from ilvm_rl.cli import build_parser, surrounding_section
from ilvm_rl.exploration import ExplorationConfig
from ilvm_rl.recipes import Recipe

ROOT = Path(__file__).resolve().parent.parent
# tiny budgets for the snippets' keyword arguments of the same names: the real code path, in seconds
TINY_BUDGETS = {"total_timesteps": 256, "pretrain_steps": 64, "fit_steps": 2}
README_LIMIT_BYTES = 12 * 1024


def load_hook() -> ModuleType:
    spec = importlib.util.spec_from_file_location("docs_reference_hook", ROOT / "docs" / "hooks" / "reference.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses and typing resolve names through the module
    spec.loader.exec_module(module)
    return module


hook = load_hook()


@dataclasses.dataclass(frozen=True)
class Inner:
    """Inner settings.

    Attributes:
        width: how wide, in ``units``; see :class:`some.module.Other`.
        kind: which kind.
    """

    width: int = 3
    kind: Literal["a", "b"] = "a"


@dataclasses.dataclass(frozen=True)
class Outer:
    """Outer settings, the root.

    More prose that is not the summary.

    Attributes:
        name: a name | with a bar.
        first: the first inner part, on
            two lines.
        second: the second one, or null.
        many: a list of them.
    """

    name: str
    first: Inner = dataclasses.field(default_factory=lambda: Inner(width=5))
    second: Inner | None = None
    many: tuple[Inner, ...] = ()


@dataclasses.dataclass(frozen=True)
class Undocumented:
    """Settings with a field the docstring forgets.

    Attributes:
        documented: here.
    """

    documented: int = 0
    forgotten: int = 1


@dataclasses.dataclass(frozen=True)
class Stale:
    """Settings whose docstring names a field that is gone.

    Attributes:
        kept: here.
        removed: no longer a field.
    """

    kept: int = 0


def table_rows(markdown: str, heading: str) -> dict[str, list[str]]:
    """The table under ``### heading``: key to the other cells."""
    section = markdown.split(f"### {heading}\n", 1)[1].split("\n### ", 1)[0]
    rows = [re.split(r"(?<!\\)\|", line) for line in section.splitlines() if line.startswith("| `")]
    return {row[1].strip().strip("`"): [cell.strip() for cell in row[2:-1]] for row in rows}


def test_the_reference_renders_each_field_with_type_default_and_docstring_entry() -> None:
    markdown = hook.config_reference(Outer)
    assert markdown.index("### Outer") < markdown.index("### Inner")
    assert markdown.count("### Inner") == 1  # reached three ways, rendered once
    assert "Outer settings, the root." in markdown and "More prose" not in markdown
    outer = table_rows(markdown, "Outer")
    assert outer["name"] == ["str", "required", "a name \\| with a bar."]
    assert outer["first"] == ["[Inner](#inner)", "`width: 5`", "the first inner part, on two lines."]
    assert outer["second"] == ["[Inner](#inner) or null", "`null`", "the second one, or null."]
    assert outer["many"][:2] == ["list of [Inner](#inner)", "`[]`"]
    inner = table_rows(markdown, "Inner")
    assert inner["width"] == ["int", "`3`", "how wide, in `units`; see `Other`."]
    assert inner["kind"][:2] == ["`a` or `b`", "`a`"]
    assert "Keys under `first`, `second`, `many[i]`." in markdown


def test_a_variant_field_lists_its_names_and_each_class_sits_beside_its_name() -> None:
    markdown = hook.config_reference(ExplorationConfig)
    bonus = table_rows(markdown, "ExplorationConfig")["bonus"]
    assert (
        bonus[0].startswith("`ilvm` ([ILVMScoreConfig](#ilvmscoreconfig)) or `disagreement`")
        and bonus[1] == '`disagreement` with `samples: 16`, `target: "next_obs"`'
    )
    assert "Keys under `exploration`" not in markdown  # the root here is ExplorationConfig itself
    assert "Top-level keys, beside `bonus: rnd`." in markdown
    assert list(table_rows(markdown, "RNDConfig")) == ["output_dim"]


@pytest.mark.parametrize(
    ("cls", "message"),
    [
        (Undocumented, "Undocumented: field(s) forgotten have no entry"),
        (Stale, "Stale: the docstring documents removed, which are not fields"),
    ],
)
def test_the_reference_refuses_a_docstring_that_does_not_match_the_fields(cls, message) -> None:
    with pytest.raises(hook.UndocumentedFieldError, match=re.escape(message)):
        hook.config_reference(cls)
    with pytest.raises(hook.UndocumentedFieldError, match=re.escape("ilvm_rl.cli:main is not a dataclass")):
        hook.render_page("<!-- config-reference: ilvm_rl.cli:main -->", ROOT)


def test_the_shipped_settings_classes_are_fully_documented() -> None:
    """Every field of every settings class a recipe or suite reaches has its row."""
    for root in (Recipe, Suite):
        markdown = hook.config_reference(root)
        pending = [root]
        while pending:
            cls = pending.pop()
            rows = table_rows(markdown, cls.__name__)
            assert list(rows) == [field.name for field in dataclasses.fields(cls)], cls
            assert all(cells[2] for cells in rows.values()), cls  # a meaning for every key
            for field in dataclasses.fields(cls):
                pending.extend(c for c in hook.nested_dataclasses(field.type) if isinstance(c, type))


def test_the_cli_reference_lists_every_command_and_flag() -> None:
    markdown = hook.cli_reference(build_parser())
    parser = build_parser()
    (commands,) = [a for a in parser._actions if hasattr(a, "choices") and isinstance(a.choices, dict)]
    for name, command in commands.choices.items():
        section = markdown.split(f"## ilvm-rl {name}\n", 1)[1].split("\n## ", 1)[0]
        for action in command._actions:
            for flag in action.option_strings:
                if flag not in ("-h", "--help"):
                    assert f"`{flag}`" in section, (name, flag)
    assert "&lt;!-- bench:NAME -->" in markdown  # an HTML comment in help text must stay visible


def test_pages_get_their_markers_replaced(tmp_path: Path) -> None:
    (tmp_path / "part.md").write_text("# Included\n")
    page = "intro\n<!-- include: part.md -->\n<!-- config-reference: ilvm_rl.bench.suite:Suite -->\nend\n"
    rendered = hook.render_page(page, tmp_path)
    assert rendered.startswith("intro\n# Included\n\n### Suite\n") and rendered.endswith("\nend\n")
    assert "### Task" in rendered and "<!--" not in rendered


def readme() -> str:
    return (ROOT / "README.md").read_text()


def test_ci_runs_the_readme_test_command_verbatim() -> None:
    (command,) = re.findall(r"Run the tests and build the docs.*?```bash\n(.*?)\n```", readme(), re.S)
    assert "mkdocs build --strict" in command and "pytest" in command
    assert (ROOT / ".ci" / "run").read_text().rstrip().endswith("\n" + command)


def test_the_readme_is_short_and_links_only_inside_the_repository() -> None:
    assert len(readme().encode()) <= README_LIMIT_BYTES
    links = re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", readme())
    local = [link for link in links if not link.startswith("https://")]
    assert local, "the README links its docs pages"
    for link in local:
        target = (ROOT / link).resolve()
        assert target.is_relative_to(ROOT) and target.is_file(), link


def test_every_benchmark_page_holds_the_section_its_command_writes() -> None:
    pages = sorted((ROOT / "docs" / "benchmarks").glob("*.md"))
    commands = 0
    for page in pages:
        for line in page.read_text().splitlines():
            if line.startswith("ilvm-rl bench") and "--page" in line:
                args = build_parser().parse_args(shlex.split(line)[1:])
                assert (ROOT / args.page).resolve() == page.resolve(), line
                name = args.name or Path(args.suite).stem
                surrounding_section(page, f"bench:{name}")  # raises if the markers are missing
                commands += 1
    assert commands >= 3


def python_snippets() -> list[tuple[str, str]]:
    sources = [ROOT / "README.md", *sorted((ROOT / "docs" / "guide").glob("*.md"))]
    return [
        (f"{path.relative_to(ROOT)}#{index}", code)
        for path in sources
        for index, code in enumerate(re.findall(r"```python\n(.*?)```", path.read_text(), re.S))
    ]


def with_tiny_budgets(code: str) -> str:
    pattern = re.compile(rf"\b({'|'.join(TINY_BUDGETS)})=[\d_]+")
    tiny, count = pattern.subn(lambda m: f"{m.group(1)}={TINY_BUDGETS[m.group(1)]}", code)
    assert count, "a snippet that trains must name its budget with one of " + ", ".join(TINY_BUDGETS)
    return tiny


@pytest.mark.parametrize(("where", "code"), python_snippets(), ids=[where for where, _ in python_snippets()])
def test_the_python_snippets_of_the_readme_and_guides_run(where: str, code: str, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)  # the snippets write under runs/
    exec(compile(with_tiny_budgets(code), where, "exec"), {"__name__": "__snippet__"})
    assert list((tmp_path / "runs").rglob("settings.json")), "each snippet saves or pretrains a module"
