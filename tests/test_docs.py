"""The README and docs/ stay true to the repository: every relative link resolves (to a file,
and for `#anchor` links to a heading, by GitHub's slug rules), every `tb-activations` flag
they write exists in the command's --help, and the README keeps the shape CI relies on (its
"Try it" section holds two commands, the second being the test command .ci/run extracts)."""

import contextlib
import io
import pathlib
import re
import shutil
import subprocess

import pytest

from tb_activations import cli

REPO = pathlib.Path(__file__).resolve().parent.parent
README = REPO / "README.md"
PAGES = [README] + sorted((REPO / "docs").glob("*.md"))
README_MAX_LINES = 220
TEST_MARKER = "<!-- test-command -->"

FENCE = re.compile(r"^ {0,3}(```|~~~)")
LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
INLINE_CODE = re.compile(r"(`+)(.+?)\1")
HEADING = re.compile(r"^ {0,3}(#{1,6})\s+(.*?)\s*#*\s*$")
# A command: at the start of a line or code span, after a path's "/", after "&&" or "$ "
# (not the name inside a message such as "tb-activations needs Keras").
COMMAND = re.compile(r"(?:^\s*|/|&&\s*|\$\s+)tb-activations\s+([a-z][\w-]*)")
FLAG = re.compile(r"(?<![\w-])--[a-zA-Z][\w-]*")


def split_markdown(text):
    """(prose lines, code blocks): prose with fenced blocks left out, each block as its lines."""
    prose, blocks, block = [], [], None
    for line in text.splitlines():
        if FENCE.match(line):
            if block is None:
                block = []
            else:
                blocks.append(block)
                block = None
        elif block is None:
            prose.append(line)
        else:
            block.append(line)
    return prose, blocks


def slug(heading):
    """GitHub's anchor for a heading's text: markup dropped, lower case, punctuation removed
    (letters, digits, `_`, `-` and spaces stay), spaces as `-`."""
    text = INLINE_CODE.sub(lambda match: match.group(2), heading)
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", text)  # a link's text
    text = re.sub(r"<[^>]+>", "", text)  # inline HTML
    text = text.strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(path):
    """Every heading anchor of a markdown file, with GitHub's -1, -2… for repeated ones."""
    prose, _ = split_markdown(path.read_text(encoding="utf-8"))
    found, seen = set(), {}
    for line in prose:
        match = HEADING.match(line)
        if not match:
            continue
        base = slug(match.group(2))
        count = seen.get(base, 0)
        seen[base] = count + 1
        found.add(base if count == 0 else "%s-%d" % (base, count))
    return found


def links(path):
    """The link targets written in a markdown file's prose (code spans and blocks left out)."""
    prose, _ = split_markdown(path.read_text(encoding="utf-8"))
    targets = []
    for line in prose:
        line = INLINE_CODE.sub("", line)
        targets.extend(match.group(1) for match in LINK.finditer(line))
    return targets


def broken_links(path):
    """The relative links of `path` that point at no file, or at no heading of their file."""
    broken = []
    for target in links(path):
        if re.match(r"^[a-zA-Z][\w+.-]*:", target):  # https:, mailto:…
            continue
        file_part, _, anchor = target.partition("#")
        linked = (path.parent / file_part).resolve() if file_part else path
        if not linked.exists():
            broken.append("%s: %s (no such file)" % (path.name, target))
        elif anchor and linked.suffix == ".md" and anchor not in anchors(linked):
            broken.append("%s: %s (no such heading)" % (path.name, target))
    return broken


def cli_commands(text):
    """[(subcommand, [flags])] of every `tb-activations <subcommand> …` written in code: in
    fenced blocks (with indented continuation lines) and in inline code spans."""
    prose, blocks = split_markdown(text)
    commands = []
    pieces = [match.group(2) for line in prose for match in INLINE_CODE.finditer(line)]
    for block in blocks:
        current = None
        for line in block:
            if current is not None and (line[:1].isspace() or current.endswith("\\")):
                current += " " + line
                continue
            if current is not None:
                pieces.append(current)
            current = line
        if current is not None:
            pieces.append(current)
    for piece in pieces:
        for match in COMMAND.finditer(piece):
            rest = re.split(r"&&|\|\||;|\s\|\s|(?:^|\s)#", piece[match.end():])[0]
            commands.append((match.group(1), FLAG.findall(rest)))
    return commands


