"""The README's promises: its two commands exist, CI runs the test one, every setting is documented."""

import re

from streams.settings import Settings
from tests.conftest import ROOT

README = (ROOT / "README.md").read_text()


def test_the_two_commands_are_make_targets_and_ci_runs_the_test_one():
    block = re.search(r"## The two commands\s+.*?```bash\n(.*?)```", README, re.S).group(1)
    commands = [line.split("#")[0].strip() for line in block.strip().splitlines()]
    assert commands == ["make demo", "make test"]
    makefile = (ROOT / "Makefile").read_text()
    for target in ("demo", "test"):
        assert re.search(rf"^{target}:", makefile, re.M), f"Makefile lacks the {target} target"
    assert "make test" in (ROOT / ".ci" / "run").read_text()


def test_every_setting_is_documented():
    for name in Settings.model_fields:
        assert f"`STREAMREC_{name.upper()}`" in README, f"STREAMREC_{name.upper()} is not in the README"


def test_docker_images_install_what_the_readme_says():
    section = re.search(r"## Run with Docker\n(.*?)\n## ", README, re.S).group(1)
    promised = re.findall(r"`(pip install [^`]+)`", section)
    assert promised == ["pip install .", 'pip install ".[train]"']
    dockerfile = (ROOT / "deploy" / "Dockerfile").read_text()
    installs = re.findall(r"^RUN (pip install [^&\n]+?)\s*(?:&&|$)", dockerfile, re.M)
    assert sorted(installs) == sorted(promised)
    assert re.search(r"^FROM base AS worker\nRUN pip install \. ", dockerfile, re.M), "the worker image has no torch"
    makefile = (ROOT / "Makefile").read_text()
    assert 'pip install -q -e ".[train,dev]"' in makefile  # the README's local install: make venv
