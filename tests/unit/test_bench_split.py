"""The bench's split phase: which worker processes it starts, how it names them, and how it reports them."""
from __future__ import annotations

import argparse

import pytest

from tools.bench.cli import split_roles
from tools.bench.env import process_names
from tools.bench.report import busiest_worker, split_shape


def test_a_repeated_role_gets_a_number_per_process_so_each_is_metered_on_its_own():
    assert process_names(("all", "all")) == ["all1", "all2"]
    assert process_names(("decider", "projector")) == ["decider", "projector"]


@pytest.mark.parametrize("text, roles", [("all,all", ("all", "all")), ("decider, projector", ("decider", "projector"))])
def test_the_split_roles_option_takes_the_two_shapes_the_bench_measures(text, roles):
    assert split_roles(text) == roles


@pytest.mark.parametrize("text", ["all", "decider,decider", "all,decider", "all,all,all", ""])
def test_any_other_split_is_refused_with_the_choices(text):
    with pytest.raises(argparse.ArgumentTypeError, match="decider,projector, all,all"):
        split_roles(text)


def test_the_report_says_which_shape_of_two_processes_it_measured():
    assert "its share of the input partitions" in split_shape(["all", "all"])
    assert "the decider and the projector in a process each" == split_shape(["decider", "projector"])


def test_the_split_is_judged_by_its_busiest_worker():
    assert busiest_worker({"all1": 0.70, "all2": 0.80, "cassandra": 0.9}, ["all", "all"]) == "all2"
    assert busiest_worker({"decider": 0.4, "projector": 0.6}, ["decider", "projector"]) == "decider"