_HELP = {}


def help_flags(subcommand):
    """The flags `tb-activations <subcommand> --help` lists, or None if there is no such
    subcommand."""
    if subcommand not in _HELP:
        out = io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
            try:
                cli.main([subcommand, "--help"])
            except SystemExit as stop:
                code = stop.code
            else:
                code = 0
        _HELP[subcommand] = set(FLAG.findall(out.getvalue())) if code == 0 else None
    return _HELP[subcommand]


def unknown_cli_flags(text):
    problems = []
    for subcommand, flags in cli_commands(text):
        known = help_flags(subcommand)
        if known is None:
            problems.append("tb-activations %s: no such subcommand" % subcommand)
            continue
        problems.extend("tb-activations %s %s" % (subcommand, flag)
                        for flag in flags if flag not in known)
    return problems


def try_it_blocks(text):
    """The "## Try it" section's fenced blocks, each as (the line before it, its lines)."""
    lines = text.splitlines()
    start = next((i for i, line in enumerate(lines) if line.startswith("## Try it")), None)
    if start is None:
        return None
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")),
               len(lines))
    blocks, i = [], start + 1
    while i < end:
        if FENCE.match(lines[i]):
            close = next(j for j in range(i + 1, len(lines)) if FENCE.match(lines[j]))
            before = next((lines[k] for k in range(i - 1, start, -1) if lines[k].strip()), "")
            blocks.append((before, lines[i + 1:close]))
            i = close
        i += 1
    return blocks


def readme_problems(text):
    """What breaks the README's shape: its length, and the "Try it" section CI reads."""
    problems = []
    lines = text.splitlines()
    if len(lines) > README_MAX_LINES:
        problems.append("README has %d lines (at most %d)" % (len(lines), README_MAX_LINES))
    headings = [line for line in lines if line.startswith("## ")]
    if not headings or not headings[0].startswith("## Try it"):
        problems.append('the first "##" heading is not "## Try it"')
    before = text.split("\n## ", 1)[0]
    if split_markdown(before)[1]:
        problems.append('a fenced block comes before "## Try it"')
    blocks = try_it_blocks(text)
    if blocks is None:
        return problems + ['no "## Try it" section']
    if len(blocks) != 2:
        problems.append('"## Try it" holds %d fenced blocks, not 2' % len(blocks))
    if text.count(TEST_MARKER) != 1:
        problems.append("%s appears %d times, not once" % (TEST_MARKER, text.count(TEST_MARKER)))
    if blocks and "tb-activations demo" not in " ".join(blocks[0][1]):
        problems.append("the first command does not run the demo (tests/test_demo.py)")
    if len(blocks) >= 2:
        before_second, second = blocks[1]
        if before_second.strip() != TEST_MARKER:
            problems.append("the second command does not follow %s" % TEST_MARKER)
        if len(second) != 1 or "-m pytest" not in second[0]:
            problems.append("the test command is not one line running pytest")
    return problems


def ci_extracted_command(readme):
    """The test command as .ci/run extracts it, with .ci/run's own awk program."""
    script = (REPO / ".ci" / "run").read_text()
    program = re.search(r"awk '([^']*)' README\.md", script).group(1)
    done = subprocess.run(["awk", program, str(readme)], capture_output=True, text=True,
                          check=True)
    return done.stdout.strip()


# The repository's pages.


@pytest.mark.parametrize("page", PAGES, ids=[page.name for page in PAGES])
def test_every_relative_link_resolves(page):
    assert not broken_links(page)


@pytest.mark.parametrize("page", PAGES, ids=[page.name for page in PAGES])
def test_every_cli_flag_written_exists(page):
    assert not unknown_cli_flags(page.read_text(encoding="utf-8"))


