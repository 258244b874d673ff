"""The README stays true to the code: every setting and metric is documented there."""

from prometheus_client import REGISTRY, generate_latest
from prometheus_client.parser import text_string_to_metric_families

import app.observability.metrics  # noqa: F401 (registers the service's metrics)
from app.settings import Settings, setting_variables
from tests.helpers import REPO_ROOT

README = (REPO_ROOT / "README.md").read_text()


def test_every_setting_is_in_the_readme_with_its_default():
    defaults = Settings()
    for spec_name, variable in zip(Settings.__dataclass_fields__, setting_variables(), strict=True):
        row = next((line for line in README.splitlines() if line.startswith(f"| `{variable}` |")), None)
        assert row is not None, f"{variable} is not in the README's settings table"
        default = getattr(defaults, spec_name)
        shown = "unset" if default is None else str(default).lower() if isinstance(default, bool) else str(default)
        assert f"`{shown}`" in row, f"{variable}: the README does not show the default {shown!r}"


def test_every_metric_is_in_the_readme():
    exposition = generate_latest(REGISTRY).decode()
    names = {
        family.name
        for family in text_string_to_metric_families(exposition)
        if family.name.startswith("mnist_") and not family.name.endswith("_created")  # timestamps, not metrics
    }
    assert len(names) == 9
    for name in names:
        assert f"`{name}" in README, f"metric {name} is not documented in the README"
