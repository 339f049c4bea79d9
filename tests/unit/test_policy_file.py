"""The policy file format (app/adapters/policy_file.py): YAML or JSON, validated, one-line errors."""
from __future__ import annotations

import json

import pytest

from app.adapters.policy_file import PolicyError, load_policy, parse_policy
from app.domain.policy import EMPTY, KEEP, PlanLimits, Policy, StudioLimits, TitleLimits

EXAMPLE = """\
description: two devices for everyone on the default and basic plans
default_plan: {device_limit: 2}
plans:
  basic: {device_limit: 2, monthly_limit: null}
titles:
  t-42: {title_yearly_limit: 5, max_renewals: 3}
studios:
  s-7: {studio_concurrent_limit: 10}
"""

EXPECTED = Policy(
    plans={"basic": PlanLimits(device_limit=2, monthly_limit=None)},
    default_plan=PlanLimits(device_limit=2),
    titles={"t-42": TitleLimits(title_yearly_limit=5, max_renewals=3)},
    studios={"s-7": StudioLimits(studio_concurrent_limit=10)},
)


def test_a_yaml_file_and_its_json_twin_give_the_same_policy(tmp_path):
    import yaml

    (tmp_path / "p.yaml").write_text(EXAMPLE)
    (tmp_path / "p.json").write_text(json.dumps(yaml.safe_load(EXAMPLE)))
    assert load_policy(tmp_path / "p.yaml") == EXPECTED
    assert load_policy(tmp_path / "p.json") == EXPECTED
    assert EXPECTED.plans["basic"].downloads_per_device is KEEP  # left out: the events' value


def test_the_readme_example_is_a_valid_policy():
    from app.config import REPO_ROOT

    readme = (REPO_ROOT / "README.md").read_text()
    start = readme.index("```yaml\n# policy.yaml")
    block = readme[start + len("```yaml\n"):readme.index("```", start + 7)]
    import yaml

    policy = parse_policy(yaml.safe_load(block))
    assert set(policy.plans) == {"basic", "trial"} and policy.default_plan is not None
    assert policy.titles["t-42"] == TitleLimits(5, 3) and policy.studios["s-7"] == StudioLimits(10)


@pytest.mark.parametrize("text", ["", "# nothing\n", "{}"])
def test_an_empty_file_is_the_empty_policy(tmp_path, text):
    (tmp_path / "p.yaml").write_text(text)
    assert load_policy(tmp_path / "p.yaml") == EMPTY


@pytest.mark.parametrize("data, message", [
    ({"plans": {"b": {"device_limit": 0}}}, "plans.b.device_limit: Input should be greater than or equal to 1"),
    ({"plans": {"b": {"device_limt": 2}}}, "plans.b.device_limt: unknown key"),
    ({"plans": {"b": {"device_limit": None}}}, "plans.b.device_limit: cannot be null (unlimited)"),
    ({"plans": {"b": {"downloads_per_device": None}}}, "plans.b.downloads_per_device: cannot be null"),
    ({"titles": {"bad id": {}}}, "titles.bad id: must be 1-64 characters"),
    ({"titles": {"t": {"max_renewals": "3"}}}, "titles.t.max_renewals: Input should be a valid integer"),
    ({"titles": {"t": {"max_renewals": -1}}}, "titles.t.max_renewals: Input should be greater than or equal to 0"),
    ({"titles": {"t": {"title_yearly_limit": True}}}, "titles.t.title_yearly_limit: Input should be a valid integer"),
    ({"studios": {"s": {"studio_concurrent_limit": 1.5}}}, "studios.s.studio_concurrent_limit"),
    ({"studios": {"s": {"studio_concurrent_limit": 2**31}}}, "less than or equal to 2147483647"),
    ({"plans": {"default": {}}, "default_plan": {}}, "the default plan is overridden twice"),
    ({"plan": {}}, "plan: unknown key"),
    ([1], "a policy is a mapping"),
    ("text", "a policy is a mapping"),
])
def test_bad_policies_are_one_line_errors_naming_the_place(data, message):
    with pytest.raises(PolicyError) as info:
        parse_policy(data)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_whole_floats_are_whole_numbers_and_null_lifts_a_limit():
    policy = parse_policy({"studios": {"s": {"studio_concurrent_limit": 2.0}}, "titles": {"t": {"max_renewals": None}}})
    assert policy.studios["s"] == StudioLimits(2)
    assert policy.titles["t"] == TitleLimits(title_yearly_limit=KEEP, max_renewals=None)


@pytest.mark.parametrize("name, text, message", [
    ("p.yaml", "plans: [unclosed\n", "not valid YAML: line 2, column 1"),
    ("p.yaml", "plans:\n  b: {device_limit: 0}\n", "p.yaml: plans.b.device_limit"),
    ("p.json", "{\"plans\": ", "not valid JSON: line 1, column 11"),
])
def test_file_errors_name_the_file_and_the_place(tmp_path, name, text, message):
    (tmp_path / name).write_text(text)
    with pytest.raises(PolicyError) as info:
        load_policy(tmp_path / name)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_a_missing_or_binary_file_is_one_line(tmp_path):
    with pytest.raises(PolicyError, match="cannot read: No such file"):
        load_policy(tmp_path / "nope.yaml")
    (tmp_path / "b.yaml").write_bytes(b"\xff\xfe\x00")
    with pytest.raises(PolicyError, match="not UTF-8"):
        load_policy(tmp_path / "b.yaml")