def test_the_pages_write_cli_commands_the_check_sees():
    """The flag check could pass by finding no command at all."""
    commands = [command for page in PAGES
                for command in cli_commands(page.read_text(encoding="utf-8"))]
    assert ("export", ["--logdir", "--out", "--layers", "--steps"]) in commands
    assert any(subcommand == "demo" for subcommand, _ in commands)


def test_the_readme_keeps_the_shape_ci_relies_on():
    assert not readme_problems(README.read_text(encoding="utf-8"))


@pytest.mark.skipif(shutil.which("awk") is None, reason="no awk")
def test_ci_extracts_the_second_try_it_command():
    blocks = try_it_blocks(README.read_text(encoding="utf-8"))
    assert ci_extracted_command(README) == "\n".join(blocks[1][1]).strip()


def test_every_docs_page_is_linked_from_the_readme():
    linked = {(README.parent / target.partition("#")[0]).resolve() for target in links(README)}
    assert not [page.name for page in PAGES[1:] if page.resolve() not in linked]


# The checks themselves fail on broken pages.


def test_slugs_follow_github():
    assert slug("What the tab shows") == "what-the-tab-shows"
    assert slug("`writer=` or `log_dir=`") == "writer-or-log_dir"
    assert slug("DDP, DataParallel, torch.compile") == "ddp-dataparallel-torchcompile"
    assert slug("Try it (fresh machine, Python ≥ 3.10)") == "try-it-fresh-machine-python--310"


def test_a_broken_link_or_anchor_is_found(tmp_path):
    (tmp_path / "other.md").write_text("# Other\n\n## A part\n\n## A part\n")
    page = tmp_path / "page.md"
    page.write_text("# Page\n\n## Here\n\n"
                    "[ok](other.md) [ok](other.md#a-part) [ok](other.md#a-part-1) [ok](#here)\n"
                    "[web](https://example.com/missing) `[code](missing.md)`\n"
                    "```\n[in a block](missing.md)\n```\n"
                    "[gone](missing.md) ![picture](images/none.png)\n"
                    "[no heading](other.md#nowhere) [no anchor](#there)\n")
    assert broken_links(page) == [
        "page.md: missing.md (no such file)",
        "page.md: images/none.png (no such file)",
        "page.md: other.md#nowhere (no such heading)",
        "page.md: #there (no such heading)",
    ]


def test_an_unknown_flag_or_subcommand_is_found():
    text = ("```\n"
            "tb-activations export --logdir runs --out figures\n"
            "                      [--steps last] [--colour red]\n"
            "pip install x && .venv/bin/tb-activations demo --no-serve --fast  # --not-a-flag\n"
            "tb-activations frobnicate --x\n"
            "ImportError: tb-activations needs --keras\n"
            "```\n"
            "and `tb-activations serve runs --port 1 --tls` in prose\n")
    assert unknown_cli_flags(text) == [
        "tb-activations serve --tls",
        "tb-activations export --colour",
        "tb-activations demo --fast",
        "tb-activations frobnicate: no such subcommand",
    ]


def good_readme():
    return README.read_text(encoding="utf-8")


def test_a_readme_ci_cannot_read_is_found():
    text = good_readme()
    assert readme_problems(text) == []
    assert readme_problems(text + "\n" * README_MAX_LINES)[0].startswith("README has")
    no_marker = text.replace(TEST_MARKER + "\n", "")
    assert "the second command does not follow %s" % TEST_MARKER in readme_problems(no_marker)
    assert any("appears 0 times" in problem for problem in readme_problems(no_marker))
    third = text.replace("\n## Install", "\n```\necho three\n```\n\n## Install", 1)
    assert '"## Try it" holds 3 fenced blocks, not 2' in readme_problems(third)
    early = text.replace("\n## Try it", "\n```\necho early\n```\n\n## Try it", 1)
    assert 'a fenced block comes before "## Try it"' in readme_problems(early)
